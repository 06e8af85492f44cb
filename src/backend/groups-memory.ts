import { GroupLimit, groupKeys, MAX_GROUPS_PER_USER, type GroupMembers, type GroupStore } from './groups.js'
import type { MemoryStore } from './memory-store.js'

export class MemoryGroups implements GroupStore {
  private readonly keys: ReturnType<typeof groupKeys>

  constructor (private readonly store: MemoryStore, prefix: string) {
    this.keys = groupKeys(prefix)
  }

  private set (key: string): Set<string> {
    let s = this.store.sets.get(key)
    if (s === undefined) { s = new Set(); this.store.sets.set(key, s) }
    return s
  }

  private drop (key: string, member: string): boolean {
    const s = this.store.sets.get(key)
    if (s === undefined || !s.delete(member)) return false
    if (s.size === 0) this.store.sets.delete(key)
    return true
  }

  async add (group: string, userId: string): Promise<boolean> {
    const mine = this.set(this.keys.groupsOf(userId))
    if (!mine.has(group) && mine.size >= MAX_GROUPS_PER_USER) throw new GroupLimit()
    const added = !mine.has(group)
    mine.add(group)
    this.set(this.keys.members(group)).add(userId)
    return added
  }

  async remove (group: string, userId: string): Promise<boolean> {
    const was = this.drop(this.keys.groupsOf(userId), group)
    this.drop(this.keys.members(group), userId)
    return was
  }

  async members (group: string, limit: number): Promise<GroupMembers> {
    const all = [...(this.store.sets.get(this.keys.members(group)) ?? [])].sort()
    return { members: all.slice(0, limit), total: all.length }
  }

  async groupsOf (userId: string): Promise<string[]> {
    return [...(this.store.sets.get(this.keys.groupsOf(userId)) ?? [])]
  }
}
