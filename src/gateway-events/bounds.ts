// How many of its own events a node lets out, whatever happens to it: an
// attacker who can make the gateway see something (a bad handshake costs
// them one request) must not make it publish in proportion, nor grow its
// memory. Per node, in memory; every event suppressed is reported (`onSuppressed`).
//
// - Per key (an event type and its subject, a user or an IP): the first
//   event of a window goes out at once; the others of that window are folded,
//   and when it ends one summary goes out (the last folded event, with how many
//   it stands for). At most two events per key and window.
// - Per node: a token bucket of `ratePerSecond` (as many in one burst); past
//   it events are dropped, summaries too.
// - At most `maxKeys` open windows: past that the oldest window ends early
//   (its summary goes out then), so many subjects cannot grow the table.

export type Suppression = 'folded' | 'node_rate'

export interface BoundsOptions {
  windowMs: number
  ratePerSecond: number
  maxKeys: number
}

interface Window<T> {
  readonly type: string
  readonly until: number
  folded: number
  last: T | null
}

export class Bounds<T> {
  /** open windows by key, in the order they opened (so also the order they end) */
  private readonly windows = new Map<string, Window<T>>()
  private tokens: number
  private refilledAt: number
  private timer: NodeJS.Timeout | null = null
  private closed = false

  constructor (
    private readonly opts: BoundsOptions,
    /** an event let out: `folded` > 0 for a window's summary */
    private readonly onEmit: (item: T, folded: number) => void,
    private readonly onSuppressed: (type: string, reason: Suppression) => void,
    private readonly now: () => number = Date.now,
    /** false: the caller ends windows by calling sweep() (tests) */
    private readonly timers = true,
  ) {
    this.tokens = opts.ratePerSecond
    this.refilledAt = now()
  }

  /** Windows open now (for tests and the bound on memory). */
  get size (): number { return this.windows.size }

  offer (type: string, key: string, item: T): void {
    if (this.closed) return
    const now = this.now()
    const open = this.windows.get(key)
    if (open !== undefined && now < open.until) {
      open.folded++
      open.last = item
      this.onSuppressed(type, 'folded')
      return
    }
    if (open !== undefined) this.end(key, open)
    if (this.windows.size >= this.opts.maxKeys) {
      const [oldestKey, oldest] = this.windows.entries().next().value!
      this.end(oldestKey, oldest)
    }
    this.windows.set(key, { type, until: now + this.opts.windowMs, folded: 0, last: null })
    this.let(type, item, 0, now)
    if (this.timer === null && this.timers) this.arm()
  }

  /** Ends the windows whose time is up: their summaries go out. */
  sweep (): void {
    const now = this.now()
    for (const [key, w] of this.windows) {
      if (w.until > now) break
      this.end(key, w)
    }
  }

  /** Stops: open windows end without their summaries. */
  close (): void {
    this.closed = true
    if (this.timer !== null) clearTimeout(this.timer)
    this.timer = null
    this.windows.clear()
  }

  private end (key: string, w: Window<T>): void {
    this.windows.delete(key)
    if (w.folded > 0 && w.last !== null) this.let(w.type, w.last, w.folded, this.now())
  }

  /** Out if the node's bucket has a token. */
  private let (type: string, item: T, folded: number, now: number): void {
    const rate = this.opts.ratePerSecond
    this.tokens = Math.min(rate, this.tokens + (now - this.refilledAt) * rate / 1000)
    this.refilledAt = now
    if (this.tokens < 1) return this.onSuppressed(type, 'node_rate')
    this.tokens--
    this.onEmit(item, folded)
  }

  /** One timer, for the window that ends first. */
  private arm (): void {
    const first = this.windows.values().next().value
    if (first === undefined || this.closed) { this.timer = null; return }
    this.timer = setTimeout(() => {
      this.timer = null
      this.sweep()
      this.arm()
    }, Math.max(0, first.until - this.now()))
    this.timer.unref()
  }
}

/**
 * Refused handshakes per IP within a window: `hit` answers the count when it
 * reaches a multiple of `threshold` (a burst, and each further threshold's
 * worth in the same window), null otherwise. At most `maxKeys` IPs are
 * counted; past that the oldest count is forgotten.
 */
export class Bursts {
  private readonly counts = new Map<string, { since: number, n: number }>()

  constructor (private readonly threshold: number, private readonly windowMs: number, private readonly maxKeys: number, private readonly now: () => number = Date.now) {}

  get size (): number { return this.counts.size }

  hit (ip: string): number | null {
    const now = this.now()
    let c = this.counts.get(ip)
    if (c !== undefined && now - c.since >= this.windowMs) {
      this.counts.delete(ip)
      c = undefined
    }
    if (c === undefined) {
      // Old windows first in the map: drop the ones over, then the oldest if still full.
      for (const [k, v] of this.counts) {
        if (this.counts.size < this.maxKeys && now - v.since < this.windowMs) break
        this.counts.delete(k)
      }
      c = { since: now, n: 0 }
      this.counts.set(ip, c)
    }
    c.n++
    return c.n % this.threshold === 0 ? c.n : null
  }
}
