import type { RedisClient } from './redis-clients.js'
import { decodeEviction, recordsByNode, encodeEviction, holderOf, memberOf, parseRecord, slotKeys, type Admitted, type ConnectionRecord, type Eviction, type Holder, type SlotScope, type SlotStore } from './slots.js'

// Result codes: 1 admitted, 2 admitted by evicting the member returned, 0 full.
// A member already in the set is admitted as it is: a command ioredis sent
// again after a dropped connection must not count the slot its first run took.
const ADMIT = `
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return {1} end
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

// Kept a minute: long enough for the holder's next sync, short enough that
// a dead holder's list does not linger.
const EVICTIONS_TTL_MS = 60_000

interface Scripts {
  heraldAdmit: (...a: Array<string | number>) => Promise<[number, string?]>
  heraldReassert: (...a: Array<string | number>) => Promise<string[]>
}

export class RedisSlots implements SlotStore {
  private readonly keys: ReturnType<typeof slotKeys>
  private readonly scripts: Scripts

  constructor (private readonly client: RedisClient, prefix: string) {
    this.keys = slotKeys(prefix)
    client.defineCommand('heraldAdmit', { numberOfKeys: 1, lua: ADMIT })
    client.defineCommand('heraldReassert', { numberOfKeys: 1, lua: REASSERT })
    this.scripts = client as unknown as Scripts
  }

  async admit (scope: SlotScope, key: string, holder: Holder, limit: number, evictOldest: boolean): Promise<Admitted> {
    const r = await this.scripts.heraldAdmit(this.keys.set(scope, key), memberOf(holder), Date.now(), limit, evictOldest ? '1' : '0')
    const code = Number(r[0])
    if (code === 0) return { ok: false }
    return { ok: true, evicted: code === 2 && r[1] !== undefined && r[1] !== null ? holderOf(r[1]) : null }
  }

  async remove (scope: SlotScope, key: string, holder: Holder): Promise<void> {
    await this.client.zrem(this.keys.set(scope, key), memberOf(holder))
  }

  async addUnder (scope: SlotScope, key: string, holder: Holder, openedAt: number, limit: number, keepNewest: boolean): Promise<Holder[]> {
    return (await this.scripts.heraldReassert(this.keys.set(scope, key), memberOf(holder), openedAt, limit, keepNewest ? '1' : '0')).map(holderOf)
  }

  async holders (scope: SlotScope, key: string): Promise<Holder[]> {
    return (await this.client.zrange(this.keys.set(scope, key), 0, -1)).map(holderOf)
  }

  async putRecords (recs: readonly ConnectionRecord[]): Promise<void> {
    await Promise.all([...recordsByNode(recs)].map(async ([serverId, fields]) => await this.client.hset(this.keys.records(serverId), fields)))
  }

  async dropRecord (holder: Holder): Promise<void> {
    await this.client.hdel(this.keys.records(holder.serverId), holder.connectionId)
  }

  async records (serverId: string, ids?: string[]): Promise<ConnectionRecord[]> {
    const key = this.keys.records(serverId)
    const raw = ids === undefined ? Object.values(await this.client.hgetall(key)) : ids.length === 0 ? [] : await this.client.hmget(key, ...ids)
    return raw.map(parseRecord).filter((r): r is ConnectionRecord => r !== null)
  }

  async dropNode (serverId: string): Promise<void> {
    // Two commands: on a Redis Cluster the keys live in different slots.
    await this.client.del(this.keys.records(serverId))
    await this.client.del(this.keys.evictions(serverId))
  }

  async noteEviction (e: Eviction): Promise<void> {
    const k = this.keys.evictions(e.serverId)
    await this.client.multi().rpush(k, encodeEviction(e)).pexpire(k, EVICTIONS_TTL_MS).exec()
  }

  async takeEvictions (serverId: string): Promise<Eviction[]> {
    const k = this.keys.evictions(serverId)
    const res = await this.client.multi().lrange(k, 0, -1).del(k).exec()
    return ((res?.[0]?.[1] as string[] | undefined) ?? []).map((entry) => decodeEviction(serverId, entry))
  }
}
