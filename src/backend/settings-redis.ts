import type { RedisClient } from './redis-clients.js'
import type { SharedSettings } from './settings.js'

/** A hash per name (`<prefix><name>`): HSETNX per field and PEXPIRE in one MULTI on one key. */
export class RedisSettings implements SharedSettings {
  constructor (private readonly client: RedisClient, private readonly prefix: string) {}

  async adopt (name: string, fields: Record<string, string>, ttlMs: number): Promise<Record<string, string>> {
    const key = this.prefix + name
    const multi = this.client.multi()
    for (const [f, v] of Object.entries(fields)) multi.hsetnx(key, f, v)
    await multi.pexpire(key, ttlMs).exec()
    return await this.client.hgetall(key)
  }
}
