import { channels as diag } from '../observability/channels.js'
import type { Broker } from '../backend/broker.js'

// Sub-millisecond: a loopback round trip is often under 1 ms, and a latency
// histogram fed whole milliseconds would read 0.
const clock = (): number => performance.timeOrigin + performance.now()

/**
 * Readiness that tells the truth: a connected socket is not enough, so the
 * node publishes to a channel only it subscribes to and expects the message
 * back within the interval. A paused or wedged Redis fails the probe even
 * while its TCP connection stays open.
 */
export class Probe {
  private ok = true
  private outstanding: { seq: number, sentAt: number } | null = null
  /** the overdue probe whose check (checkLate) is under way */
  private checking: { seq: number, sentAt: number } | null = null
  private seq = 0
  private timer: NodeJS.Timeout | null = null
  /** the last probe's publish has not resolved yet */
  private publishing = false
  lastLatencyMs: number | null = null
  private readonly resubscribedListeners: Array<() => void> = []
  /** the connections dropped since the last probe came back */
  private dropped = false

  constructor (
    private readonly broker: Broker,
    private readonly channel: string,
    private readonly intervalMs: number,
    /** the node probing, named on its diagnostics messages */
    private readonly serverId: string,
  ) {
    broker.onMessage((ch, msg) => { if (ch === this.channel) this.received(msg) })
    // ioredis reports `ready` before it has resubscribed, so a reconnect
    // proves nothing: readiness waits for a probe to come back through the
    // new connection, and the first one goes out at once.
    broker.onStateChange((healthy) => {
      if (!healthy) {
        this.dropped = true
        this.ok = false
        this.outstanding = null
      } else if (this.timer !== null) {
        this.tick()
      }
    })
  }

  /**
   * `listener` runs when a probe comes back through the subscriber after the
   * connections dropped: the resubscribe is through, and what the node missed
   * meanwhile can be looked for (src/events/gaps.ts). Not after a probe that
   * was only late (Redis stalled, the node behind its input): nothing was
   * lost then, what it waited for is still on its way, in order.
   */
  onResubscribed (listener: () => void): void { this.resubscribedListeners.push(listener) }

  get healthy (): boolean {
    if (!this.broker.healthy) return false
    // A probe overdue by more than the interval is checked now, not at the next tick.
    if (this.outstanding !== null && clock() - this.outstanding.sentAt > this.intervalMs) this.checkLate()
    return this.ok
  }

  async start (): Promise<void> {
    await this.broker.subscribe(this.channel)
    this.timer = setInterval(() => this.tick(), this.intervalMs)
    this.timer.unref()
    this.tick()
  }

  stop (): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
  }

  private tick (): void {
    if (this.outstanding !== null) {
      if (clock() - this.outstanding.sentAt > this.intervalMs) this.checkLate()
      return
    }
    this.send()
  }

  /**
   * The outstanding probe is overdue by the clock; but a node whose event
   * loop was busy for longer than the interval (a reconnect storm's
   * handshakes) has not read its sockets since, and the reply may be
   * waiting there. It counts as failed only if it is still missing once the
   * node has polled its sockets after the deadline: two turns on, the second
   * one's poll began after this check. Redis stalled or its delivery broken
   * then fails it a turn or two after the deadline, as before; a node that is
   * only busy does not refuse connections for it.
   */
  private checkLate (): void {
    const o = this.outstanding
    if (o === null || this.checking === o) return
    this.checking = o
    setImmediate(() => setImmediate(() => {
      if (this.outstanding !== o) return
      this.ok = false
      if (diag.probe.hasSubscribers) diag.probe.publish({ serverId: this.serverId, ok: false, latencyMs: clock() - o.sentAt })
      if (this.timer !== null) this.send()
    }))
  }

  private send (): void {
    const now = clock()
    if (!this.broker.healthy) { this.outstanding = null; return }
    // Redis has not even taken the last probe (stalled): one stuck probe says it all,
    // and more would fill the publish buffer (REDIS_PUBLISH_BUFFER) meant for events.
    if (this.publishing) return
    const seq = ++this.seq
    this.outstanding = { seq, sentAt: now }
    this.publishing = true
    this.broker.publishNow(this.channel, `${seq}:${now}`).catch(() => {}).finally(() => { this.publishing = false })
  }

  private received (msg: string): void {
    const i = msg.indexOf(':')
    const seq = Number(msg.slice(0, i))
    const sentAt = Number(msg.slice(i + 1))
    const latencyMs = Math.round((clock() - sentAt) * 1000) / 1000
    // Any probe coming back proves delivery works again; only the latest clears the outstanding one.
    const back = this.dropped
    this.dropped = false
    this.ok = true
    if (this.outstanding !== null && seq >= this.outstanding.seq) this.outstanding = null
    this.lastLatencyMs = latencyMs
    if (diag.probe.hasSubscribers) diag.probe.publish({ serverId: this.serverId, ok: true, latencyMs })
    if (back) for (const l of this.resubscribedListeners) l()
  }
}
