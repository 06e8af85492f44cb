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
// turn's batches stay full. A handshake ends at its `welcome`, its refusal,
// or its socket's close, whichever comes first. A node that refuses every
// handshake (draining, closing, full, its backend unavailable) holds none
// back: they are refused at once, as they were before the bound.
const kGate = Symbol('herald.handshake')
type GatedSocket = Socket & { [kGate]?: HandshakeGate }

/** The handshakes one node works on at once (upgrade.ts), and those waiting to begin. */
export class HandshakeGate {
  private inFlight = 0
  // First in, first out: an array with a moving head (shift() moves a long array).
  private waiting: Array<() => void> = []
  private head = 0

  constructor (private readonly max: number) {}

  /**
   * Runs `begin` now, or once a handshake in flight has ended. Past the bound,
   * `refusing` is asked whether the node refuses every handshake now: then
   * nothing is held back (those waiting begin, in order, then this one), to
   * be refused at once as without the bound, not after the handshakes in
   * flight, which a Redis that does not answer can hold for as long.
   */
  admit (begin: () => void, refusing: () => boolean): void {
    if (this.inFlight < this.max) return begin()
    if (!refusing()) { this.waiting.push(begin); return }
    this.beginWaiting(Infinity)
    begin()
  }

  /** `socket`'s handshake has begun: it counts until handshakeEnded(socket). */
  enter (socket: Socket): void {
    this.inFlight++
    ;(socket as GatedSocket)[kGate] = this
    socket.on('close', onGatedSocketClose)
  }

  end (socket: Socket): void {
    ;(socket as GatedSocket)[kGate] = undefined
    socket.removeListener('close', onGatedSocketClose)
    this.inFlight--
    this.beginWaiting(this.max)
  }

  /** Begins waiting handshakes, first come first, while fewer than `max` are in flight. */
  private beginWaiting (max: number): void {
    while (this.inFlight < max && this.head < this.waiting.length) {
      const next = this.waiting[this.head]!
      this.waiting[this.head++] = undefined as never
      if (this.head === this.waiting.length) { this.waiting = []; this.head = 0 }
      next()
    }
  }
}

function onGatedSocketClose (this: Socket): void { handshakeEnded(this) }

/** The handshake on `socket` is over (its welcome is written, or it closed): the next waiting one begins. */
export function handshakeEnded (socket: Socket): void {
  (socket as GatedSocket)[kGate]?.end(socket)
}
