import { revokedBy, type Revocation } from '../auth/revocation.js'
import type { Herald } from '../context.js'
import type { Envelope } from '../events/codec.js'
import type { Holder } from '../limits/connection-limiter.js'
import { CloseCodes } from '../protocol/close-codes.js'
import { DISCONNECTED_REASON } from '../admin/actions.js'
import type { Connection } from './connection.js'

// Node-to-node instructions carried as control messages (kind c).

export const EVICTED_REASON = 'connection limit: replaced by a newer connection'

const covers = (r: Revocation, c: Connection): boolean => r.kind === 'session'
  ? c.identity.sessionId === r.sessionId
  : c.userId === r.userId && revokedBy(c.identity.issuedAt, r.at)
const reasonOf = (r: Revocation): string => r.kind === 'session' ? 'session revoked' : 'user revoked'

/**
 * Revocations this node heard of lately. A connection whose upgrade checked
 * the store just before a revocation was written, and that registers here
 * just after its message went by, would otherwise live until the next sync
 * of the log (REVOCATION_SYNC_INTERVAL); `opened` checks it against these.
 */
const RECENT_MS = 30_000
const RECENT_MAX = 10_000
// Keyed by the revocation itself: the periodic log sync hears each one again.
const recent = new WeakMap<Herald, Map<string, { r: Revocation, heardAt: number }>>()

/** Closes, with session_revoked and 4004, every local connection the revocation covers. */
export function applyRevocation (h: Herald, r: Revocation): number {
  const now = Date.now()
  let heard = recent.get(h)
  if (heard === undefined) { heard = new Map(); recent.set(h, heard) }
  // Oldest first (insertion order): drop what is too old, or too many.
  for (const [k, e] of heard) {
    if (now - e.heardAt <= RECENT_MS && heard.size < RECENT_MAX) break
    heard.delete(k)
  }
  const key = r.kind === 'session' ? `s:${r.at}:${r.sessionId}` : `u:${r.at}:${r.userId}`
  if (!heard.has(key)) heard.set(key, { r, heardAt: now })
  let n = 0
  for (const c of h.connections.values()) {
    if (c.closed) continue
    if (covers(r, c)) { revoke(c, reasonOf(r)); n++ }
  }
  return n
}

/** True (and the connection closed 4004) when a revocation heard lately covers a connection that just opened. */
export function revokedWhileOpening (h: Herald, c: Connection): boolean {
  const heard = recent.get(h)
  if (heard === undefined) return false
  const now = Date.now()
  for (const { r, heardAt } of heard.values()) {
    if (now - heardAt > RECENT_MS || !covers(r, c)) continue
    revoke(c, reasonOf(r))
    return true
  }
  return false
}

export function revoke (c: Connection, reason: string): void {
  c.reply('session_revoked', { reason })
  c.close(CloseCodes.SESSION_REVOKED, reason)
}

/**
 * Connections evicted before their session opened on this node: the guard
 * admitted them, the eviction overtook the handshake. Kept briefly.
 */
const earlyEvictions = new Map<string, number>()

export function wasEvictedEarly (connectionId: string): boolean {
  const at = earlyEvictions.get(connectionId)
  if (at === undefined) return false
  earlyEvictions.delete(connectionId)
  return true
}

function evict (h: Herald, target: Holder): void {
  if (target.serverId !== h.config.serverId) return
  const c = h.connections.get(target.connectionId)
  if (c) {
    c.log.info('evicted by a newer connection of the same user')
    c.close(CloseCodes.FORBIDDEN, EVICTED_REASON)
    return
  }
  const now = Date.now()
  for (const [id, at] of earlyEvictions) if (now - at > 30_000) earlyEvictions.delete(id)
  earlyEvictions.set(target.connectionId, now)
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
    case 'revoke': applyRevocation(h, arg as Revocation); break
    case 'evict': evict(h, arg as Holder); break
    case 'disconnect': disconnect(h, arg as { connectionId?: string, userId?: string }); break
  }
}

/**
 * Re-reads the revocation log and this node's eviction list every
 * REVOCATION_SYNC_INTERVAL, so a node that missed a pub/sub message (or was
 * cut off from Redis) still disconnects.
 */
export function startRevocationSync (h: Herald, onError: (err: Error) => void): () => void {
  // Overlap each read with the previous one: clocks of nodes differ a little.
  const overlap = Math.max(2000, h.config.revocationSyncIntervalMs)
  let cursor = Date.now() - overlap
  let running = false
  const timer = setInterval(() => {
    if (running || !h.broker.healthy) return
    running = true
    const startedAt = Date.now()
    const revocations = h.revocations.since(cursor - overlap).then((list) => {
      for (const r of list) applyRevocation(h, r)
      cursor = startedAt
    }, onError)
    // Evictions by other nodes (evict-oldest) whose message this node missed.
    const evictions = h.connectionLimiter.takeEvictions(h.config.serverId).then((ids) => {
      for (const connectionId of ids) evict(h, { serverId: h.config.serverId, connectionId })
    }, onError)
    Promise.all([revocations, evictions]).finally(() => { running = false })
  }, h.config.revocationSyncIntervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
