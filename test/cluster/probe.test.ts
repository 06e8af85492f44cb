// The readiness probe across a reconnect: ioredis says `ready` before it has
// resubscribed, so a reconnected socket must not turn readiness back to 200;
// only a probe that came back through Redis does.
import t, { type Test } from 'tap'
import type { Broker, MessageListener, StateListener } from '../../src/backend/broker.js'
import { Probe } from '../../src/cluster/probe.js'
import { waitFor } from '../helpers/wait.js'

/** A broker whose connection state and delivery the test drives by hand. */
class ScriptedBroker {
  healthy = true
  readonly sent: Array<[string, string]> = []
  private readonly msg: MessageListener[] = []
  private readonly state: StateListener[] = []
  onMessage (l: MessageListener): void { this.msg.push(l) }
  onStateChange (l: StateListener): void { this.state.push(l) }
  onShardResubscribed (): void {}
  async subscribe (): Promise<void> {}
  async publishNow (channel: string, message: string): Promise<void> {
    if (!this.healthy) throw new Error('down')
    this.sent.push([channel, message])
  }

  setHealthy (h: boolean): void { this.healthy = h; for (const l of this.state) l(h) }
  /** delivers every probe sent so far, as Redis would once subscribed */
  echo (): void { for (const [c, m] of this.sent.splice(0)) for (const l of this.msg) l(c, m) }
}

const settle = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

/** A probe every 50 ms on a scripted broker, started (its first probe out), stopped at the test's end. */
async function started (t: Test): Promise<{ b: ScriptedBroker, probe: Probe }> {
  const b = new ScriptedBroker()
  const probe = new Probe(b as unknown as Broker, 'p:self', 50, 'self')
  t.teardown(() => probe.stop())
  await probe.start()
  return { b, probe }
}

t.test('after a reconnect, readiness waits for a probe to come back', async (t) => {
  const { b, probe } = await started(t)
  t.equal(b.sent.length, 1, 'the first probe goes out at start')
  b.echo() // (the interval is short; each step below runs well within it)
  await settle()
  t.equal(probe.healthy, true, 'healthy once it came back')

  b.setHealthy(false)
  t.equal(probe.healthy, false, 'unhealthy while disconnected')
  await settle()
  // Cleared and reconnected in one synchronous step, so no interval tick can
  // slip a probe in between (the machine may stall past the 50 ms interval).
  b.sent.length = 0
  b.setHealthy(true)
  t.equal(probe.healthy, false, 'a reconnected socket alone is not readiness')
  t.equal(b.sent.length, 1, 'a probe went out at once on reconnect, not at the next interval')
  // The probe was published before the resubscribe completed: lost.
  b.sent.length = 0
  await settle()
  t.equal(probe.healthy, false, 'still unhealthy: nothing came back')
  // The lost probe goes overdue; the next interval sends another.
  await waitFor('the next probe', () => b.sent.length, (n) => n >= 1, { timeoutMs: 2000, intervalMs: 10 })
  t.equal(probe.healthy, false, 'a probe in flight is not readiness either')
  b.echo()
  t.equal(probe.healthy, true, 'healthy again when a probe came back through the new subscription')
})

/** Keeps the event loop busy for `ms`: a turn of a reconnect storm's handshakes. */
function busy (ms: number): void {
  const until = performance.now() + ms
  while (performance.now() < until) { /* busy */ }
}

t.test('a loop busy past the interval does not fail readiness when the reply waits in the socket', async (t) => {
  const { b, probe } = await started(t)
  t.equal(b.sent.length, 1, 'a probe is out')
  // Redis answers at once; the node reads the reply in its next turn, after this busy one.
  setImmediate(() => b.echo())
  busy(150)
  t.equal(probe.healthy, true, 'overdue by the clock, but the node has not read its sockets since: still ready')
  await settle()
  await settle()
  t.equal(probe.healthy, true, 'the reply was read: ready')
})

t.test('a probe still missing once the node has polled after the deadline fails readiness', async (t) => {
  const { b, probe } = await started(t)
  b.echo()
  await settle()
  t.equal(probe.healthy, true, 'ready')
  // Redis stalls: the next probe never comes back.
  await waitFor('the next probe', () => b.sent.length, (n) => n >= 1, { timeoutMs: 2000, intervalMs: 5 })
  const sentAt = performance.now()
  busy(150)
  // The node is not ready from a turn or two after the deadline, whether or not anyone asked meanwhile.
  await waitFor('readiness to fail', () => probe.healthy, (h) => !h, { timeoutMs: 2000, intervalMs: 5 })
  t.ok(performance.now() - sentAt < 150 + 200, 'failed within a few turns of the busy one')
  b.echo()
  t.equal(probe.healthy, true, 'ready again once a probe came back')
})
