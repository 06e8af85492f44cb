import type { Envelope } from './codec.js'

// What a node does past saturation (docs/design.md, "Past saturation"): it
// delivers for at most a slice of each event-loop turn, so timers, pings, the
// API and the readiness probe still run; messages it has no time for wait, in
// order, in a backlog bounded by age and size; a message that waited longer
// than MAX_WAIT_MS is shed, counted, and never delivered. The node reads
// Redis at full speed throughout: left unread, messages would pile up in
// Redis until it dropped the subscription, losing them uncounted.
//
// The slice's length is the latency policy (docs/design.md, "Latency under
// load"). Each turn ends with a write per socket that was sent something
// (turn-writes.ts), a cost that follows the number of sockets, not the
// number of events: at 10,000 subscribers it is tens of ms. A slice shorter
// than that spends most of each turn writing a little to every socket, and
// past that rate the backlog, hence latency, grows to MAX_WAIT_MS. So while
// the input is modest (the last turn's messages under CALM_INPUT_BYTES, one
// socket read), a turn's slice is as long as the last turn's writes took
// (half the turn delivering, half writing), at least SLICE_MS, and never
// past MAX_SLICE_MS, which keeps a turn, and so the wait of a message that
// arrives during one, bounded. That holds for a backlog's slices too: a node
// behind a modest input at 10,000 subscribers, given 20 ms against writes
// of 150 ms, delivered a tenth of each turn and fell further behind, to
// shedding most of what it was offered. Under a flood slices are SLICE_MS:
// a flooded node must turn over fast enough to keep reading Redis at full
// speed (libuv reads at most 2 MB a turn; longer turns had Redis drop a
// flooded node's subscription, test/endpoints/overload.test.ts).

/** delivery work per event-loop turn before the turn yields, at least */
export const SLICE_MS = 20
/** and at most, however long the writes take */
export const MAX_SLICE_MS = 60
/** JSON bytes offered in a turn below which the node counts as calm: longer slices are for a modest input only */
export const CALM_INPUT_BYTES = 64 * 1024
/** how stale a message may get in the backlog before it is shed */
export const MAX_WAIT_MS = 1000
/** JSON bytes the backlog may hold, whatever their age */
export const MAX_WAITING_BYTES = 16 * 1024 * 1024
const REPORT_EVERY_MS = 5000

interface Waiting { channel: string, env: Envelope, at: number }

/** A log line's worth: shedding (again), or caught up after shedding. */
export interface OverloadReport { shedding: boolean, shed: number, waiting: number, lagMs: number }

export class Intake {
  private queue: Array<Waiting | undefined> = []
  private head = 0
  private bytes = 0
  private sliceOpen = false
  /** the open slice was opened by offer(), in this turn's poll phase (not by drain(), after the last turn's writes) */
  private sliceByOffer = false
  private sliceStart = 0
  /** messages shed since boot */
  shed = 0
  private unreported = 0
  private reportedAt = -Infinity
  private shedding = false
  private readonly endSlice = (): void => {
    this.sliceOpen = false
    if (this.head < this.queue.length) this.drain()
  }

  private sliceMs = SLICE_MS
  /** JSON bytes offered since the last slice opened: the last turn's input */
  private offered = 0

  /** `writeMs`: how long the last turn's writes took (turn-writes.ts lastWriteMs) */
  constructor (
    private readonly run: (channel: string, env: Envelope) => void,
    private readonly report: (r: OverloadReport) => void,
    private readonly writeMs: () => number = () => 0,
  ) {}

  /** messages waiting in the backlog */
  get waiting (): number { return this.queue.length - this.head }

  /** how long the oldest waiting message has waited (0: none waits) */
  lagMs (): number {
    const oldest = this.queue[this.head]
    return oldest === undefined ? 0 : performance.now() - oldest.at
  }

  /** Delivers now while this turn has time left and nothing waits; otherwise queues. */
  offer (channel: string, env: Envelope): void {
    this.offered += env.json.length
    if (this.head === this.queue.length && this.hasTime()) return this.run(channel, env)
    this.queue.push({ channel, env, at: performance.now() })
    this.bytes += env.json.length
    while (this.bytes > MAX_WAITING_BYTES) { this.take(); this.drop() }
  }

  private hasTime (): boolean {
    const now = performance.now()
    if (!this.sliceOpen) this.open(now, this.nextSliceMs(), true)
    return now - this.sliceStart < this.sliceMs
  }

  /** The policy above, from the input since the last slice opened and the last turn's writes. */
  private nextSliceMs (): number {
    const calm = this.offered < CALM_INPUT_BYTES
    this.offered = 0
    return calm ? Math.min(MAX_SLICE_MS, Math.max(SLICE_MS, this.writeMs())) : SLICE_MS
  }

  /** A slice lasts until the end of this turn (the check phase), when what waits gets the next one. */
  private open (now: number, ms: number, byOffer: boolean): void {
    this.sliceOpen = true
    this.sliceByOffer = byOffer
    this.sliceStart = now
    this.sliceMs = ms
    setImmediate(this.endSlice)
  }

  private drain (): void {
    const start = performance.now()
    // A slice offer() opened this turn ends here, before the turn's writes
    // (endTurn's setImmediate comes after this one): the backlog gets what
    // is left of it now, and a slice of its own next turn, after the writes,
    // sized by the input since that slice opened. So no turn delivers for
    // more than its one slice.
    const byOffer = this.sliceByOffer
    const ms = byOffer ? this.sliceMs : this.nextSliceMs()
    const budget = byOffer ? Math.max(0, ms - (start - this.sliceStart)) : ms
    let now = start
    while (this.head < this.queue.length && now - start < budget) {
      const w = this.take()
      if (now - w.at > MAX_WAIT_MS) this.drop()
      else this.run(w.channel, w.env)
      now = performance.now()
    }
    // Scheduled after what this slice delivered, so the end of the turn
    // (turn-writes.ts) writes it before the next slice runs.
    this.open(start, ms, false)
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
    this.reportIfDue(now)
  }

  private take (): Waiting {
    const w = this.queue[this.head]!
    this.queue[this.head++] = undefined
    this.bytes -= w.env.json.length
    return w
  }

  private drop (): void {
    this.shed++
    this.unreported++
  }

  private reportIfDue (now: number): void {
    if (this.unreported > 0 && now - this.reportedAt >= REPORT_EVERY_MS) {
      this.shedding = true
      this.reportedAt = now
      this.report({ shedding: true, shed: this.unreported, waiting: this.waiting, lagMs: this.lagMs() })
      this.unreported = 0
    } else if (this.shedding && this.waiting === 0) {
      this.shedding = false
      this.report({ shedding: false, shed: this.unreported, waiting: 0, lagMs: 0 })
      this.unreported = 0
    }
  }
}
