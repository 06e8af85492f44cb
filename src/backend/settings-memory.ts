import { MemoryStore } from './memory-store.js'
import type { SharedSettings } from './settings.js'

export class MemorySettings implements SharedSettings {
  constructor (private readonly store: MemoryStore = new MemoryStore(), private readonly prefix = '') {}

  async adopt (name: string, fields: Record<string, string>, ttlMs: number): Promise<Record<string, string>> {
    const key = this.prefix + name
    const now = Date.now()
    let e = this.store.settings.get(key)
    if (e === undefined || e.expiresAt <= now) { e = { fields: new Map(), expiresAt: 0 }; this.store.settings.set(key, e) }
    for (const [f, v] of Object.entries(fields)) if (!e.fields.has(f)) e.fields.set(f, v)
    e.expiresAt = now + ttlMs
    return Object.fromEntries(e.fields)
  }
}
