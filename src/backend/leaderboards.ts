// Counts per member per minute, summed over the nodes of a cluster, of which
// only the highest are kept: the dashboard's top users and top event types
// (src/admin/top.ts). Each node adds its counts in batches (a few seconds'
// worth in one call), never one call per event. Memory
// (leaderboards-memory.ts) and Redis (leaderboards-redis.ts) implementations
// run test/backend/leaderboards.test.ts.

export interface Ranked { name: string, count: number }

export interface BoardLimits {
  /** members kept per minute: after each batch, those ranked below this many are dropped */
  keep: number
  /** how long a minute is kept after its last batch, ms */
  retainMs: number
}

export interface Leaderboards {
  /**
   * Adds `counts` to `board`'s count for `minute` (minutes since the epoch),
   * then drops the members of that minute ranked below `limits.keep` and
   * keeps the minute for `limits.retainMs`. Dropping is what bounds memory:
   * a member dropped early in a minute that gains counts later starts again
   * from those, so a ranking is exact for members that stay in the top.
   */
  add (board: string, minute: number, counts: ReadonlyMap<string, number>, limits: BoardLimits): Promise<void>
  /**
   * The `n` members with the highest counts summed over `minutes`, highest
   * first; members with equal counts in descending order of name.
   */
  top (board: string, minutes: readonly number[], n: number): Promise<Ranked[]>
}

/** Every minute of a board shares one hash tag: on a Redis Cluster one slot, so a read sums them in one command. */
export const boardKey = (prefix: string, board: string, minute: number): string => `${prefix}{top:${board}}:${minute}`

/** Highest count first; equal counts in descending order of name (as Redis ranks them). */
export function byRank (a: Ranked, b: Ranked): number {
  if (a.count !== b.count) return b.count - a.count
  return a.name < b.name ? 1 : a.name > b.name ? -1 : 0
}
