// The storage of the cluster-wide connection limits. Every open connection
// holds a slot, the member `<serverId>|<connectionId>` of a sorted set per
// user and per IP scored by open time; each node keeps a record per
// connection (who, from where, since when) and an eviction list. The
// admission logic over these primitives is src/limits/connection-limiter.ts;
// memory (slots-memory.ts) and Redis (slots-redis.ts) implementations run
// test/backend/slots.test.ts.

export interface Holder { serverId: string, connectionId: string }

export interface ConnectionRecord extends Holder {
  userId: string
  sessionId: string | null
  ip: string
  endpoint: 'events' | 'admin'
  openedAt: number
}

/**
 * Why another node closes a connection it holds: `replaced` by a newer one of
 * the same user (evict-oldest), or `over-limit` once slots written back after
 * Redis lost its data came to more than a limit.
 */
export type EvictionCause = 'replaced' | 'over-limit'
export interface Eviction extends Holder { cause: EvictionCause }

export type SlotScope = 'ip' | 'user'

export type Admitted = { ok: true, evicted: Holder | null } | { ok: false }

export interface SlotStore {
  /**
   * Takes a slot in the set of `scope` `key` if it holds fewer than `limit`;
   * when it is full and `evictOldest`, takes the oldest holder's slot instead
   * and names it. One atomic step per set, so concurrent admissions on
   * several nodes never pass the limit. A holder already in the set is
   * admitted and nothing changes (a command sent again after a dropped
   * connection must not refuse the slot its first run took).
   */
  admit (scope: SlotScope, key: string, holder: Holder, limit: number, evictOldest: boolean): Promise<Admitted>
  remove (scope: SlotScope, key: string, holder: Holder): Promise<void>
  /**
   * Puts the holder in with its original open time, then, in the same atomic
   * step, trims the set back to `limit` from the end the policy gives up: the
   * oldest when `keepNewest`, the newest otherwise. Resolves with the holders
   * trimmed.
   */
  addUnder (scope: SlotScope, key: string, holder: Holder, openedAt: number, limit: number, keepNewest: boolean): Promise<Holder[]>
  /** the holders of a set, oldest first */
  holders (scope: SlotScope, key: string): Promise<Holder[]>
  /** Writes connections' records (any number, one write per node). */
  putRecords (recs: readonly ConnectionRecord[]): Promise<void>
  dropRecord (holder: Holder): Promise<void>
  /** a node's records: all of them, or those of the given connections that exist */
  records (serverId: string, connectionIds?: string[]): Promise<ConnectionRecord[]>
  /** Forgets a node: its records and its eviction list. */
  dropNode (serverId: string): Promise<void>
  /** Puts an eviction on its holder's node's list, kept a minute. */
  noteEviction (e: Eviction): Promise<void>
  /** A node's eviction list; taking it clears it. */
  takeEvictions (serverId: string): Promise<Eviction[]>
}

// Shared by both implementations, so a memory store holds what Redis would.

export const memberOf = (h: Holder): string => `${h.serverId}|${h.connectionId}`
export function holderOf (member: string): Holder {
  const i = member.indexOf('|')
  return { serverId: member.slice(0, i), connectionId: member.slice(i + 1) }
}

/** An eviction list entry: the connection id, and the cause unless it is `replaced`. */
export const encodeEviction = (e: Eviction): string => e.cause === 'replaced' ? e.connectionId : `${e.connectionId}|${e.cause}`
export function decodeEviction (serverId: string, entry: string): Eviction {
  const i = entry.indexOf('|')
  return i < 0 ? { serverId, connectionId: entry, cause: 'replaced' } : { serverId, connectionId: entry.slice(0, i), cause: 'over-limit' }
}

/** Records as the hash fields of each node's record set: connection id to JSON. */
export function recordsByNode (recs: readonly ConnectionRecord[]): Map<string, Record<string, string>> {
  const out = new Map<string, Record<string, string>>()
  for (const r of recs) {
    let fields = out.get(r.serverId)
    if (fields === undefined) { fields = {}; out.set(r.serverId, fields) }
    fields[r.connectionId] = JSON.stringify(r)
  }
  return out
}

export const parseRecord = (raw: string | null | undefined): ConnectionRecord | null => {
  if (raw === null || raw === undefined) return null
  try { return JSON.parse(raw) as ConnectionRecord } catch { return null }
}

/**
 * Key names. Each script or MULTI touches one key, so none needs a hash tag
 * on a Redis Cluster: a user's and an IP's sets are admitted by two scripts,
 * and a node's records and eviction list are dropped by two commands.
 */
export function slotKeys (prefix: string): { set: (scope: SlotScope, key: string) => string, records: (serverId: string) => string, evictions: (serverId: string) => string } {
  return {
    set: (scope, key) => `${prefix}conn:${scope === 'ip' ? 'ip' : 'u'}:${key}`,
    records: (serverId) => `${prefix}node:conns:${serverId}`,
    evictions: (serverId) => `${prefix}evict:${serverId}`,
  }
}
