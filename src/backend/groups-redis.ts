import { GroupLimit, groupKeys, MAX_GROUPS_PER_USER, type GroupMembers, type GroupStore } from './groups.js'
import { Cluster } from 'ioredis'
import type { RedisClient } from './redis-clients.js'
import { chunksOf, turnBatched } from './turn-batch.js'

// The user's set, bounded: one key, so one script on a Cluster too.
// Returns 1 added, 0 already a member, -1 full.
const JOIN = `if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return -1 end
redis.call('SADD', KEYS[1], ARGV[1])
return 1`

// Many users' sets in one call: the groups a turn's new connections read.
// KEYS: the users' sets; ARGV[1]: the members a call reads at most. Returns
// the members of the first sets, in order, up to that many (the first set
// whatever its size); the caller asks again for the rest.
const GROUPS_OF = `local out, n = {}, 0
for i = 1, #KEYS do
  local size = redis.call('SCARD', KEYS[i])
  if i > 1 and n + size > tonumber(ARGV[1]) then break end
  out[i] = redis.call('SMEMBERS', KEYS[i])
  n = n + size
end
return out`

// A script holds Redis while it runs, and a user's set may hold
// MAX_GROUPS_PER_USER names: 256 users with full sets of 1,000 read in one
// call took 155 ms of Redis's CPU (290-400 ms from send to answer, measured
// alone). A call reads MEMBERS_PER_CALL names at most (1.4 ms of Redis's
// CPU, 15 ms from send to answer at most), and USERS_PER_CALL sets: a
// reconnect storm's turn of users in a few groups each stays one call.
const USERS_PER_CALL = 256
const MEMBERS_PER_CALL = 4096

// Sorted listings come from SORT ... ALPHA LIMIT on the members' set: a
// group's listing is an operator's or a service's occasional read.
export class RedisGroups implements GroupStore {
  private readonly keys: ReturnType<typeof groupKeys>
  private readonly join: (key: string, group: string, max: string) => Promise<number>
  private readonly batched: (key: string) => Promise<string[]>

  constructor (private readonly client: RedisClient, prefix: string) {
    this.keys = groupKeys(prefix)
    client.defineCommand('heraldGroupJoin', { numberOfKeys: 1, lua: JOIN })
    // No numberOfKeys: a call declares as many keys as it reads.
    client.defineCommand('heraldGroupsOf', { lua: GROUPS_OF } as { numberOfKeys: number, lua: string })
    const scripts = client as unknown as {
      heraldGroupJoin: (key: string, group: string, max: string) => Promise<number>
      heraldGroupsOf: (n: number, ...keysThenBudget: Array<string | number>) => Promise<string[][]>
    }
    this.join = async (key, group, max) => await scripts.heraldGroupJoin(key, group, max)
    // USERS_PER_CALL users a call, the calls together (answered in order);
    // within one, what large sets left unread goes next, once it has answered.
    const readAll = async (part: readonly string[]): Promise<string[][]> => {
      const out = await scripts.heraldGroupsOf(part.length, ...part, MEMBERS_PER_CALL)
      while (out.length < part.length) {
        const rest = part.slice(out.length)
        const got = await scripts.heraldGroupsOf(rest.length, ...rest, MEMBERS_PER_CALL)
        // The script reads the first set whatever its size: never nothing.
        if (got.length === 0) throw new Error('a read of groups made no progress')
        out.push(...got)
      }
      return out
    }
    // Every connection opening reads its user's groups: a turn's reads go out
    // as one script call (one command, one write; more only past 256 users or
    // for large sets), each user's set its own key. As a pipeline of SMEMBERS
    // the same reads cost the node two to three times the CPU (3 and 25 users
    // a call, measured alone): ioredis builds each pipeline by copying every
    // script the client defines onto it, and a command and a promise per key.
    // On a Cluster each key is its own hash slot: one command each.
    this.batched = turnBatched(async (keys) => {
      if (client instanceof Cluster) return await Promise.all(keys.map(async (k) => await client.smembers(k)))
      const parts = chunksOf(keys, USERS_PER_CALL)
      return parts.length === 1 ? await readAll(parts[0]!) : (await Promise.all(parts.map(readAll))).flat()
    })
  }

  async add (group: string, userId: string): Promise<boolean> {
    const r = await this.join(this.keys.groupsOf(userId), group, String(MAX_GROUPS_PER_USER))
    if (r === -1) throw new GroupLimit()
    await this.followUser(group, userId)
    return r === 1
  }

  async remove (group: string, userId: string): Promise<boolean> {
    const was = await this.client.srem(this.keys.groupsOf(userId), group)
    await this.followUser(group, userId)
    return was === 1
  }

  /**
   * The group's listing made to say what the user's set says, the set
   * delivery follows. The two live in different slots, so no one step
   * writes both: an add and a remove at once could each write their own
   * side last (3 in 60 such races left the listing wrong). Each call writes
   * what it reads of the user's set, then reads it again, and writes again
   * if it moved: the last write to the listing is then one made after the
   * last change to the user's set.
   */
  private async followUser (group: string, userId: string): Promise<void> {
    const user = this.keys.groupsOf(userId)
    let member = await this.client.sismember(user, group) === 1
    for (let tries = 0; tries < 3; tries++) {
      if (member) await this.client.sadd(this.keys.members(group), userId)
      else await this.client.srem(this.keys.members(group), userId)
      const now = await this.client.sismember(user, group) === 1
      if (now === member) return
      member = now
    }
  }

  async members (group: string, limit: number): Promise<GroupMembers> {
    const key = this.keys.members(group)
    const [members, total] = await Promise.all([
      this.client.sort(key, 'LIMIT', 0, limit, 'ALPHA') as Promise<string[]>,
      this.client.scard(key),
    ])
    return { members, total }
  }

  async groupsOf (userId: string): Promise<string[]> {
    return await this.batched(this.keys.groupsOf(userId))
  }
}
