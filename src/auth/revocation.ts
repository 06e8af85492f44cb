import { revokedBy, type Revocation, type RevocationStore, type Revoked, type Who } from '../backend/revocations.js'

// Revocations as a node applies them. A revoked session id, or a user revoked
// at time T (every token of theirs with iat at or before T's second), is
// stored durably with a TTL and appended to a log (src/backend/revocations.ts).
// New connections check it; live connections hear of it over pub/sub at
// once, and every node re-reads the log periodically, so a node that missed
// the message (or Redis) catches up.
//
// Every node also keeps the live revocations it knows in memory, for as long
// as Redis keeps them: a connection is checked against them first, and when
// Redis turns out to have lost its data (FLUSHALL, a restart without
// persistence) the nodes write them back.

export { revokedBy, type Revocation, type Revoked } from '../backend/revocations.js'

/**
 * Live revocations one node remembers, newest kept. About 100 bytes each
 * (more with long ids): 10 MiB at the bound. Past it the oldest are
 * forgotten first; Redis still holds them, but they survive a loss of Redis's
 * data only if Redis persists.
 */
export const MAX_KNOWN_REVOCATIONS = 100_000
// Commands in flight at once while writing known revocations back.
const RESTORE_BATCH = 500

export interface Revocations {
  revoke (r: Revocation): Promise<void>
  /** why this identity is revoked (known here, or in the store), or null */
  check (id: Who): Promise<Revoked | null>
  /** revocations recorded at or after `since` (ms) */
  since (since: number): Promise<Revocation[]>
  /** Remembers a revocation heard from another node (or the log); false if it is not one. */
  heard (r: unknown): r is Revocation
  /** why this identity is revoked, from what this node knows, without asking the store */
  known (id: Who): Revoked | null
  /** Reads the log's live entries into memory (at boot: what was revoked before this node started). */
  load (): Promise<number>
  /** Writes every live revocation this node knows back to the store; resolves with how many. */
  restore (): Promise<number>
}

/** Control messages arrive as parsed JSON: only well-formed revocations are remembered or applied. */
function isRevocation (r: unknown): r is Revocation {
  if (typeof r !== 'object' || r === null) return false
  const x = r as Record<string, unknown>
  if (typeof x.at !== 'number' || !Number.isFinite(x.at)) return false
  return (x.kind === 'session' && typeof x.sessionId === 'string') || (x.kind === 'user' && typeof x.userId === 'string')
}

/**
 * The revocations a node knows, each until `at + ttl` (when Redis's copy
 * expires too). By session id and by user in one map, so a check is O(1);
 * insertion order is the order heard, close to age order, so pruning looks
 * at the front only.
 */
class Known {
  private readonly entries = new Map<string, Revocation>()

  constructor (private readonly ttlMs: number, private readonly max: number) {}

  add (r: Revocation, now: number): void {
    if (r.at + this.ttlMs <= now) return
    const key = r.kind === 'session' ? `s:${r.sessionId}` : `u:${r.userId}`
    const prev = this.entries.get(key)
    // Heard again from the log, or an older revocation of the same user: the newest stands.
    if (prev !== undefined && prev.at >= r.at) return
    this.entries.delete(key) // re-inserted last: it is the newest now
    this.entries.set(key, r)
    for (const [k, v] of this.entries) {
      if (this.entries.size <= this.max && v.at + this.ttlMs > now) break
      this.entries.delete(k)
    }
  }

  covering (id: Who, now: number): Revoked | null {
    const s = id.sessionId !== null ? this.entries.get(`s:${id.sessionId}`) : undefined
    if (s !== undefined && s.at + this.ttlMs > now) return 'session'
    const u = this.entries.get(`u:${id.userId}`)
    if (u !== undefined && u.at + this.ttlMs > now && revokedBy(id.issuedAt, u.at)) return 'user'
    return null
  }

  live (now: number): Revocation[] {
    return [...this.entries.values()].filter((r) => r.at + this.ttlMs > now)
  }
}

/** The revocations of `store`, kept `ttlMs`, and what this node knows of them. */
export function createRevocations (store: RevocationStore, ttlMs: number): Revocations {
  const memory = new Known(ttlMs, MAX_KNOWN_REVOCATIONS)
  const known = (id: Who): Revoked | null => memory.covering(id, Date.now())
  const prune = async (): Promise<void> => { await store.prune(Date.now() - ttlMs) }
  return {
    async revoke (r) {
      await store.revoke(r, ttlMs)
      await prune()
      // Once stored: a revocation the API answered 503 for is not half-applied here.
      memory.add(r, Date.now())
    },

    async check (id) {
      return known(id) ?? await store.check(id)
    },

    async since (since) {
      return await store.since(since)
    },

    heard (r: unknown): r is Revocation {
      if (!isRevocation(r)) return false
      memory.add(r, Date.now())
      return true
    },

    known,

    async load () {
      const now = Date.now()
      const list = await store.newest(now - ttlMs, MAX_KNOWN_REVOCATIONS)
      for (const r of list) memory.add(r, now)
      return list.length
    },

    async restore () {
      const live = memory.live(Date.now())
      for (let i = 0; i < live.length; i += RESTORE_BATCH) {
        await Promise.all(live.slice(i, i + RESTORE_BATCH).map(async (r) => {
          const left = r.at + ttlMs - Date.now()
          if (left > 0) await store.revoke(r, left)
        }))
      }
      await prune()
      return live.length
    },
  }
}
