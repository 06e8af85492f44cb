import type { Connection } from '../endpoints/connection.js'
import type { Envelope } from '../events/codec.js'
import { matches } from '../protocol/patterns.js'

// An admin's live tail (`start_tail`): every event published in the cluster
// that matches its filters, whatever the connection subscribed to, at most
// TAIL_MAX_PER_SECOND a second. A busy cluster publishes thousands a second;
// a browser showing them would fall behind and its socket would fill until
// the node closed it as a slow consumer. So each tail holds at most a fifth
// of the cap between two flushes, counts what does not fit as dropped, and
// is flushed every TAIL_FLUSH_MS in one `tail` frame: at most five frames
// and TAIL_MAX_PER_SECOND events a second per tail, however busy the cluster.

export const TAIL_MAX_PER_SECOND = 50
export const TAIL_FLUSH_MS = 200
const PER_FLUSH = Math.round(TAIL_MAX_PER_SECOND * TAIL_FLUSH_MS / 1000)

interface Tail {
  readonly conn: Connection
  readonly patterns: ReadonlyArray<readonly string[]>
  readonly userId: string | null
  /** the JSON of events to send at the next flush, at most PER_FLUSH */
  pending: string[]
  dropped: number
}

/** What the tails need of the hub: to be shown every event, once, only while a tail runs. */
export interface TapSource {
  setTap (tap: ((env: Envelope, type: readonly string[]) => void) | null): void
}

/** The tails of one node's admin connections. */
export class Tails {
  private readonly byConn = new Map<Connection, Tail>()
  private timer: NodeJS.Timeout | null = null

  constructor (private readonly hub: TapSource) {}

  get size (): number { return this.byConn.size }

  /** Starts (or replaces) `conn`'s tail: events matching one of `eventTypes` and, when given, of `userId`. */
  start (conn: Connection, eventTypes: readonly string[], userId: string | null): void {
    this.byConn.set(conn, { conn, patterns: eventTypes.map((p) => p.split('.')), userId, pending: [], dropped: 0 })
    if (this.timer === null) {
      this.hub.setTap((env, type) => this.offer(env, type))
      this.timer = setInterval(() => this.flush(), TAIL_FLUSH_MS)
      this.timer.unref()
    }
  }

  stop (conn: Connection): void {
    this.byConn.delete(conn)
    if (this.byConn.size === 0) this.idle()
  }

  /** An event on its way to this node's admins: kept for each tail it matches, or counted as dropped. */
  offer (env: Envelope, type: readonly string[]): void {
    for (const t of this.byConn.values()) {
      if (t.userId !== null && env.userId !== t.userId) continue
      let match = false
      for (const p of t.patterns) if (matches(p, type)) { match = true; break }
      if (!match) continue
      if (t.pending.length < PER_FLUSH) t.pending.push(env.json)
      else t.dropped++
    }
  }

  close (): void {
    this.byConn.clear()
    this.idle()
  }

  private flush (): void {
    for (const t of this.byConn.values()) {
      // A connection's tail ends with it.
      if (t.conn.closed) { this.byConn.delete(t.conn); continue }
      if (t.pending.length === 0 && t.dropped === 0) continue
      const events: unknown[] = []
      for (const json of t.pending) {
        // The hub checked its shape, not that it parses; one that does not is left out.
        try { events.push(JSON.parse(json)) } catch {}
      }
      const dropped = t.dropped
      t.pending = []
      t.dropped = 0
      t.conn.emit('tail', { events, dropped })
    }
    if (this.byConn.size === 0) this.idle()
  }

  private idle (): void {
    this.hub.setTap(null)
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }
}
