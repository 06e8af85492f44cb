import type { Socket } from 'socket.io'
import type { ErrorCode } from '../errors.js'
import { Counts } from '../limits/counts.js'

// What engine.io holds for each session, for the two bounds it does not keep
// itself: the bytes queued for a client (a polling client that stops polling
// holds everything sent to it) and the sessions that have not authenticated
// yet (an engine.io handshake needs no token; Socket.IO's CONNECT brings it).

export type EngineSocket = Socket['conn']

/**
 * Sessions without a Socket.IO connection admitted on them, per client IP
 * and per node. Each costs about 5 KiB until it authenticates or times out
 * (HANDSHAKE_TIMEOUT); a browser needs one for a round trip, so the bounds
 * only bind on a flood. Past them the handshake is refused as "try again"
 * (socket.io-client retries with backoff).
 */
export const UNAUTHENTICATED_PER_IP = 32
export const UNAUTHENTICATED_PER_NODE = 1024

/** Bytes and packets engine.io holds for one session that no transport has taken yet. */
export interface Queued { bytes: number, packets: number }

interface Session {
  ip: string
  queued: Queued
  /** set while no Socket.IO connection is admitted on the session */
  pending: NodeJS.Timeout | null
}

const sizeOf = (data: unknown): number =>
  typeof data === 'string' ? Buffer.byteLength(data) : ArrayBuffer.isView(data) || data instanceof ArrayBuffer ? data.byteLength : 0

export class EngineSessions {
  private readonly sessions = new WeakMap<EngineSocket, Session>()
  private readonly pendingPerIp = new Counts()
  private pendingCount = 0

  constructor (private readonly handshakeTimeoutMs: number) {}

  /** Unauthenticated sessions on this node now. */
  get pending (): number { return this.pendingCount }

  /** Checked at the engine.io handshake, before any token is seen. */
  refusal (ip: string): ErrorCode | null {
    if (this.pendingPerIp.of(ip) >= UNAUTHENTICATED_PER_IP) return 'CONNECTION_LIMIT'
    if (this.pendingCount >= UNAUTHENTICATED_PER_NODE) return 'NODE_FULL'
    return null
  }

  /** A new engine.io session: pending until `authenticated`, dropped at the handshake timeout. */
  opened (raw: EngineSocket, ip: string): void {
    const queued: Queued = { bytes: 0, packets: 0 }
    // Every packet passes `packetCreate` on its way into engine.io's write
    // buffer, and `flush` hands the whole buffer to the transport: what lies
    // between the two is what the client has not taken (engine.io pinned;
    // test/endpoints/socketio-hostile.test.ts checks this against the buffer).
    raw.on('packetCreate', (p: { data?: unknown }) => { queued.bytes += sizeOf(p.data); queued.packets++ })
    raw.on('flush', () => { queued.bytes = 0; queued.packets = 0 })
    // Discarded, not closed: a close waits for the client to collect what is
    // queued, and an idle polling client never does (engine.io keeps such a
    // session up to 30 s more).
    const pending = setTimeout(() => raw.close(true), this.handshakeTimeoutMs)
    pending.unref()
    this.sessions.set(raw, { ip, queued, pending })
    this.pendingPerIp.add(ip)
    this.pendingCount++
    raw.once('close', () => this.settle(raw))
  }

  /** A Socket.IO connection was admitted on the session. */
  authenticated (raw: EngineSocket): void { this.settle(raw) }

  queued (raw: EngineSocket): Queued {
    return this.sessions.get(raw)?.queued ?? { bytes: 0, packets: 0 }
  }

  private settle (raw: EngineSocket): void {
    const s = this.sessions.get(raw)
    if (s === undefined || s.pending === null) return
    clearTimeout(s.pending)
    s.pending = null
    this.pendingCount--
    this.pendingPerIp.remove(s.ip)
  }
}
