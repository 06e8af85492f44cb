import type { Broker } from '../cluster/broker.js'
import type { MemoryBus } from '../cluster/memory-broker.js'
import { MemoryBroker } from '../cluster/memory-broker.js'
import { RedisBroker, type RedisClient } from '../cluster/redis-broker.js'

// Cluster-wide connection limits (brief §6). Every open connection is a member
// `<serverId>|<connectionId>` of a sorted set per user and per IP, scored by
// open time. Admission is one atomic script per set, so concurrent connects on
// several nodes can never pass the limit, and the member names the node that
// holds it, so a dead node's share can be reclaimed. Each node also keeps a
// hash of its connections' records (who, from where, since when): the index
// for admin listings and for reclaiming a dead node's slots.

export interface Holder { serverId: string, connectionId: string }

export interface ConnectionRecord extends Holder {
  userId: string
  sessionId: string | null
  ip: string
  endpoint: 'events' | 'admin'
  openedAt: number
}

export type Admission =
  | { ok: true, evicted: Holder | null }
  | { ok: false, scope: 'ip' | 'user', limit: number }

/**
 * Why another node closes a connection it holds: `replaced` by a newer one of
 * the same user (evict-oldest), or `over-limit` once slots written back after
 * Redis lost its data came to more than a limit.
 */
export type EvictionCause = 'replaced' | 'over-limit'
export interface Eviction extends Holder { cause: EvictionCause }

export interface LimitPolicy {
  perIp: number
  perUser: number
  evictOldest: boolean
}

export interface ConnectionLimiter {
  acquire (rec: ConnectionRecord): Promise<Admission>
  release (rec: ConnectionRecord): Promise<void>
  /** current counts, for stats and tests */
  count (scope: 'ip' | 'user', key: string): Promise<number>
  /** members of a user's set, oldest first */
  holders (userId: string): Promise<Holder[]>
  /** the records of a user's open connections on every node, oldest first */
  connectionsOf (userId: string): Promise<ConnectionRecord[]>
  /**
   * Writes this node's records back after Redis lost its data (or the node
   * was wrongly reclaimed), under the limits: connections admitted meanwhile
   * may have filled them. Each set keeps the members its policy would have
   * kept had the data never been lost (the oldest under `refuse` and for IPs,
   * the newest under `evict-oldest`); the ones pushed out, on any node, are
   * returned and put on their node's eviction list, to be closed.
   */
  reassert (recs: ConnectionRecord[]): Promise<Eviction[]>
  /**
   * Connections of this node that other nodes evicted and that are still to
   * be closed here; taking them clears the list. The eviction itself travels
   * over pub/sub, which loses messages while a subscriber reconnects: this
   * list is what a node that missed one reads.
   */
  takeEvictions (serverId: string): Promise<Eviction[]>
  /**
   * Frees every slot a dead node held (only those opened before
   * `openedBefore`, when given); returns how many connections it had.
   */
  reclaim (serverId: string, openedBefore?: number): Promise<number>
}

export const memberOf = (h: Holder): string => `${h.serverId}|${h.connectionId}`
export function holderOf (member: string): Holder {
  const i = member.indexOf('|')
  return { serverId: member.slice(0, i), connectionId: member.slice(i + 1) }
}

/** Result codes shared by both implementations: 1 admitted, 2 admitted by evicting `oldest`, 0 full. */
type Step = [number, string | null]

const ADMIT = `
local n = redis.call('ZCARD', KEYS[1])
if n < tonumber(ARGV[3]) then
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return {1}
end
if ARGV[4] == '1' then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0)[1]
  redis.call('ZREM', KEYS[1], oldest)
  redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
  return {2, oldest}
end
return {0}
`

// Adds a member with its original score, then trims the set back to the limit
// from the end the policy gives up: the newest (ARGV[4] '0', refuse) or the
// oldest (ARGV[4] '1', evict-oldest). Returns the members trimmed.
const REASSERT = `
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over <= 0 then return {} end
local out
if ARGV[4] == '1' then out = redis.call('ZRANGE', KEYS[1], 0, over - 1) else out = redis.call('ZRANGE', KEYS[1], -over, -1) end
redis.call('ZREM', KEYS[1], unpack(out))
return out
`

/** An eviction list entry: the connection id, and the cause unless it is `replaced`. */
const encodeEviction = (e: Eviction): string => e.cause === 'replaced' ? e.connectionId : `${e.connectionId}|${e.cause}`
function decodeEviction (serverId: string, entry: string): Eviction {
  const i = entry.indexOf('|')
  return i < 0 ? { serverId, connectionId: entry, cause: 'replaced' } : { serverId, connectionId: entry.slice(0, i), cause: 'over-limit' }
}

abstract class BaseLimiter implements ConnectionLimiter {
  constructor (protected readonly prefix: string, private readonly policy: LimitPolicy) {}

  protected userKey (userId: string): string { return `${this.prefix}conn:u:${userId}` }
  protected ipKey (ip: string): string { return `${this.prefix}conn:ip:${ip}` }
  protected nodeKey (serverId: string): string { return `${this.prefix}node:conns:${serverId}` }
  protected abstract admit (key: string, member: string, limit: number, evict: boolean): Promise<Step>
  protected abstract remove (key: string, member: string): Promise<void>
  /** adds a member with its score and trims the set to `limit` (REASSERT); resolves with the members trimmed */
  protected abstract addUnder (key: string, member: string, score: number, limit: number, keepNewest: boolean): Promise<string[]>
  protected abstract putRecord (rec: ConnectionRecord): Promise<void>
  protected abstract dropRecord (rec: Holder): Promise<void>
  protected abstract records (serverId: string, connectionIds?: string[]): Promise<ConnectionRecord[]>
  protected abstract dropNode (serverId: string): Promise<void>
  protected abstract noteEviction (e: Eviction): Promise<void>
  abstract takeEvictions (serverId: string): Promise<Eviction[]>
  protected evictKey (serverId: string): string { return `${this.prefix}evict:${serverId}` }
  abstract count (scope: 'ip' | 'user', key: string): Promise<number>
  abstract holders (userId: string): Promise<Holder[]>

  async acquire (rec: ConnectionRecord): Promise<Admission> {
    const { userId, ip } = rec
    const member = memberOf(rec)
    // IP first: evicting by IP would let one user close another's connection.
    const [ipOk] = await this.admit(this.ipKey(ip), member, this.policy.perIp, false)
    if (ipOk === 0) return { ok: false, scope: 'ip', limit: this.policy.perIp }
    let step: Step
    try {
      step = await this.admit(this.userKey(userId), member, this.policy.perUser, this.policy.evictOldest)
    } catch (err) {
      await this.remove(this.ipKey(ip), member).catch(() => {})
      throw err
    }
    if (step[0] === 0) {
      await this.remove(this.ipKey(ip), member)
      return { ok: false, scope: 'user', limit: this.policy.perUser }
    }
    await this.putRecord(rec)
    const evicted = step[0] === 2 && step[1] !== null ? holderOf(step[1]) : null
    // Durable beside the pub/sub message: the holder's node reads it if it missed that.
    if (evicted !== null) await this.noteEviction({ ...evicted, cause: 'replaced' }).catch(() => {})
    return { ok: true, evicted }
  }

  async release (rec: ConnectionRecord): Promise<void> {
    const member = memberOf(rec)
    await Promise.all([this.remove(this.userKey(rec.userId), member), this.remove(this.ipKey(rec.ip), member), this.dropRecord(rec)])
  }

  async connectionsOf (userId: string): Promise<ConnectionRecord[]> {
    const byNode = new Map<string, string[]>()
    for (const h of await this.holders(userId)) {
      const ids = byNode.get(h.serverId) ?? []
      ids.push(h.connectionId)
      byNode.set(h.serverId, ids)
    }
    const found = await Promise.all([...byNode].map(async ([serverId, ids]) => await this.records(serverId, ids)))
    return found.flat().sort((a, b) => a.openedAt - b.openedAt)
  }

  async reassert (recs: ConnectionRecord[]): Promise<Eviction[]> {
    const trimmed = new Set<string>()
    await Promise.all(recs.map(async (r) => {
      const member = memberOf(r)
      const [byUser, byIp] = await Promise.all([
        this.addUnder(this.userKey(r.userId), member, r.openedAt, this.policy.perUser, this.policy.evictOldest),
        this.addUnder(this.ipKey(r.ip), member, r.openedAt, this.policy.perIp, false),
        this.putRecord(r),
      ])
      for (const m of [...byUser, ...byIp]) trimmed.add(m)
    }))
    const out: Eviction[] = [...trimmed].map((m) => ({ ...holderOf(m), cause: 'over-limit' }))
    await Promise.all(out.map(async (e) => await this.noteEviction(e)))
    return out
  }

  async reclaim (serverId: string, openedBefore = Infinity): Promise<number> {
    const recs = (await this.records(serverId)).filter((r) => r.openedAt < openedBefore)
    await Promise.all(recs.map(async (r) => {
      const member = memberOf(r)
      await Promise.all([this.remove(this.userKey(r.userId), member), this.remove(this.ipKey(r.ip), member)])
    }))
    if (openedBefore === Infinity) await this.dropNode(serverId)
    else await Promise.all(recs.map(async (r) => await this.dropRecord(r)))
    return recs.length
  }
}

const parseRecord = (raw: string | null): ConnectionRecord | null => {
  if (raw === null) return null
  try { return JSON.parse(raw) as ConnectionRecord } catch { return null }
}

export class MemoryConnectionLimiter extends BaseLimiter {
  constructor (private readonly bus: MemoryBus, prefix: string, policy: LimitPolicy) { super(prefix, policy) }

  protected async admit (key: string, member: string, limit: number, evict: boolean): Promise<Step> {
    let set = this.bus.zsets.get(key)
    if (!set) { set = new Map(); this.bus.zsets.set(key, set) }
    if (set.size < limit) { set.set(member, Date.now()); return [1, null] }
    if (!evict) { if (set.size === 0) this.bus.zsets.delete(key); return [0, null] }
    let oldest: string | null = null
    let best = Infinity
    for (const [m, score] of set) if (score < best) { best = score; oldest = m }
    if (oldest !== null) set.delete(oldest)
    set.set(member, Date.now())
    return [2, oldest]
  }

  protected async remove (key: string, member: string): Promise<void> {
    const set = this.bus.zsets.get(key)
    if (!set) return
    set.delete(member)
    if (set.size === 0) this.bus.zsets.delete(key)
  }

  protected async addUnder (key: string, member: string, score: number, limit: number, keepNewest: boolean): Promise<string[]> {
    let set = this.bus.zsets.get(key)
    if (!set) { set = new Map(); this.bus.zsets.set(key, set) }
    set.set(member, score)
    const over = set.size - limit
    if (over <= 0) return []
    // Ordered as a sorted set is: by score, then by member.
    const byAge = [...set].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([m]) => m)
    const out = keepNewest ? byAge.slice(0, over) : byAge.slice(-over)
    for (const m of out) set.delete(m)
    return out
  }

  protected async putRecord (rec: ConnectionRecord): Promise<void> {
    const k = this.nodeKey(rec.serverId)
    let h = this.bus.hashes.get(k)
    if (!h) { h = new Map(); this.bus.hashes.set(k, h) }
    h.set(rec.connectionId, JSON.stringify(rec))
  }

  protected async dropRecord (rec: Holder): Promise<void> {
    const k = this.nodeKey(rec.serverId)
    const h = this.bus.hashes.get(k)
    h?.delete(rec.connectionId)
    if (h?.size === 0) this.bus.hashes.delete(k)
  }

  protected async records (serverId: string, ids?: string[]): Promise<ConnectionRecord[]> {
    const h = this.bus.hashes.get(this.nodeKey(serverId))
    if (!h) return []
    const raw = ids === undefined ? [...h.values()] : ids.map((id) => h.get(id) ?? null)
    return raw.map(parseRecord).filter((r): r is ConnectionRecord => r !== null)
  }

  protected async dropNode (serverId: string): Promise<void> {
    this.bus.hashes.delete(this.nodeKey(serverId))
  }

  protected async noteEviction (e: Eviction): Promise<void> {
    const k = this.evictKey(e.serverId)
    let set = this.bus.hashes.get(k)
    if (!set) { set = new Map(); this.bus.hashes.set(k, set) }
    set.set(encodeEviction(e), '')
  }

  async takeEvictions (serverId: string): Promise<Eviction[]> {
    const k = this.evictKey(serverId)
    const entries = [...(this.bus.hashes.get(k)?.keys() ?? [])]
    this.bus.hashes.delete(k)
    return entries.map((entry) => decodeEviction(serverId, entry))
  }

  async count (scope: 'ip' | 'user', key: string): Promise<number> {
    return this.bus.zsets.get(scope === 'ip' ? this.ipKey(key) : this.userKey(key))?.size ?? 0
  }

  async holders (userId: string): Promise<Holder[]> {
    const set = this.bus.zsets.get(this.userKey(userId))
    return set ? [...set.entries()].sort((a, b) => a[1] - b[1]).map(([m]) => holderOf(m)) : []
  }
}

export class RedisConnectionLimiter extends BaseLimiter {
  constructor (private readonly client: RedisClient, prefix: string, policy: LimitPolicy) {
    super(prefix, policy)
    client.defineCommand('heraldAdmit', { numberOfKeys: 1, lua: ADMIT })
    client.defineCommand('heraldReassert', { numberOfKeys: 1, lua: REASSERT })
  }

  protected async admit (key: string, member: string, limit: number, evict: boolean): Promise<Step> {
    const r = await (this.client as unknown as { heraldAdmit: (...a: Array<string | number>) => Promise<[number, string?]> })
      .heraldAdmit(key, member, Date.now(), limit, evict ? '1' : '0')
    return [Number(r[0]), r[1] ?? null]
  }

  protected async remove (key: string, member: string): Promise<void> {
    await this.client.zrem(key, member)
  }

  protected async addUnder (key: string, member: string, score: number, limit: number, keepNewest: boolean): Promise<string[]> {
    return await (this.client as unknown as { heraldReassert: (...a: Array<string | number>) => Promise<string[]> })
      .heraldReassert(key, member, score, limit, keepNewest ? '1' : '0')
  }

  protected async putRecord (rec: ConnectionRecord): Promise<void> {
    await this.client.hset(this.nodeKey(rec.serverId), rec.connectionId, JSON.stringify(rec))
  }

  protected async dropRecord (rec: Holder): Promise<void> {
    await this.client.hdel(this.nodeKey(rec.serverId), rec.connectionId)
  }

  protected async records (serverId: string, ids?: string[]): Promise<ConnectionRecord[]> {
    const key = this.nodeKey(serverId)
    const raw = ids === undefined ? Object.values(await this.client.hgetall(key)) : ids.length === 0 ? [] : await this.client.hmget(key, ...ids)
    return raw.map(parseRecord).filter((r): r is ConnectionRecord => r !== null)
  }

  protected async dropNode (serverId: string): Promise<void> {
    // Two commands: on a Redis Cluster the keys live in different slots.
    await this.client.del(this.nodeKey(serverId))
    await this.client.del(this.evictKey(serverId))
  }

  protected async noteEviction (e: Eviction): Promise<void> {
    // Kept a minute: long enough for the holder's next sync, short enough that
    // a dead holder's list does not linger.
    await this.client.multi().rpush(this.evictKey(e.serverId), encodeEviction(e)).pexpire(this.evictKey(e.serverId), 60_000).exec()
  }

  async takeEvictions (serverId: string): Promise<Eviction[]> {
    const res = await this.client.multi().lrange(this.evictKey(serverId), 0, -1).del(this.evictKey(serverId)).exec()
    return ((res?.[0]?.[1] as string[] | undefined) ?? []).map((entry) => decodeEviction(serverId, entry))
  }

  async count (scope: 'ip' | 'user', key: string): Promise<number> {
    return await this.client.zcard(scope === 'ip' ? this.ipKey(key) : this.userKey(key))
  }

  async holders (userId: string): Promise<Holder[]> {
    return (await this.client.zrange(this.userKey(userId), 0, -1)).map(holderOf)
  }
}

export function createConnectionLimiter (broker: Broker, prefix: string, policy: LimitPolicy): ConnectionLimiter {
  if (broker instanceof RedisBroker) return new RedisConnectionLimiter(broker.client, prefix, policy)
  if (broker instanceof MemoryBroker) return new MemoryConnectionLimiter(broker.bus, prefix, policy)
  throw new Error(`no connection limiter for broker ${broker.kind}`)
}
