import type { RedisClient } from './redis-clients.js'
import { decodeEntry, encodeEntry, revocationKeys, revokedBy, type Revocation, type RevocationStore, type Revoked, type Who } from './revocations.js'

// A later revocation of the same user wins; an earlier one never lowers it,
// nor shortens its life (a revocation written back after a loss of data
// carries what is left of its TTL).
const REVOKE_USER = `local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`

export class RedisRevocations implements RevocationStore {
  private readonly keys: ReturnType<typeof revocationKeys>
  private readonly revokeUser: (key: string, at: string, ttl: string) => Promise<number>

  constructor (private readonly client: RedisClient, prefix: string) {
    this.keys = revocationKeys(prefix)
    client.defineCommand('heraldRevokeUser', { numberOfKeys: 1, lua: REVOKE_USER })
    const scripts = client as unknown as { heraldRevokeUser: (key: string, at: string, ttl: string) => Promise<number> }
    this.revokeUser = async (key, at, ttl) => await scripts.heraldRevokeUser(key, at, ttl)
  }

  async revoke (r: Revocation, ttlMs: number): Promise<void> {
    const px = String(Math.ceil(ttlMs))
    if (r.kind === 'session') await this.client.set(this.keys.session(r.sessionId), String(r.at), 'PX', px)
    else await this.revokeUser(this.keys.user(r.userId), String(r.at), px)
    await this.client.zadd(this.keys.log, r.at, encodeEntry(r))
  }

  async prune (before: number): Promise<void> {
    await this.client.zremrangebyscore(this.keys.log, '-inf', before)
  }

  async check (who: Who): Promise<Revoked | null> {
    const [s, u] = await Promise.all([
      who.sessionId !== null ? this.client.exists(this.keys.session(who.sessionId)) : Promise.resolve(0),
      this.client.get(this.keys.user(who.userId)),
    ])
    if (s === 1) return 'session'
    if (u !== null && revokedBy(who.issuedAt, Number(u))) return 'user'
    return null
  }

  async since (since: number): Promise<Revocation[]> {
    const members = await this.client.zrangebyscore(this.keys.log, since, '+inf')
    return members.map(decodeEntry).filter((r): r is Revocation => r !== null)
  }

  async newest (after: number, limit: number): Promise<Revocation[]> {
    const members = await this.client.zrevrangebyscore(this.keys.log, '+inf', `(${after}`, 'LIMIT', 0, limit)
    return members.reverse().map(decodeEntry).filter((r): r is Revocation => r !== null)
  }
}
