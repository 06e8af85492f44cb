import { MemoryStore } from './memory-store.js'
import { decodeEntry, encodeEntry, revocationKeys, revokedBy, type Revocation, type RevocationStore, type Revoked, type Who } from './revocations.js'

export class MemoryRevocations implements RevocationStore {
  private readonly keys: ReturnType<typeof revocationKeys>

  constructor (private readonly store: MemoryStore = new MemoryStore(), prefix = '') {
    this.keys = revocationKeys(prefix)
  }

  private get log (): Map<string, number> {
    let z = this.store.zsets.get(this.keys.log)
    if (!z) { z = new Map(); this.store.zsets.set(this.keys.log, z) }
    return z
  }

  private read (key: string): string | null {
    const e = this.store.kv.get(key)
    if (!e) return null
    if (e.expiresAt !== 0 && e.expiresAt <= Date.now()) { this.store.kv.delete(key); return null }
    return e.value
  }

  async revoke (r: Revocation, ttlMs: number): Promise<void> {
    const expiresAt = Date.now() + ttlMs
    if (r.kind === 'session') {
      this.store.kv.set(this.keys.session(r.sessionId), { value: String(r.at), expiresAt })
    } else {
      // As the Redis script: the latest revocation wins, and nothing shortens its life.
      const key = this.keys.user(r.userId)
      const cur = this.read(key)
      const at = Math.max(Number(cur ?? 0), r.at)
      this.store.kv.set(key, { value: String(at), expiresAt: Math.max(expiresAt, this.store.kv.get(key)?.expiresAt ?? 0) })
    }
    this.log.set(encodeEntry(r), r.at)
  }

  async prune (before: number): Promise<void> {
    const log = this.log
    for (const [m, at] of log) if (at < before) log.delete(m)
  }

  async check (who: Who): Promise<Revoked | null> {
    if (who.sessionId !== null && this.read(this.keys.session(who.sessionId)) !== null) return 'session'
    const u = this.read(this.keys.user(who.userId))
    if (u !== null && revokedBy(who.issuedAt, Number(u))) return 'user'
    return null
  }

  async since (since: number): Promise<Revocation[]> {
    const out: Revocation[] = []
    for (const [m, at] of this.log) {
      if (at < since) continue
      const r = decodeEntry(m)
      if (r) out.push(r)
    }
    return out.sort((a, b) => a.at - b.at)
  }

  async newest (after: number, limit: number): Promise<Revocation[]> {
    return (await this.since(after + 1)).slice(-limit)
  }
}
