import type { IncomingMessage } from 'node:http'
import { parse as parseQuery } from 'node:querystring'
import fp from 'fastify-plugin'
import { Server as IOServer, type Socket } from 'socket.io'
import { tokenFrom } from '../auth/credentials.js'
import type { Identity } from '../auth/verifier.js'
import type { Herald } from '../context.js'
import { Errors, HeraldError, type ErrorCode } from '../errors.js'
import { MAX_DATA_DEPTH } from '../events/depth.js'
import type { Delivery } from '../events/hub.js'
import { clientAddress } from '../http/forwarded.js'
import type { ConnectionRecord } from '../limits/connection-limiter.js'
import { channels as diag } from '../observability/channels.js'
import { CloseCodes } from '../protocol/close-codes.js'
import { admit, nodeRefusal, releaseSlot } from './admission.js'
import { eventsCommands } from './commands.js'
import { frameLimit, transportLimit } from '../publish/limits.js'
import { Connection, type Site } from './connection.js'
import { closed, opened, received } from './lifecycle.js'
import { heardFrom } from './liveness.js'
import { EngineSessions, type EngineSocket, type Queued } from './socketio-sessions.js'

// Socket.IO on the same port and the same pipeline as /ws/events: same auth,
// origin check, limits, subscriptions, delivery (through the hub, so an event
// crosses Redis once whatever the transport), expiry, revocation, registry.
// The Redis adapter makes rooms, fetchSockets and disconnectSockets cluster-wide.

export const SOCKET_IO_PATH = '/socket.io/'
// Engine.io packets queued for one client before it counts as a slow consumer,
// whatever their size (each costs an object besides its bytes).
const MAX_QUEUED_PACKETS = 1024
// A slow consumer's WebSocket that does not answer the close is cut after this.
const CLOSE_GRACE_MS = 2000

/** `release`: gives the admission slot back, once, at whichever comes first of the socket's disconnect and its engine.io session's close. */
interface SocketData { identity: Identity, record: ConnectionRecord, release: () => void }

declare module 'fastify' {
  interface FastifyInstance { io: IOServer }
}

/** A Socket.IO socket speaking Herald: events and replies become Socket.IO events; replies go to acks. */
export class SocketIoConnection extends Connection {
  readonly transport = 'socket.io' as const
  closeCode: number = CloseCodes.NORMAL
  private readonly acks = new Map<string, (reply: unknown) => void>()
  private ackSeq = 0

  constructor (
    id: string, site: Site, identity: Identity, ip: string, readonly socket: Socket,
    private readonly sendBufferLimit: number,
    /** what engine.io holds for this client and no transport has taken (socketio-sessions.ts) */
    private readonly queued: Queued,
  ) {
    super(id, site, identity, ip)
  }

  /** Remembers an acknowledgement callback; its id stands in for the request id. */
  registerAck (ack: (reply: unknown) => void): string {
    const id = `ack-${++this.ackSeq}`
    this.acks.set(id, ack)
    return id
  }

  // Engine.io runs its own ping/pong (pingInterval = WEBSOCKET_HEARTBEAT_INTERVAL).
  ping (): void { heardFrom(this) }

  // The same byte bound as /ws/events, on every transport: what engine.io
  // queues (all of it, for a polling client that does not poll; what waits
  // behind a busy WebSocket) plus what the WebSocket itself has not sent.
  protected congested (): boolean {
    return this.queued.packets > MAX_QUEUED_PACKETS ||
      this.queued.bytes + (this.transportSocket()?.bufferedAmount ?? 0) > this.sendBufferLimit
  }

  /**
   * The `ws` socket under the WebSocket transport (a private field of
   * engine.io's, pinned and checked by test/dependencies/internals.test.ts);
   * none under polling.
   */
  private transportSocket (): { bufferedAmount: number, readyState: number, terminate: () => void } | undefined {
    return (this.socket.conn.transport as unknown as { socket?: { bufferedAmount: number, readyState: number, terminate: () => void } }).socket
  }

  protected writeDelivery (d: Delivery): void {
    this.socket.emit(d.kind, d.payload())
  }

  protected writeMessage (type: string, payload: unknown, id?: string): void {
    const ack = id !== undefined ? this.acks.get(id) : undefined
    if (ack !== undefined) {
      this.acks.delete(id!)
      ack({ type, payload })
      return
    }
    this.socket.emit(type, payload)
  }

  protected terminate (code: number, reason: string): void {
    this.closeCode = code
    if (code === CloseCodes.DRAINING) {
      // A transport close, not a server disconnect: socket.io-client reconnects by itself.
      this.socket.conn.close()
      return
    }
    this.socket.emit('close', { code, reason })
    this.socket.disconnect(true)
    if (code === CloseCodes.SLOW_CONSUMER) {
      // engine.io would keep the session until the client collects its
      // queue, which a client that does not read never does: drop it now.
      // (The close above is dropped with it: the client sees the transport go.)
      const ws = this.transportSocket()
      this.socket.conn.close(true)
      if (ws !== undefined) setTimeout(() => { if (ws.readyState !== 3) ws.terminate() }, CLOSE_GRACE_MS).unref()
    }
  }
}

// Recorded, never sent: the WebSocket code for a connection lost without a
// close handshake, as the raw WebSocket endpoint records it.
const ABNORMAL_CLOSURE = 1006

/** The close code a Socket.IO disconnect the server did not ask for is counted under. */
function closeCodeOf (reason: string, tooBig: boolean): number {
  if (tooBig) return CloseCodes.MESSAGE_TOO_BIG
  switch (reason) {
    case 'ping timeout': return CloseCodes.HEARTBEAT_TIMEOUT
    // The connection went away without a Socket.IO goodbye: a lost network,
    // a killed tab, a proxy timeout. `client namespace disconnect` is the
    // clean one (socket.disconnect() on the client).
    case 'transport close':
    case 'transport error': return ABNORMAL_CLOSURE
    case 'parse error': return CloseCodes.INVALID_PAYLOAD
    // This node closing without a code of its own (shutdown): go elsewhere.
    case 'forced close':
    case 'forced server close':
    case 'server shutting down': return CloseCodes.DRAINING
    default: return CloseCodes.NORMAL
  }
}

/**
 * A WebSocket message over maxHttpBufferSize: ws fails the connection with
 * 1009 and engine.io reports it as a `transport error` whose description
 * wraps ws's error (the original, with its code, is not passed on).
 */
function isTooBig (description: unknown): boolean {
  return description instanceof Error && description.message.includes('Max payload size exceeded')
}

/**
 * Refusals engine.io answers at the handshake (allowRequest), before any
 * Socket.IO packet, in the handshake table's order: what needs no token.
 */
function transportRefusal (h: Herald, req: IncomingMessage): ErrorCode | null {
  const busy = nodeRefusal(h, false)
  if (busy !== null) return busy
  if (!h.originAllowed(req.headers.origin)) return 'ORIGIN_FORBIDDEN'
  return nodeRefusal(h, true)
}

function refusal (code: ErrorCode, message?: string, retryAfter?: number): Error {
  const err = new Error(message ?? Errors[code].message) as Error & { data: unknown }
  err.data = { code, status: Errors[code].status, ...(retryAfter !== undefined ? { retryAfter } : {}) }
  return err
}

/** How many Buffers, typed arrays or ArrayBuffers `args` hold, at any depth (0 past what JSON.stringify can walk). */
function binaryParts (args: unknown[]): number {
  let n = 0
  try {
    // The replacer sees each value's holder: the raw value, before toJSON.
    JSON.stringify(args, function (this: Record<string, unknown>, key: string, value: unknown) {
      const raw = this[key]
      if (raw instanceof ArrayBuffer || ArrayBuffer.isView(raw)) n++
      return value
    })
  } catch {}
  return n
}

/** A payload's JSON size; null past what JSON.stringify can walk. */
function packetBytes (payload: unknown): number | null {
  if (payload === undefined) return 0
  // socket.io-parser's JSON.parse takes any depth, JSON.stringify overflows
  // the stack past a few thousand levels (a 10 KB packet of brackets).
  try { return Buffer.byteLength(JSON.stringify(payload)) } catch { return null }
}

/** Registers Socket.IO on the Fastify server; its upgrades come through the server's one upgrade listener (src/http/upgrades.ts). */
export default fp(async function socketIo (app) {
  const h = app.herald
  const server = app.server
  const address = clientAddress(h.config.trustedProxies)
  const clientIp = (req: IncomingMessage): string => address(req).ip
  const sessions = new EngineSessions(h.config.handshakeTimeoutMs)
  const site: Site = { endpoint: 'events', serverId: h.config.serverId, log: app.log, framesOut: h.connections.framesOut }

  const io = new IOServer({
    path: SOCKET_IO_PATH,
    serveClient: false,
    pingInterval: h.config.heartbeatIntervalMs,
    pingTimeout: Math.min(20_000, h.config.heartbeatIntervalMs),
    maxHttpBufferSize: transportLimit(h.config.limits),
    // A fallback only: EngineSessions drops a session without a connection at
    // HANDSHAKE_TIMEOUT, first (Socket.IO's own close would keep an idle
    // polling session up to 30 s more, waiting for it to poll).
    connectTimeout: 2 * h.config.handshakeTimeoutMs,
    cors: { origin: (origin, cb) => cb(null, h.originAllowed(origin)), credentials: true },
    // Runs on engine.io handshakes only (requests with a sid skip it). Two
    // kinds of refusal live here. The browser CSWSH check, before any session
    // exists. And "try another node" (draining, backend unreachable, node at
    // capacity): refused at the transport, socket.io-client retries with
    // backoff (through the load balancer), whereas a middleware refusal
    // (connect_error with data) stops it for good. Everything that depends on
    // the client (token, revocation, per-user and per-IP limits) is in the
    // middleware, where the refusal can carry a code.
    // The bounds on sessions that have not authenticated yet live here too:
    // the token only arrives later, in Socket.IO's CONNECT.
    allowRequest: (req, cb) => {
      const ip = clientIp(req)
      const code = transportRefusal(h, req) ?? sessions.refusal(ip)
      if (code === null) return cb(null, true)
      if (diag.handshakeRefused.hasSubscribers) diag.handshakeRefused.publish({ serverId: h.config.serverId, endpoint: 'socket.io', code, ip, log: h.log })
      cb(code, false)
    },
  })

  // Rooms, fetchSockets and disconnectSockets across the cluster (src/backend/backend.ts).
  const adapter = h.backend.socketIoAdapter(`${h.config.keyPrefix}sio`)
  if (adapter !== undefined) io.adapter(adapter)

  // engine.io's attach adds an `upgrade` listener of its own, which would see
  // every path; the server's one listener (src/http/upgrades.ts) hands it
  // only its own, as that listener would (the same path prefix).
  const before = new Set(server.listeners('upgrade'))
  io.attach(server, { destroyUpgrade: false })
  for (const l of server.listeners('upgrade')) if (!before.has(l)) server.removeListener('upgrade', l as (...a: unknown[]) => void)
  app.upgrades.take((req, socket, head) => {
    if (req.url?.startsWith(SOCKET_IO_PATH) !== true) return false
    io.engine.handleUpgrade(req, socket, head)
    return true
  })

  // One connection per engine.io session, and the session ends with it.
  // Socket.IO closes a session that sends CONNECT for a namespace it is
  // connected to, but not one whose CONNECTs come while the first is still
  // in this (asynchronous) middleware: each of those would be admitted (a
  // slot, a welcome, its own subscriptions) behind one TCP connection. They
  // are refused, saying why: socket.io-client sends one when `connect()` is
  // called again before the first is answered, and then gives up with that
  // connect_error (a session closed instead, as Socket.IO closes the other
  // case, would make such a client reconnect, and double its CONNECT, for
  // ever). socket.io-client sends one CONNECT per namespace and closes its
  // session when its last namespace disconnects; Herald serves one.
  const taken = new WeakSet<object>()
  io.use((socket, next) => {
    const session = socket.conn
    if (taken.has(session)) return next(refusal('FORBIDDEN', 'another CONNECT on this Socket.IO session is being admitted: one connection per session (was connect() called twice?)'))
    taken.add(session)
    const refuse = (err: Error): void => { taken.delete(session); next(err) }
    const auth = socket.handshake.auth as { token?: unknown } | undefined
    let token: string | undefined
    try {
      // The query as it came (engine.io keeps the last of a repeated name), read as /ws/events reads it.
      const url = socket.request.url ?? ''
      const q = url.indexOf('?')
      token = typeof auth?.token === 'string' && auth.token.length > 0 ? auth.token : tokenFrom(socket.request.headers, q === -1 ? undefined : parseQuery(url.slice(q + 1)))
    } catch (err) {
      const e = err as HeraldError
      return refuse(refusal(e.code, e.message))
    }
    admit(h, { endpoint: 'events', transport: 'socket.io', origin: socket.handshake.headers.origin, token, ip: clientIp(socket.request), log: h.log, gone: () => socket.conn.readyState !== 'open' }).then((a) => {
      if (!a.ok) {
        if (!a.elsewhere) return refuse(refusal(a.code, a.message, a.retryAfter))
        // allowRequest refused these at the handshake; they came true since.
        // Closing the transport (not a connect_error with a code, which
        // socket.io-client never retries) keeps them "try again".
        socket.conn.close()
        return refuse(new Error(a.message ?? Errors[a.code].message))
      }
      if (socket.conn.readyState !== 'open') {
        releaseSlot(h, a.record)
        return refuse(refusal('INTERNAL', 'the client left during the handshake'))
      }
      // The slot lives as long as the socket, or the session if Socket.IO
      // never emits `connection` for it.
      let released = false
      const release = (): void => {
        if (released) return
        released = true
        session.off('close', release)
        taken.delete(session)
        releaseSlot(h, a.record)
      }
      session.once('close', release)
      ;(socket.data as SocketData) = { identity: a.identity, record: a.record, release }
      next()
    }, refuse)
  })

  // Polling: a POST over maxHttpBufferSize gets a bare 413 from engine.io and
  // the session lingers until the client gives up on it. Close it now and
  // remember why, so the disconnect counts as 1009 like a WebSocket one.
  // Sessions by id: engine.io's own table (a protected field of its types; engine.io is pinned and
  // test/dependencies/internals.test.ts checks it), not a second one costing memory per session.
  const oversized = new WeakSet<object>()
  const clients = (io.engine as unknown as { clients: Record<string, EngineSocket | undefined> }).clients
  io.engine.use((req: IncomingMessage, _res: unknown, next: (err?: unknown) => void) => {
    if (req.method === 'POST' && Number(req.headers['content-length']) > transportLimit(h.config.limits)) {
      const sid = new URL(req.url ?? '/', 'http://localhost').searchParams.get('sid')
      const raw = sid !== null && Object.hasOwn(clients, sid) ? clients[sid] : undefined
      if (raw !== undefined) {
        oversized.add(raw)
        // After engine.io answered 413, so the client sees why.
        req.once('close', () => raw.close(true))
      }
    }
    next()
  })

  io.engine.on('connection', (raw: EngineSocket) => sessions.opened(raw, clientIp(raw.request)))

  io.on('connection', (socket: Socket) => {
    const { identity, record, release } = socket.data as SocketData
    sessions.authenticated(socket.conn)
    const conn = new SocketIoConnection(record.connectionId, site, identity, record.ip, socket, h.config.limits.sendBufferBytes, sessions.queued(socket.conn))
    // Rooms for application code using the adapter: one per user, cluster-wide.
    if (!conn.guest) void socket.join(`user:${identity.userId}`)

    // A Buffer or ArrayBuffer anywhere in an event comes as binary
    // attachments, each an engine.io packet of its own. The protocol is JSON:
    // such an event is refused. Which event carried them is read from the
    // event itself (Socket.IO hands events over a tick after their packets,
    // several packets' worth at a time); the count of attachments seen only
    // spares the plain events of a socket that never sent one that walk.
    let attachments = 0
    socket.conn.on('packet', (p: { type: string, data?: unknown }) => {
      if (p.type === 'message' && typeof p.data !== 'string') attachments++
    })
    // `event` is whatever the packet's first element was: socket.io-parser
    // lets numbers through (`42[123,{}]`).
    socket.onAny((event: unknown, ...args: unknown[]) => {
      const ack = typeof args[args.length - 1] === 'function' ? args.pop() as (r: unknown) => void : undefined
      const payload = args[0]
      let binary = 0
      if (attachments > 0) {
        binary = binaryParts(args)
        attachments = Math.max(0, attachments - binary)
      }
      // The packet's size as MAX_MESSAGE_BYTES and MAX_PUBLISH_BYTES count it
      // (engine.io bounded the whole packet by the larger already): every
      // argument, those after the payload too, which nothing reads.
      const bytes = binary ? 0 : packetBytes(args.length > 1 ? args : payload)
      const verdict = bytes === null ? 'too-deep' : frameLimit(h.config.limits, event, bytes)
      if (verdict === 'close') {
        conn.close(CloseCodes.MESSAGE_TOO_BIG, 'message too big')
        return
      }
      received(h, conn, eventsCommands, () => {
        const id = ack !== undefined ? conn.registerAck(ack) : undefined
        if (binary > 0) return { error: ['INVALID_PAYLOAD', 'binary attachments (a Buffer or an ArrayBuffer) are not accepted: the protocol is JSON', id] }
        if (verdict === 'too-deep') return { error: ['DATA_TOO_DEEP', `${Errors.DATA_TOO_DEEP.message}: a payload may nest at most ${MAX_DATA_DEPTH} levels of objects and arrays`, id] }
        if (verdict === 'too-large-publish') return { error: ['PUBLISH_TOO_LARGE', `a publish may hold at most ${h.config.limits.publishBytes} bytes (MAX_PUBLISH_BYTES)`, id] }
        if (typeof event !== 'string') return { error: ['UNKNOWN_TYPE', `${Errors.UNKNOWN_TYPE.message}: the event name must be a string`, id] }
        if (payload !== undefined && (typeof payload !== 'object' || payload === null || Array.isArray(payload))) {
          return { error: ['INVALID_PAYLOAD', 'payload must be an object', id] }
        }
        return { msg: { type: event, ...(id !== undefined ? { id } : {}), ...(payload !== undefined ? { payload: payload as Record<string, unknown> } : {}) } }
      })
    })
    socket.on('disconnect', (reason: string, description: unknown) => {
      const tooBig = oversized.has(socket.conn) || isTooBig(description)
      closed(h, conn, conn.closed ? conn.closeCode : closeCodeOf(reason, tooBig))
      release()
      // A session left without its connection would be counted by no limit
      // (it passed the handshake bounds when it connected) and could connect
      // again and again on one TCP connection. engine.io sends what is
      // queued (a server close's `close` event) before it closes.
      if (socket.conn.readyState === 'open') socket.conn.close()
    })
    opened(h, conn)
  })

  app.decorate('io', io)
  app.addHook('preClose', async () => {
    // Sockets still open at close are told to reconnect elsewhere.
    for (const s of io.of('/').sockets.values()) s.conn.close()
  })
}, { name: 'herald-socketio', dependencies: ['herald-upgrades'] })
