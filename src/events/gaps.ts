import pLimit from 'p-limit'
import type { StreamStore } from '../backend/streams.js'
import { decode, type Envelope } from './codec.js'

// Redis pub/sub is at most once: while a node's subscriber is reconnecting,
// or while a Cluster moves a channel's slot to another master, what is
// published on its channels does not reach it, and its connections would
// miss those messages without knowing (a client learns only when it next
// reconnects and resumes). Every positioned message is in its stream before
// it goes out on pub/sub, and offsets count +1 per message of a stream, so a
// node can tell what it missed and read it back:
//
// - On arrival: a message on its stream's channel whose offset is more than
//   one above the last one heard there (or, in a new epoch, above 1: Redis
//   came back empty and this epoch began unheard). The missed ones are read
//   from the stream and handed on first; what arrives on that channel
//   meanwhile waits behind them, so order holds.
// - Once the subscriber is back (the node's probe comes back through it): a
//   channel quiet since then would show its gap only with its next message,
//   maybe hours later, so each tracked channel is compared with its
//   stream's top. That read races the channel's pub/sub copies still on
//   their way; those of messages it read back are dropped when they come.
//
// Only channels the hub holds are tracked, each from the first message
// heard on it while held: a channel dropped and taken again starts afresh,
// and a read under way when it is dropped hands nothing on. The admins'
// channel carries live copies of other streams' events (a user's, a
// group's); only the admin stream's own messages count there.

/** At most this many missed messages of one channel are read back (one read): more is past what a live gap holds. */
export const MAX_FILL = 1000
/** A read back that has not answered by then is given up: what waited behind it goes on. */
const FILL_TIMEOUT_MS = 2000
/**
 * At most this many reads back at once. A catch-up after an outage on a node
 * holding thousands of channels would otherwise ask for all their pages at
 * once (up to MAX_FILL messages each) and hold every answer in memory
 * together, and the delivery behind them would shed what waited past a
 * second anyway. The others wait their turn (p-limit: first asked, first
 * read); their 2 s count from the gap all the same.
 */
export const MAX_READS = 32
/**
 * Catch-ups start at most this often, one at a time, those asked for
 * meanwhile run once after: on a Redis Cluster ioredis says its subscribers
 * are back after every topology change and every failed reconnect of a
 * shard's subscriber (0.2 to 2 s apart while a master is down), and each
 * catch-up reads the position of every channel the node holds.
 */
const CATCH_UP_EVERY_MS = 1000
/** At most one log line per this long: a flood of gaps is one line with its counts. */
const LOG_EVERY_MS = 5000

interface Heard {
  /** the stream the channel's messages belong to (its first message heard says) */
  stream: string
  epoch: string
  offset: number
  /** offsets handed on from a read whose pub/sub copies may still come: those are dropped */
  readBack: Set<number> | null
  /** the epoch heard before this one, and up to where */
  before?: { epoch: string, offset: number }
}

export interface GapStats {
  /** messages found missing on arrival or after a reconnect */
  missed: number
  /** of those, read back from their streams and handed on */
  recovered: number
  /** pub/sub copies of messages already read back, dropped (they had not been missed: they were on their way) */
  late: number
}

export class Gaps {
  private readonly last = new Map<string, Heard>()
  /** channels being read back: what arrives on them meanwhile, in order */
  private readonly waiting = new Map<string, Envelope[]>()
  readonly stats: GapStats = { missed: 0, recovered: 0, late: 0 }
  private logged = { at: 0, missed: 0, recovered: 0 }
  /** the reads back under way, at most MAX_READS; the others wait their turn, in order */
  private readonly reads = pLimit(MAX_READS)
  private catching: Promise<void> | null = null
  private catchUpAgain = false
  private lastCatchUp = -Infinity
  private logTimer: NodeJS.Timeout | null = null

  constructor (
    private readonly streams: StreamStore | null,
    /** the admins' channel, where only the admin stream's own messages are tracked */
    private readonly adminChannel: string,
    private readonly adminStream: string,
    /** whether the hub holds (listens on for someone) the channel now */
    private readonly holds: (channel: string) => boolean,
    /** hands a message on to delivery (the hub's own checks, then its intake) */
    private readonly pass: (channel: string, env: Envelope) => void,
    private readonly warn: (fields: Record<string, unknown>, msg: string) => void,
  ) {}

  /** Every message heard on a hub channel, in the order heard: handed on now, or after what it shows was missed. */
  take (channel: string, env: Envelope): void {
    // Control messages (revocations, evictions) are unpositioned and never wait.
    if (env.kind === 'c') return this.pass(channel, env)
    const q = this.waiting.get(channel)
    if (q !== undefined) { q.push(env); return }
    if (env.offset === null || this.streams === null || (channel === this.adminChannel && env.stream !== this.adminStream)) return this.pass(channel, env)
    const h = this.last.get(channel)
    if (h === undefined) {
      if (this.holds(channel)) this.last.set(channel, { stream: env.stream, epoch: env.epoch, offset: env.offset, readBack: null })
      return this.pass(channel, env)
    }
    if (env.stream !== h.stream) return this.pass(channel, env)
    if (env.epoch !== h.epoch) {
      // History was lost (Redis back empty): this epoch's messages before
      // this one went out while the node listened, and it did not hear them.
      // Back to the epoch before (the one between was not the stream's: a
      // message someone else wrote): where it was heard up to.
      const before = h.before
      h.before = { epoch: h.epoch, offset: h.offset }
      h.offset = before?.epoch === env.epoch ? before.offset : 0
      h.epoch = env.epoch
      h.readBack = null
    }
    if (env.offset <= h.offset) {
      if (h.readBack?.delete(env.offset) === true) { this.stats.late++; return }
      return this.pass(channel, env)
    }
    if (env.offset === h.offset + 1) {
      h.offset = env.offset
      h.readBack = null
      return this.pass(channel, env)
    }
    this.fill(channel, h, env.offset - 1, env)
  }

  /** messages waiting behind reads back, each at most FILL_TIMEOUT_MS */
  get held (): number {
    let n = 0
    for (const q of this.waiting.values()) n += q.length
    return n
  }

  /** The hub no longer listens on the channel: its tracking ends, and what waited on a read goes with it (nobody holds it). */
  forget (channel: string): void {
    this.last.delete(channel)
    this.waiting.delete(channel)
  }

  /**
   * After the subscriber came back: each tracked channel is compared with its
   * stream's top, and what it missed is read back. Resolves when all are
   * through (their reads started). Asked for while one runs: once more after it.
   */
  catchUp (): Promise<void> {
    if (this.streams === null) return Promise.resolve()
    if (this.catching !== null) { this.catchUpAgain = true; return this.catching }
    this.catching = (async () => {
      do {
        this.catchUpAgain = false
        const wait = this.lastCatchUp + CATCH_UP_EVERY_MS - Date.now()
        if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait).unref())
        this.lastCatchUp = Date.now()
        await this.catchUpOnce(this.streams!)
      } while (this.catchUpAgain)
    })().finally(() => { this.catching = null })
    return this.catching
  }

  private async catchUpOnce (streams: StreamStore): Promise<void> {
    await Promise.all([...this.last].map(async ([channel, h]) => {
      const was = { epoch: h.epoch, offset: h.offset }
      const top = await streams.position(channel).catch(() => null)
      if (top === null || this.waiting.has(channel) || this.last.get(channel) !== h) return
      // The answer came on another connection than the channel's messages:
      // what was heard meanwhile may be newer than it. Then it only says
      // whether more is missing, never moves the tracking back.
      if (h.epoch !== was.epoch || h.offset !== was.offset) {
        if (top.epoch === h.epoch && top.offset > h.offset) this.fill(channel, h, Math.min(top.offset, h.offset + MAX_FILL), null)
        return
      }
      if (top.epoch !== h.epoch) {
        h.epoch = top.epoch
        h.offset = 0
        h.readBack = null
      } else if (top.offset < h.offset) {
        // Heard above the top: not this stream's message (someone wrote to the channel); the stream says where it is.
        h.offset = top.offset
      }
      // The oldest first: above them, messages may still be on their way
      // (heard later, in order); a gap left above shows with the next one.
      if (top.offset > h.offset) this.fill(channel, h, Math.min(top.offset, h.offset + MAX_FILL), null)
    }))
  }

  /**
   * Reads back (h.offset, upTo] of `channel`, hands it on, then `trigger`
   * (the message that showed the gap, if one did) and what waited behind.
   */
  private fill (channel: string, h: Heard, upTo: number, trigger: Envelope | null): void {
    const queue: Envelope[] = []
    this.waiting.set(channel, queue)
    const from = h.offset
    const after = Math.max(h.offset, upTo - MAX_FILL)
    const epoch = h.epoch
    const streams = this.streams!
    let handedOn = false
    // What waited behind the read goes on: the message that showed the gap
    // (next in line now, or not this stream's: it said a gap the stream does
    // not hold, and goes on as it is, never read for again), then the rest.
    const handOn = (): void => {
      handedOn = true
      if (trigger !== null) {
        if (trigger.epoch === h.epoch && trigger.offset === h.offset + 1) h.offset = trigger.offset
        this.pass(channel, trigger)
      }
      for (const env of queue) this.take(channel, env)
    }
    // The 2 s count from now, whether the read has its turn yet or not: what
    // waits behind it waits no longer. The turn is held until the read itself
    // settles, so a Redis slow to answer never has more than MAX_READS of them.
    let expired = false
    let timer: NodeJS.Timeout | undefined
    const gaveUp = new Promise<null>((resolve) => { timer = setTimeout(() => { expired = true; resolve(null) }, FILL_TIMEOUT_MS); timer.unref() })
    const read = this.reads(async () => {
      // Given up, or dropped, while waiting its turn: nothing to read for anyone.
      if (expired || this.last.get(channel) !== h) return null
      return await streams.read(channel, after, upTo - after).catch(() => null)
    })
    void Promise.race([read, gaveUp]).then((page) => {
      clearTimeout(timer)
      // Dropped meanwhile (and maybe taken again, tracked afresh): nothing of this read is anyone's now.
      if (this.last.get(channel) !== h) return
      if (this.waiting.get(channel) === queue) this.waiting.delete(channel)
      let recovered = 0
      const readBack = new Set<number>()
      if (page === null) {
        // No answer. Shown by a message: what was missed stays missed, and
        // tracking goes on past it. A catch-up: what it looked for may still
        // be on its way, and the next message shows what is not.
        if (trigger !== null) h.offset = upTo
      } else if (page.epoch !== epoch) {
        // The stream is in another epoch than the message that showed the gap
        // said (one not of this stream): the stream is what counts.
        h.epoch = page.epoch
        h.offset = page.top
      } else {
        for (const m of page.messages) {
          if (m.offset <= after || m.offset > upTo) continue
          const env = decode(m.message)
          if (env === null) continue
          recovered++
          readBack.add(m.offset)
          this.pass(channel, env)
        }
        // Never past the stream's own top: an offset above it was not this stream's.
        h.offset = Math.min(upTo, page.top)
      }
      h.readBack = readBack.size > 0 ? readBack : null
      // Counted as missed only where tracking moved past it: a catch-up with
      // no answer leaves it where it was (what it looked for may still come).
      // Offsets above the stream's top were never its messages.
      if (page === null ? trigger !== null : page.epoch === epoch) this.report(Math.max(0, (page === null ? upTo : Math.min(upTo, page.top)) - from), recovered)
      handOn()
    }).catch((err: Error) => {
      // Whatever a stream held, a read back never ends the node, nor holds its channel for ever.
      this.warn({ err: { message: err.message } }, 'reading missed messages back failed')
      if (handedOn || this.last.get(channel) !== h) return
      if (this.waiting.get(channel) === queue) this.waiting.delete(channel)
      // As when a read is given up: what was missed stays missed, tracking goes on past it.
      if (trigger !== null && trigger.epoch === h.epoch) h.offset = Math.max(h.offset, upTo)
      handOn()
    })
  }

  private report (missed: number, recovered: number): void {
    this.stats.missed += missed
    this.stats.recovered += recovered
    const l = this.logged
    l.missed += missed
    l.recovered += recovered
    if (this.logTimer !== null) return
    const wait = l.at + LOG_EVERY_MS - Date.now()
    if (wait <= 0) return this.flushLog()
    // Counted now, said at the end of the window: a burst is one line, and its last gaps are not held back until the next.
    this.logTimer = setTimeout(() => this.flushLog(), wait)
    this.logTimer.unref()
  }

  private flushLog (): void {
    this.logTimer = null
    const l = this.logged
    if (l.missed === 0) return
    this.warn({ missed: l.missed, recovered: l.recovered }, l.recovered === l.missed ? 'missed messages read back from their streams' : 'missed messages not all read back from their streams')
    this.logged = { at: Date.now(), missed: 0, recovered: 0 }
  }
}
