// At most WEBSOCKET_MAX_HANDSHAKES handshakes of client connections (raw
// WebSocket and Socket.IO; /ws/admin is not counted) past the token check
// and not yet welcomed on a node; the rest wait their turn there, in order
// of arrival. A handshake holds what it has made (its identity, its
// admission, its Redis commands and their promises, its welcome's reads)
// until its `welcome`. In a storm of 10,000 reconnects onto one node, begun
// all at once, they waited seconds for Redis and for each other, and the
// young-generation collector copied what they held again and again: about
// 33 KiB per connection lived through a scavenge (an open connection keeps
// 5 KiB), and V8's collector threads took a third of the node's CPU.
// 256 is what one admission script call takes
// (src/backend/admissions-redis.ts), so a turn's batches stay full.
//
// The place is taken after the token check (src/endpoints/admission.ts):
// only a proven identity, or a guest where guests are allowed, waits for one.
// A token that is slow to check (its key id unknown, the key set being
// fetched) holds nobody up; what a handshake does once it has a place is
// the backend's work, the same for every client. A place is given back
// once the welcome's work is over (the `welcome` sent, or the connection
// closed by the node before it), at a refusal, or when the transport
// closes, whichever comes first (`end` is idempotent).
//
// While the node refuses every handshake (draining, its backend
// unavailable, full), nothing waits: those waiting are refused within a
// sweep (WAIT_SWEEP_MS), as newcomers are at once. Waiting is bounded too:
// a client waits `waitMs` at most (HANDSHAKE_TIMEOUT), then is refused
// NODE_FULL (another node may take it); no more wait than the node takes
// connections, nor from one IP address than its connection limit allows
// (its others would be refused CONNECTION_LIMIT at their turn anyway).
const WAIT_SWEEP_MS = 250

/** Why a handshake was given no place: the refusal it gets. */
export type Turned = 'DRAINING' | 'BACKEND_UNAVAILABLE' | 'NODE_FULL' | 'CONNECTION_LIMIT'

export interface GateLimits {
  /** handshakes holding a place at once (WEBSOCKET_MAX_HANDSHAKES) */
  inFlight: number
  /** handshakes waiting on the node (WEBSOCKET_MAX_CONNECTIONS) */
  waiting: number
  /** handshakes waiting from one IP address (MAX_CONNECTIONS_PER_IP) */
  waitingPerIp: number
  /** how long one waits at most (HANDSHAKE_TIMEOUT) */
  waitMs: number
}

interface Waiter {
  readonly ip: string
  readonly since: number
  readonly wake: (turned: Turned | null) => void
}

export class HandshakeGate {
  private readonly holders = new Set<string>()
  // First in, first out: an array with a moving head (shift() moves a long array).
  private waiting: Array<Waiter | undefined> = []
  private head = 0
  private readonly waitingByIp = new Map<string, number>()
  private sweep: NodeJS.Timeout | null = null
  private closed = false

  /** `refusing`: why the node refuses every handshake now, or null. */
  constructor (private readonly limits: GateLimits, private readonly refusing: () => Turned | null) {}

  /** Handshakes holding a place. */
  get inFlight (): number { return this.holders.size }
  /** Handshakes waiting for one. */
  get queued (): number { return this.waiting.length - this.head }

  /**
   * Takes a place for connection `id`, from `ip`: null at once when one is
   * free (no promise, no turn), else a promise of null once one is, or of
   * the refusal it gets instead (then no place is held).
   */
  enter (id: string, ip: string): Promise<Turned | null> | null {
    if (this.closed) return Promise.resolve('DRAINING')
    if (this.holders.size < this.limits.inFlight && this.queued === 0) {
      this.holders.add(id)
      return null
    }
    if (this.queued >= this.limits.waiting) return Promise.resolve('NODE_FULL')
    const fromIp = this.waitingByIp.get(ip) ?? 0
    if (fromIp >= this.limits.waitingPerIp) return Promise.resolve('CONNECTION_LIMIT')
    this.waitingByIp.set(ip, fromIp + 1)
    return new Promise((resolve) => {
      this.waiting.push({
        ip,
        since: Date.now(),
        wake: (turned) => {
          if (turned === null) this.holders.add(id)
          resolve(turned)
        },
      })
      this.sweep ??= setInterval(() => { this.check() }, WAIT_SWEEP_MS).unref()
    })
  }

  /** Connection `id`'s handshake is over (welcomed, refused, gone): its place goes to the next waiting. Once only counts. */
  end (id: string): void {
    if (!this.holders.delete(id)) return
    while (this.holders.size < this.limits.inFlight && this.queued > 0) this.next().wake(null)
    this.idle()
  }

  /** The node is closing: those waiting, and any that come, are refused DRAINING. */
  close (): void {
    this.closed = true
    this.turnAway('DRAINING')
  }

  private check (): void {
    const why = this.refusing()
    if (why !== null) this.turnAway(why)
    // The oldest first: those that waited their time are refused.
    const due = Date.now() - this.limits.waitMs
    while (this.queued > 0 && this.waiting[this.head]!.since <= due) this.next().wake('NODE_FULL')
    this.idle()
  }

  private turnAway (why: Turned): void {
    while (this.queued > 0) this.next().wake(why)
    this.idle()
  }

  private next (): Waiter {
    const w = this.waiting[this.head]!
    this.waiting[this.head++] = undefined
    if (this.head === this.waiting.length) {
      this.waiting = []
      this.head = 0
    } else if (this.head > 1024 && 2 * this.head > this.waiting.length) {
      this.waiting = this.waiting.slice(this.head)
      this.head = 0
    }
    const n = this.waitingByIp.get(w.ip)!
    if (n === 1) this.waitingByIp.delete(w.ip)
    else this.waitingByIp.set(w.ip, n - 1)
    return w
  }

  private idle (): void {
    if (this.queued === 0 && this.sweep !== null) { clearInterval(this.sweep); this.sweep = null }
  }
}
