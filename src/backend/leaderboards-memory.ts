import { boardKey, byRank, type BoardLimits, type Leaderboards, type Ranked } from './leaderboards.js'
import { MemoryStore } from './memory-store.js'

export class MemoryLeaderboards implements Leaderboards {
  constructor (private readonly store: MemoryStore = new MemoryStore(), private readonly prefix = '') {}

  async add (board: string, minute: number, counts: ReadonlyMap<string, number>, limits: BoardLimits): Promise<void> {
    const key = boardKey(this.prefix, board, minute)
    const now = Date.now()
    let e = this.store.boards.get(key)
    if (e === undefined || e.expiresAt <= now) { e = { scores: new Map(), expiresAt: 0 }; this.store.boards.set(key, e) }
    for (const [name, n] of counts) e.scores.set(name, (e.scores.get(name) ?? 0) + n)
    if (e.scores.size > limits.keep) {
      // Ranked as Redis's ZREMRANGEBYRANK ranks: lowest score first, then lowest name.
      const ranked = [...e.scores].map(([name, count]) => ({ name, count })).sort(byRank)
      for (const r of ranked.slice(limits.keep)) e.scores.delete(r.name)
    }
    e.expiresAt = now + limits.retainMs
  }

  async top (board: string, minutes: readonly number[], n: number): Promise<Ranked[]> {
    const now = Date.now()
    const sum = new Map<string, number>()
    for (const m of minutes) {
      const key = boardKey(this.prefix, board, m)
      const e = this.store.boards.get(key)
      if (e === undefined) continue
      if (e.expiresAt <= now) { this.store.boards.delete(key); continue }
      for (const [name, c] of e.scores) sum.set(name, (sum.get(name) ?? 0) + c)
    }
    return [...sum].map(([name, count]) => ({ name, count })).sort(byRank).slice(0, Math.max(0, n))
  }
}
