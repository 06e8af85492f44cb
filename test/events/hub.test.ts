// The hub's dispatch loop (src/events/hub.ts): delivering to one recipient can
// throw (a transport's encoder, as Socket.IO's did on deep data); that stays
// the recipient's own failure. The others get the message, the failure is
// reported on herald:delivery:failed (metrics and logs count it), and that
// connection is closed 1011, whether the delivery was direct or held until
// its welcome. Nothing escapes to the broker's message handler. A real Hub on
// a MemoryBroker, with connections whose transport is a recorder.
import diagnostics from 'node:diagnostics_channel'
import type { FastifyBaseLogger } from 'fastify'
import { pino } from 'pino'
import t, { type Test } from 'tap'
import { createChannels } from '../../src/cluster/channels.js'
import { MemoryBroker } from '../../src/backend/broker-memory.js'
import { Connection, type Site } from '../../src/endpoints/connection.js'
import { Connections } from '../../src/endpoints/connections.js'
import { encode } from '../../src/events/codec.js'
import { Hub, type Delivery } from '../../src/events/hub.js'
import { channels, type DeliveryFailed } from '../../src/observability/channels.js'

const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger
const ch = createChannels('hub-test:')
const site: Site = { endpoint: 'events', serverId: 'node-1', log, framesOut: { events: 0, admin: 0 } }

/** A connection whose transport records event ids, and throws on events whose id contains `failOn`. */
class Recorder extends Connection {
  readonly transport = 'ws' as const
  readonly got: string[] = []
  closedWith: number | null = null

  constructor (id: string, private readonly failOn: string | null = null) {
    super(id, site, { userId: id, sessionId: null, roles: ['user'], expiresAt: Infinity, issuedAt: null }, '127.0.0.1')
  }

  ping (): void {}
  protected congested (): boolean { return false }
  protected writeDelivery (d: Delivery): void {
    const id = (JSON.parse(d.frame().toString()) as { payload: { id: string } }).payload.id
    if (this.failOn !== null && id.includes(this.failOn)) throw new RangeError('Maximum call stack size exceeded')
    this.got.push(id)
  }

  protected writeMessage (): void {}
  protected terminate (code: number): void { this.closedWith = code }
}

async function setup (t: Test): Promise<{ hub: Hub, registry: Connections, broker: MemoryBroker, failures: DeliveryFailed[], publish: (id: string) => Promise<void> }> {
  const broker = new MemoryBroker()
  const registry = new Connections()
  const hub = new Hub(broker, ch, 'node-1', log, registry)
  await hub.start()
  const failures: DeliveryFailed[] = []
  const onFailure = (m: unknown): void => { failures.push(m as DeliveryFailed) }
  diagnostics.subscribe('herald:delivery:failed', onFailure)
  t.teardown(() => { diagnostics.unsubscribe('herald:delivery:failed', onFailure) })
  const publish = async (id: string): Promise<void> => {
    await broker.publish(ch.broadcast, encode({ kind: 'e', origin: '', publishedAt: Date.now(), type: 'system.check', userId: '', stream: '', offset: null, epoch: '', json: JSON.stringify({ id, type: 'system.check', timestamp: new Date().toISOString(), data: {} }) }))
    // The MemoryBroker delivers on a microtask, the hub at once: a turn covers both.
    await new Promise((resolve) => setImmediate(resolve))
  }
  return { hub, registry, broker, failures, publish }
}

/** Opened as lifecycle.ts opens a connection: in the node's registry and on its channels. */
async function subscribed ({ hub, registry }: { hub: Hub, registry: Connections }, c: Recorder, welcome = true): Promise<Recorder> {
  registry.add(c)
  await hub.attach(c)
  hub.addPattern(c, '*', ['*'])
  if (welcome) c.welcome({})
  return c
}

t.test('a recipient whose delivery throws is closed 1011 and reported; the others get the message and the next', async (t) => {
  const s = await setup(t)
  const { failures, publish } = s
  t.ok(channels.deliveryFailed.hasSubscribers)
  const first = await subscribed(s, new Recorder('first'))
  const failing = await subscribed(s, new Recorder('failing', 'boom'))
  const last = await subscribed(s, new Recorder('last'))

  await publish('boom-1')
  await publish('after-1')
  t.same(first.got, ['boom-1', 'after-1'], 'the recipient before it got both')
  t.same(last.got, ['boom-1', 'after-1'], 'the recipient after it got both')
  t.equal(failing.closedWith, 1011, 'the failing recipient was closed 1011')
  t.same(failing.got, [], 'and was sent nothing after')
  t.equal(failures.length, 1, 'one failure reported')
  t.match(failures[0], { serverId: 'node-1', endpoint: 'events', transport: 'ws', connectionId: 'failing' })
  t.match(failures[0]!.error, RangeError, 'with the error')
  t.equal(first.closedWith, null)
  t.equal(last.closedWith, null)
})

t.test('a delivery held until welcome that throws when replayed: closed 1011 and reported, welcome itself does not throw', async (t) => {
  const s = await setup(t)
  const { failures, publish } = s
  const other = await subscribed(s, new Recorder('other'))
  const opening = await subscribed(s, new Recorder('opening', 'boom'), false)
  await publish('boom-2')
  t.same(other.got, ['boom-2'])
  t.equal(opening.closedWith, null, 'held, not yet written')
  t.doesNotThrow(() => opening.welcome({}), 'welcome replays the held frames without throwing')
  t.equal(opening.closedWith, 1011, 'closed 1011 when the replay failed')
  t.match(failures, [{ connectionId: 'opening' }])
  await publish('after-2')
  t.same(other.got, ['boom-2', 'after-2'], 'the other recipient is not held up')
})

t.test('a group event reaches the members on this node subscribed to its type, as their subscriptions change, and nobody once they leave', async (t) => {
  const { hub, registry, broker } = await setup(t)
  const [a, b, outsider] = [new Recorder('ga'), new Recorder('gb'), new Recorder('gc')]
  for (const c of [a, b, outsider]) { registry.add(c); await hub.attach(c); c.welcome({}) }
  const sub = (c: Recorder, p: string): void => hub.addPattern(c, p, p.split('.'))
  sub(a, 'chat.*')
  sub(outsider, 'chat.*')
  await hub.joinGroup(a, 'room')
  await hub.joinGroup(b, 'room')
  sub(b, 'chat.message') // subscribed after joining
  const send = async (id: string, type = 'chat.message'): Promise<void> => {
    await broker.publish(ch.group('room'), encode({ kind: 'e', origin: '', publishedAt: Date.now(), type, userId: '', stream: '', offset: null, epoch: '', json: JSON.stringify({ id, type, timestamp: new Date().toISOString(), group: 'room', data: {} }) }))
    await new Promise((resolve) => setImmediate(resolve))
  }
  await send('e1')
  await send('e2', 'chat.typing')
  t.same([a.got, b.got, outsider.got], [['e1', 'e2'], ['e1'], []], 'members by their patterns; the non-member nothing')
  hub.removePattern(a, 'chat.*')
  hub.addPattern(a, 'chat.typing', ['chat', 'typing'])
  await send('e3', 'chat.typing')
  t.same(a.got, ['e1', 'e2', 'e3'], 'a changed subscription holds for the group')
  t.same([...hub.groupCounts()], [['room', 2]])
  hub.leaveGroup(a, 'room')
  await send('e4', 'chat.typing')
  t.same(a.got, ['e1', 'e2', 'e3'], 'nothing after leaving')
  hub.detach(b)
  t.same([...hub.groupCounts()], [], 'the last member gone: the node holds no group')
  await send('e5')
  t.same(b.got, ['e1'])
})
