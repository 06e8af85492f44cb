import { RateLimiterMemory, RateLimiterRedis, RLWrapperTimeouts } from 'rate-limiter-flexible'
import type { RedisClient } from './redis-clients.js'
import { rateKeyPrefix, rateLimit, type RateLimit, type RateStore } from './rates.js'

// A connected but unresponsive Redis (paused, overloaded) never errors: its
// commands just wait. Past this, the action is counted by the insurance limiter.
export const RATE_TIMEOUT_MS = 500

/**
 * Counted in Redis, so the budget is the cluster's. While Redis cannot answer
 * (unreachable, or not within RATE_TIMEOUT_MS) each node counts on its own
 * with the same budget (rate-limiter-flexible's insurance limiter): limits
 * loosen to per node rather than vanish, and no action waits for Redis.
 */
export class RedisRates implements RateStore {
  constructor (private readonly client: RedisClient, private readonly prefix: string) {}

  limit (name: string, points: number, durationS: number): RateLimit {
    const keyPrefix = rateKeyPrefix(this.prefix, name)
    const insuranceLimiter = new RateLimiterMemory({ points, duration: durationS, keyPrefix })
    const redis = new RateLimiterRedis({ storeClient: this.client, points, duration: durationS, keyPrefix, rejectIfRedisNotReady: true, insuranceLimiter })
    return rateLimit(new RLWrapperTimeouts({ limiter: redis, timeoutMs: RATE_TIMEOUT_MS, insuranceLimiter }))
  }
}
