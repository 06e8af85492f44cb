import type { Herald } from '../context.js'
import { CloseCodes } from '../protocol/close-codes.js'
import type { Connection } from './connection.js'

// Token expiry on live connections: `auth_expiring` at exp - AUTH_EXPIRY_WARNING,
// then `auth_expired` and close 4001 at exp; a refresh moves both.
//
// One timer per node, not per connection: deadlines sit in a binary min-heap
// and the timer is armed for the earliest. Entries made stale by a refresh or
// a close are skipped when they come up (they carry the exp they were for),
// and swept out once they outnumber the live ones: with day-long tokens a
// stale entry would otherwise keep a closed socket in memory for a day.

interface Entry { at: number, conn: Connection, exp: number }

// What the schedule keeps on each connection, declared and touched here only.
const kWarnedFor = Symbol('herald.expiry.warnedFor')
const kArmedFor = Symbol('herald.expiry.armedFor')
interface Marks {
  /** the exp that auth_expiring was sent for */
  [kWarnedFor]: number
  /** the exp the schedule holds a live entry for (0: none) */
  [kArmedFor]: number
}
const marks = (c: Connection): Marks => c as Connection & Marks

/** Sets up a connection's expiry marks; called by its constructor. */
export function expirable (c: Connection): void {
  const m = marks(c)
  m[kWarnedFor] = 0
  m[kArmedFor] = 0
}

// setTimeout cannot wait longer than ~24.8 days; the timer re-arms past that.
const MAX_DELAY = 2 ** 31 - 1

export class ExpiryScheduler {
  private readonly heap: Entry[] = []
  private timer: NodeJS.Timeout | null = null
  /** when the timer fires (Infinity: not armed) */
  private wakeAt = Infinity
  /** entries known to be stale (their connection closed or re-armed) */
  private stale = 0

  constructor (private readonly warningMs: number) {}

  /** A connection closed (or is about to be re-armed): its entry is stale. */
  forget (c: Connection): void {
    if (marks(c)[kArmedFor] === 0) return
    this.stale++
    if (this.stale > 64 && this.stale * 2 > this.heap.length) this.compact()
  }

  /** (Re)schedules a connection after welcome or a refresh. */
  arm (c: Connection): void {
    const exp = c.identity.expiresAt
    if (!Number.isFinite(exp)) return
    const m = marks(c)
    if (m[kArmedFor] !== 0) this.forget(c)
    m[kArmedFor] = exp
    const warnAt = exp - this.warningMs
    // A token that is already inside its warning window is warned at once.
    this.push({ at: m[kWarnedFor] === exp ? exp : Math.max(warnAt, Date.now()), conn: c, exp })
  }

  stop (): void {
    if (this.timer) clearTimeout(this.timer)
    this.timer = null
    this.heap.length = 0
    this.stale = 0
  }

  private isStale (e: Entry): boolean { return e.conn.closed || e.conn.identity.expiresAt !== e.exp || marks(e.conn)[kArmedFor] !== e.exp }

  /** Drops stale entries and rebuilds the heap: O(n), run when half are stale. */
  private compact (): void {
    const live = this.heap.filter((e) => !this.isStale(e))
    this.heap.length = 0
    for (const e of live) this.heap.push(e)
    for (let i = (this.heap.length >> 1) - 1; i >= 0; i--) this.siftDown(i)
    this.stale = 0
    this.schedule()
  }

  private push (e: Entry): void {
    const h = this.heap
    h.push(e)
    let i = h.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (h[p]!.at <= h[i]!.at) break
      ;[h[p], h[i]] = [h[i]!, h[p]!]
      i = p
    }
    if (e.at < this.wakeAt) this.schedule()
  }

  private pop (): Entry | undefined {
    const h = this.heap
    const top = h[0]
    const last = h.pop()
    if (h.length > 0 && last !== undefined) {
      h[0] = last
      this.siftDown(0)
    }
    return top
  }

  private siftDown (from: number): void {
    const h = this.heap
    let i = from
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let m = i
      if (l < h.length && h[l]!.at < h[m]!.at) m = l
      if (r < h.length && h[r]!.at < h[m]!.at) m = r
      if (m === i) break
      ;[h[m], h[i]] = [h[i]!, h[m]!]
      i = m
    }
  }

  private schedule (): void {
    if (this.timer) clearTimeout(this.timer)
    const next = this.heap[0]
    if (next === undefined) { this.timer = null; this.wakeAt = Infinity; return }
    this.wakeAt = next.at
    this.timer = setTimeout(() => this.run(), Math.min(MAX_DELAY, Math.max(0, next.at - Date.now())))
    this.timer.unref()
  }

  private run (): void {
    this.timer = null
    this.wakeAt = Infinity
    const now = Date.now()
    while (this.heap.length > 0 && this.heap[0]!.at <= now) {
      const e = this.pop()!
      const { conn: c, exp } = e
      // Stale: closed, or refreshed to another exp since this entry was made.
      if (this.isStale(e)) { if (this.stale > 0) this.stale--; continue }
      if (now >= exp) {
        c.reply('auth_expired', { expiredAt: new Date(exp).toISOString() })
        c.close(CloseCodes.AUTH_EXPIRED, 'authentication expired')
        continue
      }
      if (marks(c)[kWarnedFor] !== exp) {
        marks(c)[kWarnedFor] = exp
        c.reply('auth_expiring', { expiresAt: new Date(exp).toISOString(), expiresIn: exp - now })
      }
      this.push({ at: exp, conn: c, exp })
    }
    this.schedule()
  }
}

/** Arms (or re-arms after a refresh) the node's expiry schedule for a connection. */
export function armExpiry (h: Herald, c: Connection): void {
  h.expiry.arm(c)
}
