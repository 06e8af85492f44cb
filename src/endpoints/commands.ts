import type { Herald } from '../context.js'
import { HeraldError } from '../errors.js'
import { armExpiry } from './expiry.js'
import { parsePattern } from '../protocol/patterns.js'
import type { Connection } from './connection.js'
import type { ClientMessage } from '../protocol/envelope.js'
import type { HandlerTable } from './session.js'

const MAX_PATTERNS_PER_REQUEST = 1000

/** eventTypes of a subscribe/unsubscribe payload, or an error already sent. */
function eventTypesOf (conn: Connection, msg: ClientMessage): string[] | null {
  const list = msg.payload?.eventTypes
  if (!Array.isArray(list) || list.length === 0 || list.length > MAX_PATTERNS_PER_REQUEST) {
    conn.fail('INVALID_PAYLOAD', `payload.eventTypes must be a non-empty array of at most ${MAX_PATTERNS_PER_REQUEST} patterns`, msg.id)
    return null
  }
  for (const p of list) {
    if (typeof p !== 'string') {
      conn.fail('INVALID_PAYLOAD', 'payload.eventTypes must contain strings only', msg.id)
      return null
    }
  }
  return list as string[]
}

const current = (conn: Connection): string[] => [...conn.patterns.keys()]

/** Requests shared by /ws/events and /ws/admin. */
export const commonCommands: HandlerTable = {
  subscribe (h: Herald, conn: Connection, msg: ClientMessage) {
    const types = eventTypesOf(conn, msg)
    if (types === null) return
    const parsed: Array<[string, readonly string[]]> = []
    for (const t of types) {
      const segs = parsePattern(t)
      if (segs === null) {
        return conn.fail('INVALID_PATTERN', `invalid pattern ${JSON.stringify(t.slice(0, 140))}: dot-separated lowercase segments [a-z0-9_-] or *, at most 12 segments and 128 characters`, msg.id)
      }
      parsed.push([t, segs])
    }
    // All or nothing: a request that would pass the limit changes nothing.
    const added = new Set(parsed.map(([t]) => t).filter((t) => !conn.patterns.has(t)))
    if (conn.patterns.size + added.size > h.config.limits.subscriptions) {
      return conn.fail('TOO_MANY_SUBSCRIPTIONS', `at most ${h.config.limits.subscriptions} patterns per connection (${conn.patterns.size} held)`, msg.id)
    }
    for (const [t, segs] of parsed) h.hub.addPattern(conn, t, segs)
    conn.reply('subscribed', { eventTypes: current(conn) }, msg.id)
  },

  unsubscribe (h: Herald, conn: Connection, msg: ClientMessage) {
    const types = eventTypesOf(conn, msg)
    if (types === null) return
    for (const t of types) h.hub.removePattern(conn, t)
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
    const token = msg.payload?.token
    if (typeof token !== 'string' || token.length === 0) return conn.fail('INVALID_PAYLOAD', 'payload.token must be a string', msg.id)
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
    conn.identity = identity
    armExpiry(h, conn)
    conn.reply('refreshed', { expiresAt: new Date(identity.expiresAt).toISOString() }, msg.id)
  },
}
