import { randomBytes } from 'node:crypto'
import { boardKey, type BoardLimits, type Leaderboards, type Ranked } from './leaderboards.js'
import type { RedisClient } from './redis-clients.js'

/**
 * A sorted set per board and minute (`<prefix>{top:<board>}:<minute>`): a
 * batch is one MULTI of ZINCRBYs, the trim and the expiry on that key; a read
 * is one MULTI that sums the minutes into a scratch key of the same hash tag
 * (ZUNIONSTORE), reads its head and deletes it.
 */
export class RedisLeaderboards implements Leaderboards {
  constructor (private readonly client: RedisClient, private readonly prefix: string) {}

  async add (board: string, minute: number, counts: ReadonlyMap<string, number>, limits: BoardLimits): Promise<void> {
    if (counts.size === 0) return
    const key = boardKey(this.prefix, board, minute)
    const multi = this.client.multi()
    for (const [name, n] of counts) multi.zincrby(key, n, name)
    failed(await multi.zremrangebyrank(key, 0, -(limits.keep + 1)).pexpire(key, limits.retainMs).exec())
  }

  async top (board: string, minutes: readonly number[], n: number): Promise<Ranked[]> {
    if (minutes.length === 0 || n <= 0) return []
    const keys = minutes.map((m) => boardKey(this.prefix, board, m))
    const scratch = `${this.prefix}{top:${board}}:read:${randomBytes(6).toString('hex')}`
    const res = await this.client.multi()
      .zunionstore(scratch, keys.length, ...keys)
      .zrevrange(scratch, 0, n - 1, 'WITHSCORES')
      .del(scratch)
      .exec()
    failed(res)
    const flat = (res?.[1]?.[1] ?? []) as string[]
    const out: Ranked[] = []
    for (let i = 0; i + 1 < flat.length; i += 2) out.push({ name: flat[i]!, count: Number(flat[i + 1]) })
    return out
  }
}

/** A MULTI's first failed command, thrown (ioredis reports them per command). */
function failed (res: Array<[Error | null, unknown]> | null): void {
  const err = res?.find(([e]) => e !== null)?.[0]
  if (err) throw err
}
