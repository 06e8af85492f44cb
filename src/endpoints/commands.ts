import type { Herald } from '../context.js'
import { HeraldError } from '../errors.js'
import { checkSince, replay } from '../events/resume.js'
import { channels as diag } from '../observability/channels.js'
import { armExpiry } from './expiry.js'
import type { Connection } from './connection.js'
import type { ClientMessage } from '../protocol/envelope.js'
import { ClientFrames, type ClientFrameType, type ClientPayload } from '../protocol/schema.js'
import { payloadCheck, type Refusal } from '../protocol/validation.js'
import type { HandlerTable } from './session.js'
import { publish } from '../publish/handler.js'
import { reclaimGroups } from '../groups/membership.js'

const checks = Object.fromEntries(Object.entries(ClientFrames).map(([type, f]) => [type, payloadCheck(f.payload)])) as Record<ClientFrameType, (p: unknown) => Refusal | null>

/** The request's payload once its schema (schema.ts) holds; otherwise the refusal is sent and the result is null. */
export function payloadOf<T extends ClientFrameType> (conn: Connection, msg: ClientMessage, type: T): ClientPayload<T> | null {
  const payload = msg.payload ?? {}
  const refused = checks[type](payload)
  if (refused === null) return payload as ClientPayload<T>
  conn.fail(refused.code, refused.message, msg.id)
  return null
}

const current = (conn: Connection): string[] => [...conn.patterns.keys()]

/** Requests shared by /ws/events and /ws/admin. */
export const commonCommands: HandlerTable = {
  /**
   * With `since`, a resume (src/events/resume.ts): the patterns are added,
   * live deliveries held, what was missed replayed, then the reply, then the
   * held deliveries the replay did not cover. One subscribe at a time per
   * connection, so two resumes never interleave.
   */
  subscribe (h: Herald, conn: Connection, msg: ClientMessage) {
    const p = payloadOf(conn, msg, 'subscribe')
    if (p === null) return
    return conn.serially(async () => {
      if (conn.closed) return
      const eventTypes = p.eventTypes ?? []
      const since = p.since
      // All or nothing: a request refused for any reason changes nothing.
      const added = new Set(eventTypes.filter((t) => !conn.patterns.has(t)))
      if (conn.patterns.size + added.size > h.config.limits.subscriptions) {
        return conn.fail('TOO_MANY_SUBSCRIPTIONS', `at most ${h.config.limits.subscriptions} patterns per connection (${conn.patterns.size} held)`, msg.id)
      }
      const streams = h.backend.streams
      if (since !== undefined) {
        if (streams === null) return conn.fail('HISTORY_OFF', 'this cluster keeps no history (HISTORY_SIZE or HISTORY_TTL is 0): there is nothing to resume from', msg.id)
        try { checkSince(conn, since) } catch (err) {
          if (err instanceof HeraldError) return conn.fail(err.code, err.message, msg.id)
          throw err
        }
      }
      // The schema held every pattern to the rule: its segments are its dot-separated parts.
      for (const t of added) h.hub.addPattern(conn, t, t.split('.'))
      if (since === undefined || streams === null) return conn.reply('subscribed', { eventTypes: current(conn) }, msg.id)
      conn.startReplay()
      let r: Awaited<ReturnType<typeof replay>>
      try {
        r = await replay(streams, h.channels, conn, since)
      } catch (err) {
        conn.endReplay(new Map(), () => {})
        throw err
      }
      conn.endReplay(r.tops, () => conn.reply('subscribed', { eventTypes: current(conn), recovered: r.recovered, positions: r.positions, unrecovered: r.unrecovered }, msg.id))
      if (diag.resumed.hasSubscribers) diag.resumed.publish({ serverId: h.config.serverId, endpoint: conn.kind, connectionId: conn.id, recovered: r.recovered, unrecovered: r.unrecovered })
    })
  },

  unsubscribe (h: Herald, conn: Connection, msg: ClientMessage) {
    const p = payloadOf(conn, msg, 'unsubscribe')
    if (p === null) return
    for (const t of p.eventTypes) h.hub.removePattern(conn, t)
    conn.reply('unsubscribed', { eventTypes: current(conn) }, msg.id)
  },

  get_subscriptions (_h: Herald, conn: Connection, msg: ClientMessage) {
    conn.reply('subscriptions', { eventTypes: current(conn) }, msg.id)
  },

  ping (_h: Herald, conn: Connection, msg: ClientMessage) {
    conn.reply('pong', { timestamp: new Date().toISOString() }, msg.id)
  },

  /** In-band token renewal, so a connection outlives its token: same subject, and for admins still the admin role. */
  async refresh (h: Herald, conn: Connection, msg: ClientMessage) {
    const p = payloadOf(conn, msg, 'refresh')
    if (p === null) return
    // A guest's identity came from no token; a token makes it a user on a new connection only.
    if (conn.guest) return conn.fail('REFRESH_REJECTED', 'a guest connection has no token to renew: connect again with the token', msg.id)
    const { token } = p
    let identity
    try {
      identity = await h.verifier.verify(token)
    } catch (err) {
      const why = err instanceof HeraldError ? err.message : 'the token could not be verified'
      return conn.fail('REFRESH_REJECTED', why, msg.id)
    }
    if (conn.closed) return
    if (identity.userId !== conn.userId) return conn.fail('REFRESH_REJECTED', 'the new token is for another subject', msg.id)
    if (conn.kind === 'admin' && !identity.roles.includes('admin')) return conn.fail('REFRESH_REJECTED', 'the new token lacks the admin role', msg.id)
    if (await h.revocations.check(identity) !== null) return conn.fail('REFRESH_REJECTED', 'the new token is revoked', msg.id)
    // Closed while Redis answered: nothing to arm or join for it.
    if (conn.closed) return
    const previous = conn.identity.groups ?? []
    conn.identity = identity
    armExpiry(h, conn)
    await reclaimGroups(h, conn, previous)
    conn.reply('refreshed', { expiresAt: new Date(identity.expiresAt).toISOString() }, msg.id)
  },
}

/** /ws/events and Socket.IO: the common requests, and a client's publish (src/publish/). */
export const eventsCommands: HandlerTable = {
  ...commonCommands,
  publish,
}
