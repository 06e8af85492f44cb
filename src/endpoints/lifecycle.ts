import type { Herald } from '../context.js'
import { Errors, HeraldError } from '../errors.js'
import { channels as diag } from '../observability/channels.js'
import { CloseCodes } from '../protocol/close-codes.js'
import type { ClientMessage } from '../protocol/envelope.js'
import type { Connection } from './connection.js'
import { evictedEarly, revokedWhileOpening } from './control.js'
import { readableStreams } from '../events/audience.js'
import { parseStream } from '../protocol/streams.js'
import { positionsOf } from '../events/resume.js'
import { armExpiry } from './expiry.js'
import { joinGroups } from '../groups/membership.js'
import { heardFrom } from './liveness.js'

// What every transport does with a connection: open (subscribe its channels,
// then welcome), receive (rate limit, then the command), close (release).

export type Handler = (h: Herald, conn: Connection, msg: ClientMessage) => void | Promise<void>
export type HandlerTable = Readonly<Record<string, Handler>>

const ATTACH_TIMEOUT_MS = 5000
const ATTACH_MAX_MS = 30_000
// Messages sent while over the rate limit before the connection is closed 4029.
const MAX_LIMITED_MESSAGES = 10
// Messages queued behind the rate limiter; a client this far ahead is flooding.
const MAX_INFLIGHT = 64
// Error replies tolerated per minute; past that the client is abusive (4029).
const MAX_STRIKES_PER_MINUTE = 20

// What this module keeps per connection, declared and touched here only.
const kInflight = Symbol('herald.inflight')
const kInbox = Symbol('herald.inbox')
const kLimited = Symbol('herald.limited')
const kStrikes = Symbol('herald.strikes')
const kStrikesSince = Symbol('herald.strikesSince')
interface Inbox {
  /** frames received and not yet handled; serialises handling through the limiter */
  [kInflight]: number
  [kInbox]: Promise<void>
  /** frames refused by the rate limiter since the last accepted one */
  [kLimited]: number
  /** error replies since kStrikesSince; repeated abuse closes the connection */
  [kStrikes]: number
  [kStrikesSince]: number
}
type Inboxed = Connection & Inbox

// Every connection's inbox starts from this one settled promise, and an idle
// connection goes back to it rather than holding its promise chain.
const SETTLED: Promise<void> = Promise.resolve()

/** Sets up a connection's inbox; called by its constructor. */
export function inboxed (conn: Connection): void {
  const c = conn as Inboxed
  c[kInflight] = 0
  c[kInbox] = SETTLED
  c[kLimited] = 0
  c[kStrikes] = 0
  // A window that starts at its first strike: 0 is long past.
  c[kStrikesSince] = 0
}

/** An error reply was sent: past MAX_STRIKES_PER_MINUTE the client is abusive and is closed 4029. */
export function strike (conn: Connection): void {
  const c = conn as Inboxed
  const now = Date.now()
  if (now - c[kStrikesSince] > 60_000) { c[kStrikes] = 0; c[kStrikesSince] = now }
  if (++c[kStrikes] > MAX_STRIKES_PER_MINUTE) {
    c.log.warn({ strikes: c[kStrikes] }, 'closing abusive connection')
    c.close(CloseCodes.RATE_LIMITED, 'too many invalid messages')
  }
}

export function opened (h: Herald, conn: Connection): void {
  // Logged through the node's logger with the connection's fields, so an idle
  // connection does not need its own child logger yet.
  if (diag.connectionOpen.hasSubscribers) {
    diag.connectionOpen.publish({ serverId: h.config.serverId, endpoint: conn.kind, transport: conn.transport, connectionId: conn.id, userId: conn.userId, guest: conn.guest, sessionId: conn.identity.sessionId, ip: conn.ip, log: h.log })
  }
  // From here its place among the handshakes in flight is given back when
  // its welcome's reads are over, not when its transport closes (handshake-gate.ts).
  h.handshakes.opened(conn.id)
  // Closed before its welcome's work begins: its handshake is over.
  const evicted = evictedEarly(conn.id)
  if (evicted !== null) {
    h.handshakes.end(conn.id)
    return conn.close(CloseCodes.FORBIDDEN, evicted)
  }
  if (revokedWhileOpening(h, conn)) return h.handshakes.end(conn.id)

  // In the registry (where deliveries, control messages and counts find it)
  // and on its channels together: `closed` undoes both together.
  h.connections.add(conn)
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    const startedAt = Date.now()
    // A node busy with a reconnect storm takes longer than this to get
    // through its turns while Redis answers every batch: closing the
    // connection then (1011) only sends the client back into the storm. It
    // waits on while the node is ready (readiness: Redis answers, src/cluster/probe.ts), up to ATTACH_MAX_MS.
    const check = (): void => {
      if (h.probe.healthy && Date.now() - startedAt < ATTACH_MAX_MS) timer = setTimeout(check, ATTACH_TIMEOUT_MS)
      else reject(new Error('subscribe timed out'))
    }
    timer = setTimeout(check, ATTACH_TIMEOUT_MS)
  })
  // Its user's channel first: a membership change announced while its groups
  // are read comes on it (src/groups/membership.ts). A stream's position is
  // read once the node listens on its channel: a message published after the
  // read reaches the connection live. The user's and the broadcast channel
  // are listened on once attached, so their positions are read with the
  // groups (in the same turn's batches, src/backend/turn-batch.ts); the
  // groups' streams once their channels are joined.
  const streams = h.backend.streams
  const attached = h.hub.attach(conn).then(async () => {
    if (conn.closed) return undefined
    const early = streams === null ? null : positionsOf(streams, h.channels, conn, readableStreams(conn).filter((name) => parseStream(name)?.kind !== 'group'))
    // Awaited below, or dropped with the joining's failure.
    early?.catch(() => {})
    await joinGroups(h, conn)
    if (streams === null || conn.closed) return undefined
    const first = await early!
    const rest = readableStreams(conn).filter((name) => !Object.hasOwn(first, name))
    return rest.length === 0 ? first : { ...first, ...await positionsOf(streams, h.channels, conn, rest) }
  })
  Promise.race([attached, timeout]).then((positions) => {
    if (conn.closed) return
    const { identity } = conn
    conn.welcome({
      connectionId: conn.id,
      serverId: h.config.serverId,
      userId: conn.userId,
      sessionId: identity.sessionId,
      expiresAt: Number.isFinite(identity.expiresAt) ? new Date(identity.expiresAt).toISOString() : null,
      heartbeatInterval: h.config.heartbeatIntervalMs,
      ...(positions !== undefined ? { positions } : {}),
    }, positions)
    if (Number.isFinite(identity.expiresAt)) armExpiry(h, conn)
  }, (err: unknown) => {
    conn.log.warn({ err: { message: (err as Error).message } }, 'could not subscribe connection channels')
    conn.close(CloseCodes.INTERNAL_ERROR, 'backend unavailable')
  }).finally(() => {
    clearTimeout(timer)
    // Its handshake is over, welcomed or closed meanwhile by either side
    // (its transport's close does not give the place back once it is
    // opened: its reads were still running): the next one waiting takes its
    // place (handshake-gate.ts).
    h.handshakes.end(conn.id)
  })
}

/**
 * Every client message passes the cluster-wide rate limiter, in arrival order,
 * before `parse` turns it into a command.
 */
export function received (h: Herald, connection: Connection, handlers: HandlerTable, parse: () => { msg: ClientMessage } | { error: Parameters<Connection['fail']>, id?: string }): void {
  const conn = connection as Inboxed
  heardFrom(conn)
  if (conn.closed) return
  if (conn[kInflight] >= MAX_INFLIGHT) return conn.close(CloseCodes.RATE_LIMITED, 'message flood')
  conn[kInflight]++
  conn[kInbox] = conn[kInbox].then(async () => {
    const verdict = await h.messageLimiter.consume(conn.userId, conn.ip)
    conn[kInflight]--
    if (conn.closed) return
    const parsed = parse()
    if (!verdict.ok) {
      if (diag.rateLimit.hasSubscribers) {
        diag.rateLimit.publish({ serverId: h.config.serverId, scope: verdict.scope === 'ip' ? 'message-ip' : 'message-user', limit: h.config.limits.messagesPerMinute, ip: conn.ip, ...(conn.guest ? {} : { userId: conn.userId }), connectionId: conn.id, endpoint: conn.kind, transport: conn.transport })
      }
      if (++conn[kLimited] > MAX_LIMITED_MESSAGES) return conn.close(CloseCodes.RATE_LIMITED, 'rate limit exceeded')
      const retryAfter = Math.ceil(verdict.retryAfterMs / 1000)
      const id = 'msg' in parsed ? parsed.msg.id : parsed.error[2]
      return conn.fail('RATE_LIMITED', `at most ${h.config.limits.messagesPerMinute} messages per minute per ${verdict.scope === 'ip' ? 'IP address' : 'user'}; retry in ${retryAfter} s`, id)
    }
    conn[kLimited] = 0
    if (!('msg' in parsed)) return conn.fail(...parsed.error)
    const { msg } = parsed
    const handler = Object.hasOwn(handlers, msg.type) ? handlers[msg.type] : undefined
    if (handler === undefined) return conn.fail('UNKNOWN_TYPE', `${Errors.UNKNOWN_TYPE.message}: ${msg.type.slice(0, 64)}`, msg.id)
    if (diag.messageIn.hasSubscribers) diag.messageIn.publish({ serverId: h.config.serverId, endpoint: conn.kind, type: msg.type })
    try {
      const r = handler(h, conn, msg)
      if (r instanceof Promise) r.catch((err: unknown) => internalError(conn, err, msg.id))
    } catch (err) {
      internalError(conn, err, msg.id)
    }
  }).catch((err: unknown) => {
    conn[kInflight] = Math.max(0, conn[kInflight] - 1)
    internalError(conn, err)
  }).finally(() => {
    if (conn[kInflight] === 0) conn[kInbox] = SETTLED
  })
}

/** `byClient`: the peer closed with `code`, a number of its own choosing (the node's codes and 1006 are not). */
export function closed (h: Herald, conn: Connection, code: number, byClient = false): void {
  conn.closed = true
  conn.forgetFloors()
  if (h.connections.delete(conn)) h.hub.detach(conn)
  h.expiry.forget(conn)
  const durationMs = Date.now() - conn.openedAt
  if (diag.connectionClose.hasSubscribers) {
    diag.connectionClose.publish({
      serverId: h.config.serverId, endpoint: conn.kind, transport: conn.transport, connectionId: conn.id, userId: conn.userId, guest: conn.guest, sessionId: conn.identity.sessionId, ip: conn.ip,
      code, byClient, durationMs, reason: byClient ? null : conn.closeReason, log: conn.log,
    })
  }
}

function internalError (conn: Connection, err: unknown, id?: string): void {
  // A refusal with a code of its own (the backend is down, say) is the
  // client's answer, not an internal error, and no strike against it.
  if (err instanceof HeraldError) return conn.emit('error', { code: err.code, message: err.message }, id)
  conn.log.error({ err }, 'handler failed')
  conn.fail('INTERNAL', Errors.INTERNAL.message, id)
}
