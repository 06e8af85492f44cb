// The durable half of revocations: a key per revoked session, a key per user
// holding the latest revocation time, and a log (sorted set by time) that
// nodes re-read, each kept for the revocation TTL. What a node remembers on
// top of it, and writes back after a loss of Redis's data, is
// src/auth/revocation.ts. Memory (revocations-memory.ts) and Redis
// (revocations-redis.ts) implementations run test/backend/revocations.test.ts.

export type Revocation =
  | { kind: 'session', sessionId: string, at: number }
  | { kind: 'user', userId: string, at: number }

export type Revoked = 'session' | 'user'

/** what a revocation is checked against: a token's subject, session and issue time (ms), when it has one */
export interface Who { userId: string, sessionId: string | null, issuedAt: number | null }

export interface RevocationStore {
  /**
   * Stores one revocation for `ttlMs` (less than the full TTL when written
   * back after a loss). A user's later revocation wins; an earlier one never
   * lowers it, nor shortens its life.
   */
  revoke (r: Revocation, ttlMs: number): Promise<void>
  /** why the store says this identity is revoked, or null */
  check (who: Who): Promise<Revoked | null>
  /** log entries recorded at or after `since` (ms), oldest first */
  since (since: number): Promise<Revocation[]>
  /** the newest `limit` log entries recorded after `after` (ms), oldest first */
  newest (after: number, limit: number): Promise<Revocation[]>
  /** Drops log entries recorded before `before` (ms): past their TTL. */
  prune (before: number): Promise<void>
}

/** A token issued in the revocation's own second counts as revoked: iat has second precision. */
export const revokedBy = (issuedAt: number | null, revokedAt: number): boolean =>
  issuedAt === null || Math.floor(issuedAt / 1000) <= Math.floor(revokedAt / 1000)

// The log's members, shared by both implementations.
export const encodeEntry = (r: Revocation): string => r.kind === 'session' ? `s:${r.at}:${r.sessionId}` : `u:${r.at}:${r.userId}`
export function decodeEntry (m: string): Revocation | null {
  const a = m.indexOf(':')
  const b = m.indexOf(':', a + 1)
  if (a !== 1 || b < 0) return null
  const at = Number(m.slice(a + 1, b))
  const id = m.slice(b + 1)
  return m[0] === 's' ? { kind: 'session', sessionId: id, at } : m[0] === 'u' ? { kind: 'user', userId: id, at } : null
}

/** Key names. Each command touches one key: no hash tags needed on a Redis Cluster. */
export function revocationKeys (prefix: string): { session: (id: string) => string, user: (id: string) => string, log: string } {
  return {
    session: (id) => `${prefix}rev:s:${id}`,
    user: (id) => `${prefix}rev:u:${id}`,
    log: `${prefix}rev:log`,
  }
}
