import { Counts } from '../limits/counts.js'

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
// once that work is over: at a refusal, when the transport closes before
// the connection is opened, or, once it is opened (src/endpoints/lifecycle.ts),
// only when the welcome's reads have ended (the `welcome` sent, or the
// connection closed by either side meanwhile; ATTACH_MAX_MS bounds them), so
// a client that gives up mid-handshake does not let another begin while
// its reads still run.
//
// While the node refuses every handshake (draining, its backend
// unavailable, full), nothing waits: those waiting are refused within a
// sweep (WAIT_SWEEP_MS), as newcomers are at once. Waiting is bounded too:
// half of HANDSHAKE_TIMEOUT at most (`waitMs`), so that a client refused
// then still has time to try another node before its own connect timeout
// (the SDK's is 10 s, HANDSHAKE_TIMEOUT's default); no more wait than the
// node takes connections, nor from one IP address than its connection
// limit allows (its others would be refused at their turn anyway). A
// waiting client that leaves is dropped at the next sweep, so it counts
// toward neither.
const WAIT_SWEEP_MS = 250

/**
 * Why a handshake was given no place: the node refuses every handshake
 * (its code), too many wait from its IP address (`ip`) or on the node
 * (`queue`), it waited its time (`waited`), or its client left (`gone`).
 */
export type Turned = Refusing | 'ip' | 'queue' | 'waited' | 'gone'
/** Why the node refuses every handshake now. */
export type Refusing = 'DRAINING' | 'BACKEND_UNAVAILABLE' | 'NODE_FULL'

export interface GateLimits {
  /** handshakes holding a place at once (WEBSOCKET_MAX_HANDSHAKES) */
  inFlight: number
  /** handshakes waiting on the node (WEBSOCKET_MAX_CONNECTIONS) */
  waiting: number
  /** handshakes waiting from one IP address (MAX_CONNECTIONS_PER_IP) */
  waitingPerIp: number
  /** how long one waits at most (half of HANDSHAKE_TIMEOUT) */
  waitMs: number
}

interface Waiter {
  readonly ip: string
  readonly since: number
  readonly gone: () => boolean
  readonly wake: (turned: Turned | null) => void
}

const never = (): boolean => false

export class HandshakeGate {
  // Each place's holder, and whether its connection is opened (then only
  // the end of its welcome's reads gives the place back).
  private readonly holders = new Map<string, boolean>()
  // First in, first out: an array with a moving head (shift() moves a long array).
  private waiting: Array<Waiter | undefined> = []
  private head = 0
  private readonly waitingByIp = new Counts()
  private sweep: NodeJS.Timeout | null = null
  private shut = false

  /** `refusing`: why the node refuses every handshake now, or null. */
  constructor (private readonly limits: GateLimits, private readonly refusing: () => Refusing | null) {}

  /** Handshakes holding a place. */
  get inFlight (): number { return this.holders.size }
  /** Handshakes waiting for one. */
  get queued (): number { return this.waiting.length - this.head }

  /**
   * Takes a place for connection `id`, from `ip`: null at once when one is
   * free (no promise, no turn), else a promise of null once one is, or of
   * why it got none (then no place is held). `gone`: whether its client left.
   */
  enter (id: string, ip: string, gone: () => boolean = never): Promise<Turned | null> | null {
    if (this.shut) return Promise.resolve('DRAINING')
    if (this.holders.size < this.limits.inFlight && this.queued === 0) {
      this.holders.set(id, false)
      return null
    }
    if (this.queued >= this.limits.waiting) return Promise.resolve('queue')
    if (this.waitingByIp.of(ip) >= this.limits.waitingPerIp) return Promise.resolve('ip')
    this.waitingByIp.add(ip)
    return new Promise((resolve) => {
      this.waiting.push({
        ip,
        since: performance.now(),
        gone,
        wake: (turned) => {
          if (turned === null) this.holders.set(id, false)
          resolve(turned)
        },
      })
      this.sweep ??= setInterval(() => { this.check() }, WAIT_SWEEP_MS).unref()
    })
  }

  /** Connection `id` is opened: its place is now given back by `end` only, when its welcome's reads are over. */
  opened (id: string): void {
    if (this.holders.has(id)) this.holders.set(id, true)
  }

  /** Connection `id`'s transport closed: its place is given back unless it is opened (`end` does, then). */
  transportClosed (id: string): void {
    if (this.holders.get(id) === false) this.end(id)
  }

  /** Connection `id`'s handshake is over: its place goes to the next waiting. Once only counts. */
  end (id: string): void {
    if (!this.holders.delete(id)) return
    while (this.holders.size < this.limits.inFlight && this.queued > 0) {
      const w = this.next()
      w.wake(w.gone() ? 'gone' : null)
    }
    this.idle()
  }

  /** The node is closing: those waiting, and any that come, are refused DRAINING. */
  close (): void {
    this.shut = true
    this.turnAway('DRAINING')
  }

  private check (): void {
    const why = this.refusing()
    if (why !== null) this.turnAway(why)
    // The oldest first: those that waited their time are refused.
    const due = performance.now() - this.limits.waitMs
    while (this.queued > 0 && this.waiting[this.head]!.since <= due) this.next().wake('waited')
    this.dropGone()
    this.idle()
  }

  /** Waiters whose client left, dropped in place (the queue keeps its order). */
  private dropGone (): void {
    let kept = this.head
    for (let i = this.head; i < this.waiting.length; i++) {
      const w = this.waiting[i]!
      if (w.gone()) {
        this.waitingByIp.remove(w.ip)
        w.wake('gone')
      } else {
        this.waiting[kept++] = w
      }
    }
    this.waiting.length = kept
    if (this.head === kept) { this.waiting = []; this.head = 0 }
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
    this.waitingByIp.remove(w.ip)
    return w
  }

  private idle (): void {
    if (this.queued === 0 && this.sweep !== null) { clearInterval(this.sweep); this.sweep = null }
  }
}
