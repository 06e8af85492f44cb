import { Cluster } from 'ioredis'
import { admitInSteps, type AdmissionStore, type Entrant, type Entry, type EntryPolicy } from './admissions.js'
import type { RedisClient } from './redis-clients.js'
import { revocationKeys, type RevocationStore } from './revocations.js'
import { holderOf, memberOf, slotKeys, type SlotStore } from './slots.js'
import { chunksOf } from './turn-batch.js'

// A whole batch in one call, on one Redis server. KEYS[1] is the node's
// record hash; then four keys per entrant: its session's revocation (its
// user's again when it has no session), its user's revocation, its IP's set,
// its user's set. ARGV[1..4]: now (ms), the per-IP limit, the per-user
// limit, evict-oldest ('1'); then five per entrant: member, what to check
// ('0' nothing, '1' the user, '2' the session and the user), iat in ms (''
// none), connection id, record JSON. The steps and their order are slots-redis.ts's ADMIT,
// IP then user, after revocations.ts's check (revokedBy: a token issued in
// the revocation's own second counts as revoked). Per entrant the reply is
// {1} admitted, {2, member} admitted evicting member, {3} session revoked,
// {4} user revoked, {5} IP full, {6} user full.
//
// A connection whose member both sets hold already is admitted without a
// step: ioredis sends a command again when its connection dropped before
// the reply came, and the first run may have taken the slots. Run again, it
// would count its own slot against the limit and refuse a connection that
// holds one (an eviction the first run made is not named twice).
const ADMIT_MANY = `
local now, perIp, perUser, evict = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1'
local out = {}
local n = (#KEYS - 1) / 4
for i = 0, n - 1 do
  local k, a = 1 + i * 4, 5 + i * 5
  local member, check, iat = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local verdict
  if redis.call('ZSCORE', KEYS[k + 3], member) and redis.call('ZSCORE', KEYS[k + 4], member) then verdict = {1} end
  if verdict == nil and check == '2' and redis.call('EXISTS', KEYS[k + 1]) == 1 then verdict = {3} end
  if verdict == nil and check ~= '0' then
    local u = redis.call('GET', KEYS[k + 2])
    if u and (iat == '' or math.floor(tonumber(iat) / 1000) <= math.floor(tonumber(u) / 1000)) then verdict = {4} end
  end
  if verdict == nil then
    if redis.call('ZCARD', KEYS[k + 3]) >= perIp then verdict = {5} end
  end
  if verdict == nil then
    local users = redis.call('ZCARD', KEYS[k + 4])
    if users < perUser then
      verdict = {1}
    elseif evict then
      local oldest = redis.call('ZRANGE', KEYS[k + 4], 0, 0)[1]
      redis.call('ZREM', KEYS[k + 4], oldest)
      verdict = {2, oldest}
    else
      verdict = {6}
    end
    if verdict[1] ~= 6 then
      redis.call('ZADD', KEYS[k + 3], now, member)
      redis.call('ZADD', KEYS[k + 4], now, member)
      redis.call('HSET', KEYS[1], ARGV[a + 3], ARGV[a + 4])
    end
  end
  out[i + 1] = verdict
end
return out
`

// Entrants per script call: each costs a few sorted-set operations, and a
// script holds Redis for its whole run; 256 keep a call well under a millisecond.
const PER_CALL = 256

type AdmitMany = (...a: Array<string | number>) => Promise<Array<[number, string?]>>

export class RedisAdmissions implements AdmissionStore {
  private readonly slotKeys: ReturnType<typeof slotKeys>
  private readonly revocationKeys: ReturnType<typeof revocationKeys>
  private readonly admitMany: AdmitMany
  private readonly apart: boolean

  /** `slots` and `revocations` on the same client: the steps a Cluster takes, whose keys live apart. */
  constructor (client: RedisClient, prefix: string, private readonly slots: SlotStore, private readonly revocations: RevocationStore) {
    this.slotKeys = slotKeys(prefix)
    this.revocationKeys = revocationKeys(prefix)
    this.apart = client instanceof Cluster
    client.defineCommand('heraldAdmitMany', { lua: ADMIT_MANY })
    const scripts = client as unknown as { heraldAdmitMany: AdmitMany }
    this.admitMany = async (...a) => await scripts.heraldAdmitMany(...a)
  }

  async admit (entrants: readonly Entrant[], policy: EntryPolicy): Promise<Entry[]> {
    if (entrants.length === 0) return []
    if (this.apart) return await admitInSteps(this.revocations, this.slots, entrants, policy)
    return (await Promise.all(chunksOf(entrants, PER_CALL).map(async (part) => await this.call(part, policy)))).flat()
  }

  private async call (entrants: readonly Entrant[], policy: EntryPolicy): Promise<Entry[]> {
    // Every entrant of a call is this node's: one record hash.
    const keys: string[] = [this.slotKeys.records(entrants[0]!.record.serverId)]
    const args: Array<string | number> = [Date.now(), policy.perIp, policy.perUser, policy.evictOldest ? '1' : '0']
    for (const { record: r, who } of entrants) {
      if (r.serverId !== entrants[0]!.record.serverId) throw new Error('one node\'s connections per admission batch')
      const userRev = this.revocationKeys.user(r.userId)
      keys.push(who?.sessionId != null ? this.revocationKeys.session(who.sessionId) : userRev, userRev, this.slotKeys.set('ip', r.ip), this.slotKeys.set('user', r.userId))
      args.push(memberOf(r), who === null ? '0' : who.sessionId !== null ? '2' : '1', who?.issuedAt != null ? who.issuedAt : '', r.connectionId, JSON.stringify(r))
    }
    const replies = await this.admitMany(keys.length, ...keys, ...args)
    return replies.map((v): Entry => {
      switch (Number(v[0])) {
        case 1: return { ok: true, evicted: null }
        case 2: return { ok: true, evicted: holderOf(String(v[1])) }
        case 3: return { ok: false, revoked: 'session' }
        case 4: return { ok: false, revoked: 'user' }
        case 5: return { ok: false, scope: 'ip' }
        default: return { ok: false, scope: 'user' }
      }
    })
  }
}
