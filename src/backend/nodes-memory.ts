import { MemoryStore } from './memory-store.js'
import type { NodeInfo, NodeStore } from './nodes.js'

export class MemoryNodes implements NodeStore {
  constructor (private readonly store: MemoryStore = new MemoryStore()) {}

  async heartbeat (info: NodeInfo, ttlMs: number): Promise<boolean> {
    const now = Date.now()
    const prev = this.store.nodes.get(info.id)
    this.store.nodes.set(info.id, { info, expiresAt: now + ttlMs })
    return prev !== undefined && prev.expiresAt > now
  }

  async nodes (): Promise<NodeInfo[]> {
    const now = Date.now()
    const out: NodeInfo[] = []
    for (const n of this.store.nodes.values()) if (n.expiresAt > now) out.push(n.info)
    return out
  }

  async deadNodes (): Promise<string[]> {
    const now = Date.now()
    return [...this.store.nodes].filter(([, n]) => n.expiresAt <= now).map(([id]) => id)
  }

  async claim (name: string, ttlMs: number): Promise<boolean> {
    const key = `claim:${name}`
    const e = this.store.kv.get(key)
    if (e !== undefined && e.expiresAt > Date.now()) return false
    this.store.kv.set(key, { value: '1', expiresAt: Date.now() + ttlMs })
    return true
  }

  async leave (nodeId: string): Promise<void> { this.store.nodes.delete(nodeId) }
}
