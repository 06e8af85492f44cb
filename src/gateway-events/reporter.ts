import diagnostics from 'node:diagnostics_channel'
import fp from 'fastify-plugin'
import type { Herald } from '../context.js'
import { REVOKED_REASONS } from '../endpoints/control.js'
import type { ErrorCode } from '../errors.js'
import type { EventInput } from '../events/model.js'
import {
  channels, type ConnectionClose, type ConnectionEvicted, type ConnectionOpen, type FrameRefused, type GatewayEventOutcome, type HandshakeRefused, type RateLimitHit,
} from '../observability/channels.js'
import { CloseCodes } from '../protocol/close-codes.js'
import { Bounds, Bursts, type Suppression } from './bounds.js'
import type { GatewayEventType } from './types.js'

// The gateway's own events: what only it sees (a session opened, expired,
// revoked or refused at the per-user limit; a client over a rate limit,
// sending frames that are not the protocol, or refused again and again at
// the handshake) published on the bus like any other event, through the one
// publish path (history, webhooks, the dashboard's tail). Fed by the
// diagnostics channels of this node only, as metrics and logs are; the core
// does not know this module exists. docs/protocol.md, "Gateway events".
//
// Audience: an event about a real user carries its userId (that user's
// stream, and admins); one about a guest (ALLOW_ANONYMOUS, a made-up userId
// that reads only the broadcast) or about an IP alone carries none: admins
// only. Never a token, nor anything from one but its user and session ids.

/** Open bounding windows (and refusal counts) a node keeps at most: beyond, the oldest goes. */
const MAX_SUBJECTS = 10_000

/** Refusals that are a condition of the node, not something the client did: they count toward no burst. */
const NODE_CONDITIONS: ReadonlySet<ErrorCode> = new Set(['DRAINING', 'BACKEND_UNAVAILABLE', 'NODE_FULL', 'INTERNAL'])

/** `error` replies that mean the frame was not the protocol (rather than a request refused for what it asked). */
const INVALID_FRAMES: ReadonlySet<ErrorCode> = new Set(['BAD_JSON', 'BAD_MESSAGE', 'UNKNOWN_TYPE', 'INVALID_PAYLOAD', 'INVALID_PATTERN', 'DATA_TOO_DEEP', 'PUBLISH_TOO_LARGE', 'SCHEMA_MISMATCH'])

/** Closes for frames that are not the protocol (binary, bad UTF-8, too big, broken framing). */
const INVALID_FRAME_CLOSES: ReadonlySet<number> = new Set([CloseCodes.PROTOCOL_ERROR, CloseCodes.UNSUPPORTED_DATA, CloseCodes.INVALID_PAYLOAD, CloseCodes.POLICY_VIOLATION, CloseCodes.MESSAGE_TOO_BIG])

/** A token refused for these was not issued by anyone the node trusts: someone is trying. */
const FORGED = new Set(['signature', 'algorithm'])

/** An event the reporter would publish: its bounding key, and the event. */
interface Candidate { type: GatewayEventType, key: string, event: EventInput & { data: Record<string, unknown> } }

/** Who an event is about: a real user (its stream and admins), or nobody (admins only; a guest or an IP). */
interface About { userId?: string, ip: string }

export interface GatewayEvents { close (): void }

export function startGatewayEvents (h: Herald): GatewayEvents {
  const cfg = h.config.gatewayEvents
  const serverId = h.config.serverId
  const on = (t: GatewayEventType): boolean => cfg.types.has(t)
  const outcome = (type: string, o: GatewayEventOutcome['outcome'], count = 1): void => {
    if (channels.gatewayEvents.hasSubscribers) channels.gatewayEvents.publish({ serverId, type, outcome: o, count })
  }

  // What this turn let out, published together (one Redis round trip) once the turn ends.
  let pending: EventInput[] = []
  let scheduled = false
  let closed = false
  const flush = (): void => {
    scheduled = false
    const batch = pending
    pending = []
    if (closed || batch.length === 0) return
    if (!h.probe.healthy) { for (const e of batch) outcome(e.type, 'backend'); return }
    h.publisher.publishEvents(batch).then((results) => {
      results.forEach((r, i) => outcome(batch[i]!.type, r instanceof Error ? 'backend' : 'published'))
    }, () => { for (const e of batch) outcome(e.type, 'backend') })
  }
  const bounds = new Bounds<EventInput & { data: Record<string, unknown> }>(
    { windowMs: cfg.windowMs, ratePerSecond: cfg.ratePerSecond, maxKeys: MAX_SUBJECTS },
    (event, folded) => {
      pending.push(folded > 0 ? { ...event, data: { ...event.data, folded } } : event)
      if (!scheduled) { scheduled = true; setImmediate(flush) }
    },
    (type: string, reason: Suppression) => outcome(type, reason),
  )
  const bursts = new Bursts(cfg.suspiciousRefusals, cfg.suspiciousWindowMs, MAX_SUBJECTS)

  const report = (c: Candidate | null): void => {
    if (c === null || !on(c.type)) return
    // While the backend is out the publish buffer is the API's: these wait for nothing.
    if (!h.probe.healthy) return outcome(c.type, 'backend')
    bounds.offer(c.type, c.key, c.event)
  }

  /** An event of `type` about `who`, with the trigger's fields; the IP as GATEWAY_EVENTS_IP allows. */
  const make = (type: GatewayEventType, who: About, data: Record<string, unknown>, keyPart = ''): Candidate => {
    const adminOnly = who.userId === undefined
    const withIp = cfg.ip === 'all' || (cfg.ip === 'admins' && adminOnly)
    const subject = adminOnly ? `ip:${who.ip}` : `user:${who.userId!}`
    return {
      type,
      key: `${type}|${keyPart}|${subject}`,
      event: { type, ...(adminOnly ? {} : { userId: who.userId }), data: { source: 'gateway', node: serverId, ...data, ...(withIp ? { ip: who.ip } : {}) } },
    }
  }
  const aboutConn = (x: { guest: boolean, userId: string, ip: string }): About => x.guest ? { ip: x.ip } : { userId: x.userId, ip: x.ip }
  const connFields = (x: { connectionId: string, endpoint: string, transport: string, guest: boolean }): Record<string, unknown> =>
    ({ connectionId: x.connectionId, endpoint: x.endpoint, transport: x.transport, ...(x.guest ? { guest: true } : {}) })

  const opened = (x: ConnectionOpen): Candidate | null => x.endpoint !== 'events' || x.guest
    ? null
    : make('session.created', aboutConn(x), { ...connFields(x), sessionId: x.sessionId })

  const closedConn = (x: ConnectionClose): Candidate | null => {
    if (x.byClient) return null
    const fields = { ...connFields(x), code: x.code, ...(x.reason !== null ? { closeReason: x.reason } : {}) }
    if (x.code === CloseCodes.AUTH_EXPIRED && !x.guest) return make('session.expired', aboutConn(x), { ...fields, sessionId: x.sessionId, durationMs: x.durationMs })
    if (x.code === CloseCodes.SESSION_REVOKED && !x.guest) {
      return make('session.revoked', aboutConn(x), { ...fields, sessionId: x.sessionId, revoked: x.reason === REVOKED_REASONS.user ? 'user' : 'session' })
    }
    if (x.code === CloseCodes.RATE_LIMITED) return make('security.suspicious.activity', aboutConn(x), { ...fields, reason: 'abuse_close' }, 'abuse_close')
    if (INVALID_FRAME_CLOSES.has(x.code)) return make('security.validation.failed', aboutConn(x), { ...fields, reason: 'frame' })
    return null
  }

  const refusedFrame = (x: FrameRefused): Candidate | null => INVALID_FRAMES.has(x.code)
    ? make('security.validation.failed', aboutConn(x), { ...connFields(x), reason: 'frame', error: x.code })
    : null

  const limited = (x: RateLimitHit): Candidate => {
    const who: About = x.userId !== undefined ? { userId: x.userId, ip: x.ip } : { ip: x.ip }
    const fields = { connectionId: x.connectionId, endpoint: x.endpoint, transport: x.transport, limit: x.limit }
    if (x.scope === 'connection-user') return make('session.concurrent_limit', who, { ...fields, policy: 'refuse' })
    return make('security.rate_limit.exceeded', who, { ...fields, scope: x.scope, ...(x.userId === undefined ? { guest: true } : {}) })
  }

  const evicted = (x: ConnectionEvicted): Candidate =>
    make('session.concurrent_limit', { userId: x.userId, ip: x.ip }, {
      connectionId: x.connectionId, endpoint: x.endpoint, transport: x.transport, limit: x.limit, policy: 'evict-oldest', evictedConnectionId: x.evicted.connectionId, evictedNode: x.evicted.serverId,
    })

  /** A refused handshake: a refused token, a forged one, and a burst of refusals from one IP. About the IP: the token proved no one. */
  const refusedHandshake = (x: HandshakeRefused): void => {
    if (NODE_CONDITIONS.has(x.code)) return
    const who: About = { ip: x.ip }
    if (x.token !== undefined) {
      report(make('security.validation.failed', who, { endpoint: x.endpoint, reason: 'token', error: x.code, detail: x.token }))
      if (FORGED.has(x.token)) report(make('security.suspicious.activity', who, { endpoint: x.endpoint, reason: 'forged_token', detail: x.token }, 'forged_token'))
    }
    const count = bursts.hit(x.ip)
    if (count !== null) {
      report(make('security.suspicious.activity', who, { endpoint: x.endpoint, reason: 'refusal_burst', count, windowMs: cfg.suspiciousWindowMs, threshold: cfg.suspiciousRefusals, error: x.code }, 'refusal_burst'))
    }
  }

  // A subscriber that throws would reach the process as an uncaught exception: each is guarded.
  const guarded = (f: (m: never) => void) => (m: unknown): void => {
    if ((m as { serverId?: unknown }).serverId !== serverId) return
    try { f(m as never) } catch (err) { h.log.warn({ err: { message: (err as Error).message } }, 'gateway event not reported') }
  }
  const subs: Array<[diagnostics.Channel, (m: unknown) => void]> = cfg.types.size === 0
    ? []
    : [
        [channels.connectionOpen, guarded((x: ConnectionOpen) => report(opened(x)))],
        [channels.connectionClose, guarded((x: ConnectionClose) => report(closedConn(x)))],
        [channels.frameRefused, guarded((x: FrameRefused) => report(refusedFrame(x)))],
        [channels.rateLimit, guarded((x: RateLimitHit) => report(limited(x)))],
        [channels.connectionEvicted, guarded((x: ConnectionEvicted) => report(evicted(x)))],
        [channels.handshakeRefused, guarded(refusedHandshake)],
      ]
  for (const [ch, fn] of subs) ch.subscribe(fn)
  return {
    close () {
      closed = true
      for (const [ch, fn] of subs) ch.unsubscribe(fn)
      bounds.close()
    },
  }
}

/** Subscribes the node's gateway events at registration; unsubscribes when the node closes. */
export default fp(async function gatewayEvents (app) {
  const g = startGatewayEvents(app.herald)
  app.addHook('onClose', async () => { g.close() })
}, { name: 'herald-gateway-events' })
