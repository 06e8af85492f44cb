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
//   one above the last one heard there, in the same epoch. The missed ones
//   are read from the stream and handed on first; what arrives on that
//   channel meanwhile waits behind them, so order holds.
// - After the backend is back: a channel quiet since then would show its
//   gap only with its next message, maybe hours later. Each channel heard
//   from is compared with its stream's top once the subscriber is back.
//
// Tracking is per channel, from the first message heard on it while
// subscribed: a channel dropped and taken again starts afresh, so a
// connection never gets, as live, messages from before it was welcomed.
// The admins' channel carries live copies of other streams' events (a
// user's, a group's); only the admin stream's own messages there count.

/** At most this many missed messages of one channel are read back (one read): more is past what a live gap holds. */
export const MAX_FILL = 1000
/** A read back that has not answered by then is given up: what waited behind it goes on. */
const FILL_TIMEOUT_MS = 2000

interface Heard { epoch: string, offset: number }

export interface GapStats {
  /** messages found missing on arrival or after a reconnect */
  missed: number
  /** of those, read back from their streams and handed on */
  recovered: number
}

export class Gaps {
  private readonly last = new Map<string, Heard>()
  /** channels being read back: what arrives on them meanwhile, in order */
  private readonly waiting = new Map<string, Envelope[]>()
  readonly stats: GapStats = { missed: 0, recovered: 0 }

  constructor (
    private readonly streams: StreamStore | null,
    /** the admins' channel, where only the admin stream's own messages are tracked */
    private readonly adminChannel: string,
    private readonly adminStream: string,
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
    if (h === undefined || h.epoch !== env.epoch || env.offset <= h.offset + 1) {
      // First heard, another epoch (history lost: nothing to read back), or next in line.
      if (h === undefined) this.last.set(channel, { epoch: env.epoch, offset: env.offset })
      else if (env.offset > h.offset || h.epoch !== env.epoch) { h.epoch = env.epoch; h.offset = env.offset }
      return this.pass(channel, env)
    }
    this.fill(channel, h, env.offset - 1, [env])
  }

  /** The channel is no longer listened on: tracking it ends. */
  forget (channel: string): void {
    this.last.delete(channel)
  }

  /**
   * After the backend came back: each channel heard from is compared with its
   * stream's top, and what it missed is read back. Resolves when all are through.
   */
  async catchUp (): Promise<void> {
    const streams = this.streams
    if (streams === null) return
    await Promise.all([...this.last].map(async ([channel, h]) => {
      const top = await streams.position(channel).catch(() => null)
      if (top === null || this.waiting.has(channel) || this.last.get(channel) !== h) return
      if (top.epoch === h.epoch && top.offset > h.offset) this.fill(channel, h, top.offset, [])
    }))
  }

  /** Reads back (h.offset, upTo] of `channel`, hands it on, then what waited. */
  private fill (channel: string, h: Heard, upTo: number, queue: Envelope[]): void {
    this.waiting.set(channel, queue)
    const missed = upTo - h.offset
    this.stats.missed += missed
    const after = Math.max(h.offset, upTo - MAX_FILL)
    const epoch = h.epoch
    let timer: NodeJS.Timeout | undefined
    const gaveUp = new Promise<null>((resolve) => { timer = setTimeout(() => resolve(null), FILL_TIMEOUT_MS) })
    const read = this.streams!.read(channel, after, upTo - after).catch(() => null)
    void Promise.race([read, gaveUp]).then((page) => {
      clearTimeout(timer)
      let recovered = 0
      if (page !== null && page.epoch === epoch) {
        for (const m of page.messages) {
          if (m.offset <= after || m.offset > upTo) continue
          const env = decode(m.message)
          if (env === null) continue
          recovered++
          this.pass(channel, env)
        }
      }
      this.stats.recovered += recovered
      this.warn({ channel, missed, recovered }, recovered === missed ? 'missed messages read back from their stream' : 'missed messages not all read back from their stream')
      h.offset = Math.max(h.offset, upTo)
      const q = this.waiting.get(channel) ?? []
      this.waiting.delete(channel)
      // Forgotten meanwhile (unsubscribed): its tracking stays ended.
      const tracked = this.last.get(channel) === h
      for (const env of q) {
        if (tracked) this.take(channel, env)
        else this.pass(channel, env)
      }
    })
  }
}
