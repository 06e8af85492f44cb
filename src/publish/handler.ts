import type { Herald } from '../context.js'
import { payloadOf } from '../endpoints/commands.js'
import type { Connection } from '../endpoints/connection.js'
import { HeraldError } from '../errors.js'
import { receipt } from '../events/publisher.js'
import type { ClientMessage } from '../protocol/envelope.js'
import { isReservedType } from '../protocol/groups.js'
import { matches } from '../protocol/patterns.js'
import { PENDING_MS } from '../backend/publish-keys.js'
import type { EventInput } from '../events/model.js'
import { holdsProtoKey } from '../events/depth.js'

// A client's `publish` (docs/protocol.md, Client publish): the rules a
// client's event passes before the one publish path (src/events/publisher.ts)
// takes it as it takes a service's: history, webhooks, admins. In order:
// the frame's shape; reserved types; the token's `publish` claim; identity
// (nothing in the payload may name someone else); group membership; the
// type's schema; then the idempotency key. The frame's size was judged
// before it was parsed (src/publish/limits.ts), its rate by the node's limiter.

/** Where identity may hide in what a client sends: each, when present, must be the token's. */
const IDENTITY_KEYS = ['userId', 'agentId'] as const

/** The token's claim allows the type. */
function allowed (conn: Connection, type: string): boolean {
  const claim = conn.identity.publish
  if (claim === undefined || claim.length === 0) return false
  const segs = type.split('.')
  return claim.some((p) => matches(p.split('.'), segs))
}

/** Null when nothing in the payload names another identity; otherwise what does. */
function forged (conn: Connection, p: { userId?: unknown, agentId?: unknown, data?: Record<string, unknown> }): string | null {
  for (const k of IDENTITY_KEYS) {
    if (p[k] !== undefined && p[k] !== conn.userId) return `payload.${k} is not the token's subject`
  }
  const data = p.data
  if (data !== undefined) {
    if (holdsProtoKey(data)) return 'payload.data holds a "__proto__" key, which a receiver merging it would take for a prototype (and an identity in it for the token\'s)'
    for (const k of IDENTITY_KEYS) {
      if (Object.hasOwn(data, k) && data[k] !== conn.userId) return `payload.data.${k} is not the token's subject`
    }
    if (Object.hasOwn(data, 'sessionId') && data.sessionId !== conn.identity.sessionId) return 'payload.data.sessionId is not the token\'s session'
  }
  return null
}

export async function publish (h: Herald, conn: Connection, msg: ClientMessage): Promise<void> {
  const p = payloadOf(conn, msg, 'publish')
  if (p === null) return
  if (isReservedType(p.type)) return conn.fail('RESERVED_TYPE', `clients may not publish ${p.type.split('.')[0]!}.* events, whatever the token's publish claim says`, msg.id)
  if (conn.guest || !allowed(conn, p.type)) {
    const why = conn.identity.publish === undefined ? 'the token has no publish claim' : `no pattern of the token's publish claim matches ${p.type}`
    return conn.fail('PUBLISH_FORBIDDEN', why, msg.id)
  }
  const lie = forged(conn, p)
  if (lie !== null) return conn.fail('IDENTITY_MISMATCH', lie, msg.id)
  if (p.group !== undefined && !conn.isMember(p.group)) return conn.fail('NOT_A_MEMBER', `not a member of group ${p.group}`, msg.id)
  const check = h.dataChecks.get(p.type)
  if (check !== undefined) {
    const wrong = check(p.data ?? {})
    if (wrong !== null) return conn.fail('SCHEMA_MISMATCH', `${p.type}: ${wrong}`, msg.id)
  }

  const input: EventInput = p.group !== undefined
    ? { type: p.type, group: p.group, ...(p.data !== undefined ? { data: p.data } : {}) }
    : { type: p.type, userId: conn.userId, ...(p.data !== undefined ? { data: p.data } : {}) }
  const go = async (): Promise<Record<string, unknown>> => {
    const event = await h.publisher.publishEvent(input, {
      source: { userId: conn.userId, sessionId: conn.identity.sessionId, connectionId: conn.id },
      maxDataBytes: h.config.limits.publishBytes,
    })
    return { ...receipt(event) }
  }

  if (p.key === undefined) return conn.reply('published', await go(), msg.id)
  const keys = h.backend.publishKeys
  const claim = await keys.claim(conn.userId, p.key, PENDING_MS).catch((err: Error) => { throw new HeraldError('BACKEND_UNAVAILABLE', err.message) })
  // Thrown, not failed: the client did as told (retry), so no strike toward 4029.
  if (claim.state === 'pending') throw new HeraldError('PUBLISH_PENDING', `a publish with key ${p.key} is still in progress; retry`)
  if (claim.state === 'done') return conn.reply('published', { ...JSON.parse(claim.receipt) as object, duplicate: true }, msg.id)
  let done: Record<string, unknown>
  try {
    done = await go()
  } catch (err) {
    // Not published: a retry publishes.
    await keys.release(conn.userId, p.key).catch(() => {})
    throw err
  }
  // Published: the receipt answers retries. Stored before the reply, so a
  // client that got `published` retries into it; if storing fails the
  // client still learns it was published.
  await keys.settle(conn.userId, p.key, JSON.stringify(done), h.config.publish.keyTtlMs).catch((err: Error) => conn.log.warn({ err: { message: err.message } }, 'could not store a publish receipt'))
  conn.reply('published', done, msg.id)
}
