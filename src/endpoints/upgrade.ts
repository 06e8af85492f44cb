import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { parse as parseQuery } from 'node:querystring'
import type { WebSocketServer } from 'ws'
import { tokenFrom } from '../auth/credentials.js'
import { requestOrigin } from '../auth/origin.js'
import type { Herald } from '../context.js'
import { errorBody, HeraldError, type ErrorCode } from '../errors.js'
import { writeResponse } from '../http/errors.js'
import { clientAddress, type ClientAddress } from '../http/forwarded.js'
import type { ConnectionRecord } from '../limits/connection-limiter.js'
import { admit, releaseSlot } from './admission.js'
import { openSession, type SessionSite } from './session.js'

// The upgrades of /ws/events and /ws/admin are read off the server's
// `upgrade` event here, not routed through Fastify. Routing one through it
// (@fastify/websocket) built a ServerResponse, a Request, a Reply and a child
// logger, and ran the hook chain, for a request that is answered once, by
// hand, either way: a profile of a connect storm put that path at about a
// third of the node's time per connection. What a connection needs from the
// request (its address as TRUSTED_PROXIES allow, the token, the Origin, the
// node's own origin) is read here with the same rules Fastify applies
// (src/http/forwarded.ts); every refusal is the same JSON error, status and
// Retry-After as the rest of the HTTP API.

/** What the upgrade proved, handed to the session. */
export interface Upgraded {
  readonly identity: import('../auth/verifier.js').Identity
  readonly connectionId: string
  readonly ip: string
  /** ties the connection's log lines to its upgrade request */
  readonly reqId: string
}

// The slot a socket holds, released by one shared 'close' listener: a closure
// per connection (made in the guard, it would keep the request alive too) and
// a once() wrapper cost a few hundred bytes on every idle connection.
const kSlot = Symbol('herald.slot')
interface Slot { readonly h: Herald, readonly record: ConnectionRecord }
type SlotSocket = Socket & { [kSlot]?: Slot }

function onSocketClose (this: Socket): void {
  const slot = (this as SlotSocket)[kSlot]
  if (slot === undefined) return
  ;(this as SlotSocket)[kSlot] = undefined
  releaseSlot(slot.h, slot.record)
}

function releaseOnClose (socket: Socket, h: Herald, record: ConnectionRecord): void {
  ;(socket as SlotSocket)[kSlot] = { h, record }
  if (socket.destroyed) onSocketClose.call(socket)
  else socket.on('close', onSocketClose)
}

const clientGone = (socket: Socket): boolean => socket.destroyed || socket.readableEnded || !socket.writable

// Node removes its own socket error listener before emitting `upgrade`; until
// ws installs its own (in handleUpgrade), an error must not crash the node.
function onEarlySocketError (this: Socket): void { this.destroy() }

let requests = 0

// A corked 101 waits for the welcome, which waits for Redis: in a storm, or
// with Redis slow, that can take seconds, and a client without its 101 can
// neither answer the node's pings nor tell a slow handshake from a dead one.
// So a socket stays corked one sweep at most (400-800 ms), far inside any
// client's handshake timeout (the SDK's is 10 s). In a reconnect storm of
// 10,000 clients onto one node most welcomes take longer than 100-200 ms:
// with a sweep of 100 ms, the 101s that left alone were 3-4% of the node's
// CPU; with 400 ms, six alternating storms took 5% less node CPU and 6% less
// time (bench/profile.ts SCENARIO=storm). Spread over two nodes (`npm run
// bench -- --only=storm`) the welcomes are quicker and the two sweeps
// measure alike.
const CORK_SWEEP_MS = 400
let corked = new Set<Socket>()
let older = new Set<Socket>()
let sweep: NodeJS.Timeout | null = null
function uncorkOlder (): void {
  for (const s of older) if (s.writableCorked !== 0) s.uncork()
  older = corked
  corked = new Set()
  if (older.size === 0 && sweep !== null) { clearInterval(sweep); sweep = null }
}
export function corkBriefly (socket: Socket): void {
  socket.cork()
  corked.add(socket)
  sweep ??= setInterval(uncorkOlder, CORK_SWEEP_MS).unref()
}

/**
 * The upgrade handler of the WebSocket endpoints: `sites` by path. Answers
 * whether it took the request; one it does not take (another path, another
 * method) is the caller's to route.
 */
export function createUpgrades (h: Herald, wss: WebSocketServer, sites: ReadonlyMap<string, SessionSite>, closing: () => boolean): (req: IncomingMessage, socket: Socket, head: Buffer) => boolean {
  const address = clientAddress(h.config.trustedProxies)
  const log = h.log
  return function upgrade (req, socket, head) {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const site = req.method === 'GET' ? sites.get(q === -1 ? url : url.slice(0, q)) : undefined
    if (site === undefined) return false
    socket.on('error', onEarlySocketError)
    // The client is gone already: in a storm the accept queue holds requests
    // whose clients gave up (their connect timeout) while they waited there.
    // Admitting one would cost a token check, a slot and a subscription in
    // Redis, for nobody.
    if (clientGone(socket)) {
      socket.destroy()
      return true
    }
    const reqId = `ws-${(requests = (requests + 1) % Number.MAX_SAFE_INTEGER).toString(36)}`
    const client = address(req)
    log.info({ reqId, req: { method: req.method, url, ip: client.ip, headers: req.headers } }, 'incoming request')
    // The node is closing (no drain ran): refused at once, as Fastify refuses
    // its requests then, not after a token check and a slot.
    if (closing()) {
      refuse(socket, 'DRAINING', 'server closing', undefined, reqId, log)
      return true
    }
    handshake(h, wss, site, req, socket, head, client, reqId, q === -1 ? '' : url.slice(q + 1)).catch((err: Error) => {
      // A backend fault while checking revocations or taking the slot: the
      // API's answer to the same fault (src/http/errors.ts).
      if (err instanceof HeraldError) {
        if (err.statusCode >= 500) log.warn({ reqId, code: err.code, message: err.message }, 'request failed')
        refuse(socket, err.code, err.message, undefined, reqId, log)
      } else {
        log.error({ reqId, err }, 'unhandled error')
        refuse(socket, 'INTERNAL', undefined, undefined, reqId, log)
      }
    })
    return true
  }
}

async function handshake (h: Herald, wss: WebSocketServer, site: SessionSite, req: IncomingMessage, socket: Socket, head: Buffer, client: ClientAddress, reqId: string, query: string): Promise<void> {
  const endpoint = site.endpoint
  let refusalLog: Herald['log'] | undefined
  const a = await admit(h, {
    endpoint,
    transport: 'ws',
    origin: req.headers.origin,
    // Only /ws/admin accepts its own origin (the dashboard this node serves).
    ownOrigin: endpoint === 'admin' ? requestOrigin(client.protocol(), client.host()) : null,
    token: tokenFrom(req.headers, query === '' ? undefined : parseQuery(query)),
    ip: client.ip,
    // Made only if a refusal is logged: most handshakes log nothing.
    get log () { return (refusalLog ??= h.log.child({ reqId })) },
    gone: () => clientGone(socket),
  })
  if (!a.ok) {
    // Gone while it waited for a place (admission.ts): nobody to answer.
    if (clientGone(socket)) { socket.destroy(); return }
    return refuse(socket, a.code, a.message, a.retryAfter, reqId, h.log)
  }
  // The slot is held exactly as long as the TCP socket: released whether the
  // handshake completes or not, and whoever closes the connection.
  releaseOnClose(socket, h, a.record)
  if (socket.destroyed) return
  // ws validates the handshake (key, version) and answers 400 itself.
  socket.removeListener('error', onEarlySocketError)
  // The 101 waits in the socket for the welcome (or a close), to leave with
  // it in one write: a write to a socket is a system call, and the 101's
  // alone was 7% of a connect storm's profile. The client can send nothing
  // before it has the 101, so nothing waits on it meanwhile. WsConnection
  // uncorks (ws-connection.ts), the sweep above at the latest; ws's own
  // refusals end the socket, which flushes it.
  corkBriefly(socket)
  wss.handleUpgrade(req, socket, head, (ws) => {
    // Past the 101: a failure here ends the socket, it cannot be answered.
    try {
      openSession(site, ws, { identity: a.identity, connectionId: a.record.connectionId, ip: client.ip, reqId })
    } catch (err) {
      h.log.error({ reqId, err }, 'could not open the session')
      ws.terminate()
    }
  })
}

function refuse (socket: Socket, code: ErrorCode, message: string | undefined, retryAfter: number | undefined, reqId: string, log: Herald['log']): void {
  const status = new HeraldError(code).statusCode
  writeResponse(socket, status, errorBody(code, message), retryAfter !== undefined ? { 'Retry-After': String(retryAfter) } : undefined)
  log.info({ reqId, res: { statusCode: status } }, 'request completed')
}
