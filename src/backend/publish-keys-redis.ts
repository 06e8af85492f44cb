import { PENDING, publishKey, type Claim, type PublishKeys } from './publish-keys.js'
import type { RedisClient } from './redis-clients.js'

// Claim or read in one step: SET NX, or what the key holds.
const CLAIM = `if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return false end
return redis.call('GET', KEYS[1])`

export class RedisPublishKeys implements PublishKeys {
  private readonly claimScript: (key: string, pending: string, px: string) => Promise<string | null>

  constructor (private readonly client: RedisClient, private readonly prefix: string) {
    client.defineCommand('heraldPublishKey', { numberOfKeys: 1, lua: CLAIM })
    const scripts = client as unknown as { heraldPublishKey: (key: string, pending: string, px: string) => Promise<string | null> }
    this.claimScript = async (key, pending, px) => await scripts.heraldPublishKey(key, pending, px)
  }

  async claim (userId: string, key: string, pendingMs: number): Promise<Claim> {
    const held = await this.claimScript(publishKey(this.prefix, userId, key), PENDING, String(Math.ceil(pendingMs)))
    if (held === null) return { state: 'new' }
    return held === PENDING ? { state: 'pending' } : { state: 'done', receipt: held }
  }

  async settle (userId: string, key: string, receipt: string, ttlMs: number): Promise<void> {
    await this.client.set(publishKey(this.prefix, userId, key), receipt, 'PX', Math.ceil(ttlMs))
  }

  async release (userId: string, key: string): Promise<void> {
    await this.client.del(publishKey(this.prefix, userId, key))
  }
}
