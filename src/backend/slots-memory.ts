import { MemoryStore } from './memory-store.js'
import { decodeEviction, recordsByNode, encodeEviction, holderOf, memberOf, parseRecord, slotKeys, type Admitted, type ConnectionRecord, type Eviction, type Holder, type SlotScope, type SlotStore } from './slots.js'

export class MemorySlots implements SlotStore {
  private readonly keys: ReturnType<typeof slotKeys>

  constructor (private readonly store: MemoryStore = new MemoryStore(), prefix = '') {
    this.keys = slotKeys(prefix)
  }

  async admit (scope: SlotScope, key: string, holder: Holder, limit: number, evictOldest: boolean): Promise<Admitted> {
    const k = this.keys.set(scope, key)
    const member = memberOf(holder)
    let set = this.store.zsets.get(k)
    if (!set) { set = new Map(); this.store.zsets.set(k, set) }
    if (set.has(member)) return { ok: true, evicted: null }
    if (set.size < limit) { set.set(member, Date.now()); return { ok: true, evicted: null } }
    if (!evictOldest) { if (set.size === 0) this.store.zsets.delete(k); return { ok: false } }
    let oldest: string | null = null
    let best = Infinity
    for (const [m, score] of set) if (score < best) { best = score; oldest = m }
    if (oldest !== null) set.delete(oldest)
    set.set(member, Date.now())
    return { ok: true, evicted: oldest !== null ? holderOf(oldest) : null }
  }

  async remove (scope: SlotScope, key: string, holder: Holder): Promise<void> {
    const k = this.keys.set(scope, key)
    const set = this.store.zsets.get(k)
    if (!set) return
    set.delete(memberOf(holder))
    if (set.size === 0) this.store.zsets.delete(k)
  }

  async addUnder (scope: SlotScope, key: string, holder: Holder, openedAt: number, limit: number, keepNewest: boolean): Promise<Holder[]> {
    const k = this.keys.set(scope, key)
    let set = this.store.zsets.get(k)
    if (!set) { set = new Map(); this.store.zsets.set(k, set) }
    set.set(memberOf(holder), openedAt)
    const over = set.size - limit
    if (over <= 0) return []
    // Ordered as a sorted set is: by score, then by member.
    const byAge = [...set].sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0)).map(([m]) => m)
    const out = keepNewest ? byAge.slice(0, over) : byAge.slice(-over)
    for (const m of out) set.delete(m)
    return out.map(holderOf)
  }

  async holders (scope: SlotScope, key: string): Promise<Holder[]> {
    const set = this.store.zsets.get(this.keys.set(scope, key))
    return set ? [...set.entries()].sort((a, b) => a[1] - b[1]).map(([m]) => holderOf(m)) : []
  }

  async putRecords (recs: readonly ConnectionRecord[]): Promise<void> {
    for (const [serverId, fields] of recordsByNode(recs)) {
      const k = this.keys.records(serverId)
      let h = this.store.hashes.get(k)
      if (!h) { h = new Map(); this.store.hashes.set(k, h) }
      for (const [id, json] of Object.entries(fields)) h.set(id, json)
    }
  }

  async dropRecord (holder: Holder): Promise<void> {
    const k = this.keys.records(holder.serverId)
    const h = this.store.hashes.get(k)
    h?.delete(holder.connectionId)
    if (h?.size === 0) this.store.hashes.delete(k)
  }

  async records (serverId: string, ids?: string[]): Promise<ConnectionRecord[]> {
    const h = this.store.hashes.get(this.keys.records(serverId))
    if (!h) return []
    const raw = ids === undefined ? [...h.values()] : ids.map((id) => h.get(id) ?? null)
    return raw.map(parseRecord).filter((r): r is ConnectionRecord => r !== null)
  }

  async dropNode (serverId: string): Promise<void> {
    this.store.hashes.delete(this.keys.records(serverId))
    this.store.hashes.delete(this.keys.evictions(serverId))
  }

  async noteEviction (e: Eviction): Promise<void> {
    const k = this.keys.evictions(e.serverId)
    let set = this.store.hashes.get(k)
    if (!set) { set = new Map(); this.store.hashes.set(k, set) }
    set.set(encodeEviction(e), '')
  }

  async takeEvictions (serverId: string): Promise<Eviction[]> {
    const k = this.keys.evictions(serverId)
    const entries = [...(this.store.hashes.get(k)?.keys() ?? [])]
    this.store.hashes.delete(k)
    return entries.map((entry) => decodeEviction(serverId, entry))
  }
}
