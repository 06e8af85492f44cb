import type { MemoryStore } from './memory-store.js'
import { PENDING, publishKey, type Claim, type PublishKeys } from './publish-keys.js'

export class MemoryPublishKeys implements PublishKeys {
  constructor (private readonly store: MemoryStore, private readonly prefix: string) {}

  async claim (userId: string, key: string, pendingMs: number): Promise<Claim> {
    const k = publishKey(this.prefix, userId, key)
    const now = Date.now()
    const held = this.store.kv.get(k)
    if (held !== undefined && (held.expiresAt === 0 || held.expiresAt > now)) {
      return held.value === PENDING ? { state: 'pending' } : { state: 'done', receipt: held.value }
    }
    this.store.kv.set(k, { value: PENDING, expiresAt: now + pendingMs })
    return { state: 'new' }
  }

  async settle (userId: string, key: string, receipt: string, ttlMs: number): Promise<void> {
    this.store.kv.set(publishKey(this.prefix, userId, key), { value: receipt, expiresAt: Date.now() + ttlMs })
  }

  async release (userId: string, key: string): Promise<void> {
    this.store.kv.delete(publishKey(this.prefix, userId, key))
  }
}
