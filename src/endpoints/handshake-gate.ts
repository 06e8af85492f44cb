import type { Socket } from 'node:net'

// WEBSOCKET_MAX_HANDSHAKES handshakes in flight on a node at most; the rest
// wait their turn, in order of arrival, as requests read but not begun. A
// handshake holds what it has made (the token's identity, its admission,
// its Redis commands and their promises, the welcome's reads) until its
// `welcome`. In a storm of 10,000 reconnects onto one node, begun all at
// once, they waited seconds for Redis and for each other, and the
// young-generation collector copied what they held again and again: about
// 33 KiB per connection lived through a scavenge (5 KiB stays with an open
// connection), and V8's collector threads took a third of the node's CPU.
// Bounded at 256: 20 KiB, and those threads a quarter less
// (bench/profile.ts, SCENARIO=storm, HEAP=survived). 256 is what one
// admission script call takes (src/backend/admissions-redis.ts), so a
// turn's batches stay full.
//
// A handshake counts until its `welcome`, its refusal or its socket's
// close, and for two sweeps at most (a sweep every tenth of
// HANDSHAKE_TIMEOUT, so 1-2 s by default): one that takes longer (a key set
// being fetched for a token's unknown key id, a Redis that does not answer)
// goes on uncounted, so slow handshakes, or tokens made up to be slow, hold
// the others back that long at most. A node that refuses every handshake
// (draining, closing, full, its backend unavailable) holds none back: those
// waiting begin at once, to be refused as newcomers are, when the next one
// arrives or at the next sweep.
const kGate = Symbol('herald.handshake')
type GatedSocket = Socket & { [kGate]?: HandshakeGate }

/** The handshakes one node works on at once (upgrade.ts), and those waiting to begin. */
export class HandshakeGate {
  private inFlight = 0
  // First in, first out: an array with a moving head (shift() moves a long array).
  private waiting: Array<() => void> = []
  private head = 0
  // Counted handshakes by the sweep they began after: those in `older` at a
  // sweep have counted for a whole slot time.
  private current = new Set<Socket>()
  private older = new Set<Socket>()
  private sweep: NodeJS.Timeout | null = null
  private starting = false

  /** `refusing`: whether the node refuses every handshake now. */
  constructor (private readonly max: number, private readonly slotMs: number, private readonly refusing: () => boolean) {}

  /** Runs `begin` now, or once a handshake in flight has ended. */
  admit (begin: () => void): void {
    if (this.inFlight < this.max) return begin()
    if (!this.refusing()) { this.waiting.push(begin); return }
    this.beginWaiting(Infinity)
    begin()
  }

  /** `socket`'s handshake has begun: it counts until handshakeEnded(socket), a slot time at most. */
  enter (socket: Socket): void {
    this.inFlight++
    ;(socket as GatedSocket)[kGate] = this
    socket.on('close', onGatedSocketClose)
    this.current.add(socket)
    this.sweep ??= setInterval(() => { this.sweepOlder() }, this.slotMs).unref()
  }

  end (socket: Socket): void {
    this.release(socket)
    this.beginWaiting(this.max)
  }

  private release (socket: Socket): void {
    ;(socket as GatedSocket)[kGate] = undefined
    socket.removeListener('close', onGatedSocketClose)
    this.current.delete(socket)
    this.older.delete(socket)
    this.inFlight--
  }

  private sweepOlder (): void {
    const late = this.older
    this.older = this.current
    this.current = new Set()
    for (const socket of late) this.release(socket)
    this.beginWaiting(this.refusing() ? Infinity : this.max)
    if (this.inFlight === 0 && this.sweep !== null) { clearInterval(this.sweep); this.sweep = null }
  }

  /**
   * Begins waiting handshakes, first come first, while fewer than `max` are
   * in flight. One that ends as it begins (refused at once) ends inside this
   * loop: the loop goes on rather than calling itself, or ten thousand
   * refusals in a row would run out of stack.
   */
  private beginWaiting (max: number): void {
    if (this.starting) return
    this.starting = true
    try {
      while (this.inFlight < max && this.head < this.waiting.length) {
        const next = this.waiting[this.head]!
        this.waiting[this.head++] = undefined as never
        if (this.head === this.waiting.length) {
          this.waiting = []
          this.head = 0
        } else if (this.head > 1024 && 2 * this.head > this.waiting.length) {
          this.waiting = this.waiting.slice(this.head)
          this.head = 0
        }
        next()
      }
    } finally {
      this.starting = false
    }
  }
}

function onGatedSocketClose (this: Socket): void { handshakeEnded(this) }

/** The handshake on `socket` is over (its welcome is written, it is refused, it closed): the next waiting one begins. */
export function handshakeEnded (socket: Socket): void {
  (socket as GatedSocket)[kGate]?.end(socket)
}
