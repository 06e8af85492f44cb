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
// By session id and by user, so a connection that opens is checked in O(1),
// however many revocations the last 30 s saw. Insertion order is age order.
interface Heard { sessions: Map<string, number>, users: Map<string, { at: number, heardAt: number }> }
const recent = new WeakMap<Herald, Heard>()

function prune<V> (m: Map<string, V>, heardAt: (v: V) => number, now: number): void {
  for (const [k, v] of m) {
    if (now - heardAt(v) <= RECENT_MS && m.size < RECENT_MAX) break
    m.delete(k)
  }
}

function remember (h: Herald, r: Revocation, now: number): void {
  let heard = recent.get(h)
  if (heard === undefined) { heard = { sessions: new Map(), users: new Map() }; recent.set(h, heard) }
  prune(heard.sessions, (t) => t, now)
  prune(heard.users, (u) => u.heardAt, now)
  // The periodic log sync hears each revocation again: the first hearing stands.
  if (r.kind === 'session') {
    if (!heard.sessions.has(r.sessionId)) heard.sessions.set(r.sessionId, now)
    return
  }
  const prev = heard.users.get(r.userId)
  if (prev !== undefined && prev.at >= r.at) return
  heard.users.delete(r.userId) // re-inserted last: it is the newest now
  heard.users.set(r.userId, { at: r.at, heardAt: now })
}

/** Closes, with session_revoked and 4004, every local connection the revocation covers. */
export function applyRevocation (h: Herald, r: Revocation): number {
  remember(h, r, Date.now())
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
  const sid = c.identity.sessionId
  const session = sid !== null ? heard.sessions.get(sid) : undefined
  if (session !== undefined && now - session <= RECENT_MS) {
    revoke(c, 'session revoked')
    return true
  }
  const user = heard.users.get(c.userId)
  if (user !== undefined && now - user.heardAt <= RECENT_MS && revokedBy(c.identity.issuedAt, user.at)) {
    revoke(c, 'user revoked')
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
