import { RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible'

// Counters of actions per key over a window, shared by every node (the
// message limits: client frames per user and per IP). Both implementations
// are rate-limiter-flexible: memory (rates-memory.ts) and Redis
// (rates-redis.ts, with a per-node insurance limiter); they run
// test/backend/rates.test.ts.

export interface RateLimit {
  /** Counts one action for `key`: 0 when it is within the budget, otherwise ms until the window lets one more through. */
  consume (key: string): Promise<number>
}

export interface RateStore {
  /** A budget of `points` actions per `durationS` seconds per key, counted under `name` (keys of different names never share a count). */
  limit (name: string, points: number, durationS: number): RateLimit
}

export function rateLimit (l: RateLimiterAbstract): RateLimit {
  return {
    async consume (key) {
      try {
        await l.consume(key)
        return 0
      } catch (res) {
        if (res instanceof RateLimiterRes) return Math.max(1, res.msBeforeNext)
        throw res
      }
    },
  }
}

/** Key prefix of a budget: `<prefix>rl:<name>`, then rate-limiter-flexible's `:<key>`. One key per count: no hash tags needed. */
export const rateKeyPrefix = (prefix: string, name: string): string => `${prefix}rl:${name}`
