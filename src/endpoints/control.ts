import { revokedBy, type Revocation } from '../auth/revocation.js'
import type { Herald } from '../context.js'
import type { Envelope } from '../events/codec.js'
import type { ConnectionRecord, Eviction, EvictionCause, Holder } from '../limits/connection-limiter.js'
import { CloseCodes } from '../protocol/close-codes.js'
import { DISCONNECTED_REASON } from '../admin/actions.js'
import type { Connection } from './connection.js'
import { applyMembership, MEMBERSHIP_CONTROL } from '../groups/membership.js'

// Node-to-node instructions carried as control messages (kind c).

const EVICTED_REASON = 'connection limit: replaced by a newer connection'
const OVER_LIMIT_REASON = 'connection limit: over it once the cluster backend had lost its data'
const reasons: Record<EvictionCause, string> = { replaced: EVICTED_REASON, 'over-limit': OVER_LIMIT_REASON }

const covers = (r: Revocation, c: Connection): boolean => r.kind === 'session'
  ? c.identity.sessionId === r.sessionId
  : c.userId === r.userId && revokedBy(c.identity.issuedAt, r.at)
/** The close reason of a revoked connection, by what was revoked (src/gateway-events/ reads it back). */
export const REVOKED_REASONS = { session: 'session revoked', user: 'user revoked' } as const
const reasonOf = (r: Revocation): string => REVOKED_REASONS[r.kind]

/** Closes, with session_revoked and 4004, every local connection the revocation covers. */
export function applyRevocation (h: Herald, r: unknown): number {
  // Remembered for REVOCATION_TTL (bounded): connections that open later are
  // checked against it, and it is written back if Redis loses its data.
  if (!h.revocations.heard(r)) return 0
  let n = 0
  for (const c of h.connections.values()) {
    if (c.closed) continue
    if (covers(r, c)) { revoke(c, reasonOf(r)); n++ }
  }
  return n
}

/**
 * True (and the connection closed 4004) when a revocation this node knows
 * covers a connection that just opened: its upgrade checked the store just
 * before the revocation was written, and it registers here just after the
 * message went by (it would otherwise live until the next sync of the log).
 */
export function revokedWhileOpening (h: Herald, c: Connection): boolean {
  const why = h.revocations.known(c.identity)
  if (why === null) return false
  revoke(c, REVOKED_REASONS[why])
  return true
}

export function revoke (c: Connection, reason: string): void {
  c.reply('session_revoked', { reason })
  c.close(CloseCodes.SESSION_REVOKED, reason)
}

/**
 * Connections evicted before their session opened on this node: the guard
 * admitted them, the eviction overtook the handshake. Kept briefly.
 */
const earlyEvictions = new Map<string, { at: number, cause: EvictionCause }>()

/** The close reason if the connection was evicted before it opened (once), or null. */
export function evictedEarly (connectionId: string): string | null {
  const e = earlyEvictions.get(connectionId)
  if (e === undefined) return null
  earlyEvictions.delete(connectionId)
  return reasons[e.cause]
}

function evict (h: Herald, target: Holder & { cause?: EvictionCause }): void {
  if (target.serverId !== h.config.serverId) return
  const cause = target.cause === 'over-limit' ? 'over-limit' : 'replaced'
  const c = h.connections.get(target.connectionId)
  if (c) {
    c.log.info({ cause }, cause === 'replaced' ? 'evicted by a newer connection of the same user' : 'evicted: over a connection limit after the backend lost its data')
    c.close(CloseCodes.FORBIDDEN, reasons[cause])
    return
  }
  const now = Date.now()
  for (const [id, e] of earlyEvictions) if (now - e.at > 30_000) earlyEvictions.delete(id)
  earlyEvictions.set(target.connectionId, { at: now, cause })
}

/** An operator's disconnect: one connection by id, or all of a user's. */
function disconnect (h: Herald, target: { connectionId?: string, userId?: string }): void {
  for (const c of h.connections.values()) {
    if (c.id === target.connectionId || (target.userId !== undefined && c.userId === target.userId)) {
      c.log.info('disconnected by an administrator')
      c.close(CloseCodes.FORBIDDEN, DISCONNECTED_REASON)
    }
  }
}

export function handleControl (h: Herald, env: Envelope): void {
  let arg: unknown
  try { arg = JSON.parse(env.json) } catch { return }
  switch (env.type) {
    case 'revoke': applyRevocation(h, arg); break
    case 'evict': evict(h, arg as Eviction); break
    case 'disconnect': disconnect(h, arg as { connectionId?: string, userId?: string }); break
    case MEMBERSHIP_CONTROL: applyMembership(h, arg); break
  }
}

/**
 * Re-reads the revocation log and this node's eviction list every
 * REVOCATION_SYNC_INTERVAL, so a node that missed a pub/sub message (or was
 * cut off from Redis) still disconnects. First (and until it succeeds), reads
 * the whole live log into memory: what was revoked before this node started
 * is then known here, and written back if Redis loses it.
 */
export function startRevocationSync (h: Herald, onError: (err: Error) => void): () => void {
  // Overlap each read with the previous one: clocks of nodes differ a little.
  const overlap = Math.max(2000, h.config.revocationSyncIntervalMs)
  let cursor = Date.now() - overlap
  let loaded = false
  let running = false
  const load = async (): Promise<void> => {
    if (loaded || !h.backend.broker.healthy) return
    await h.revocations.load()
    loaded = true
  }
  const loading = load().catch(onError)
  const timer = setInterval(() => {
    if (running || !h.backend.broker.healthy) return
    running = true
    const startedAt = Date.now()
    const revocations = h.revocations.since(cursor - overlap).then((list) => {
      for (const r of list) applyRevocation(h, r)
      cursor = startedAt
    }, onError)
    // Evictions by other nodes whose message this node missed.
    const evictions = h.connectionLimiter.takeEvictions(h.config.serverId).then((list) => {
      for (const e of list) evict(h, e)
    }, onError)
    Promise.all([loading.then(load).catch(onError), revocations, evictions]).finally(() => { running = false })
  }, h.config.revocationSyncIntervalMs)
  timer.unref()
  return () => clearInterval(timer)
}

/**
 * This node's registry entry was gone: Redis lost its data (FLUSHALL, a
 * restart without persistence), or the node was taken for dead. Writes back
 * what the node knows: its connections' slots and records, under the limits
 * (connections admitted meanwhile may have filled them; those pushed out are
 * closed 4003 on whatever node holds them), and every live revocation it has
 * heard of, so a revoked token stays refused.
 */
export async function restoreAfterLoss (h: Herald): Promise<void> {
  const recs: ConnectionRecord[] = [...h.connections.values()].map((c) => ({
    serverId: h.config.serverId, connectionId: c.id, userId: c.userId, sessionId: c.identity.sessionId, ip: c.ip, endpoint: c.kind, openedAt: c.openedAt,
  }))
  h.log.warn({ connections: recs.length }, 'registry entry was gone; restoring this node\'s connections and the revocations it knows')
  const [trimmed, revocations] = await Promise.all([h.connectionLimiter.reassert(recs), h.revocations.restore()])
  for (const e of trimmed) {
    if (e.serverId === h.config.serverId) evict(h, e)
    else h.publisher.publishControl('evict', e, null).catch(() => {}) // the eviction list has it too
  }
  h.log.warn({ connections: recs.length, overLimit: trimmed.length, revocations }, 'restored this node\'s connections and the revocations it knows')
}
