import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, RLWrapperTimeouts, type RateLimiterAbstract } from 'rate-limiter-flexible'
import type { Broker } from '../cluster/broker.js'
import { MemoryBroker, type MemoryBus } from '../cluster/memory-broker.js'
import { RedisBroker } from '../cluster/redis-broker.js'

// Client frames per minute, per user and per IP, counted cluster-wide in
// Redis (brief §6). While Redis is unreachable each node falls back to its own
// in-memory count with the same limit (rate-limiter-flexible's insurance
// limiter), so limits loosen to per-node rather than vanish.

export type Verdict = { ok: true } | { ok: false, scope: 'user' | 'ip', retryAfterMs: number }

export interface MessageLimiter {
  consume (userId: string, ip: string): Promise<Verdict>
}

const DURATION_S = 60
// A connected but unresponsive Redis (paused, overloaded) never errors: its
// commands just wait. Past this, the frame is counted by the insurance limiter.
const REDIS_TIMEOUT_MS = 500
const memoryLimiters = new WeakMap<MemoryBus, Map<string, RateLimiterMemory>>()

export function createMessageLimiter (broker: Broker, prefix: string, perMinute: number): MessageLimiter {
  const make = (scope: 'user' | 'ip'): RateLimiterAbstract => {
    const keyPrefix = `${prefix}rl:${scope}`
    const memory = (): RateLimiterMemory => new RateLimiterMemory({ points: perMinute, duration: DURATION_S, keyPrefix })
    if (broker instanceof RedisBroker) {
      const insuranceLimiter = memory()
      const redis = new RateLimiterRedis({ storeClient: broker.client, points: perMinute, duration: DURATION_S, keyPrefix, rejectIfRedisNotReady: true, insuranceLimiter })
      return new RLWrapperTimeouts({ limiter: redis, timeoutMs: REDIS_TIMEOUT_MS, insuranceLimiter })
    }
    if (broker instanceof MemoryBroker) {
      // Brokers sharing a bus (tests) share counts, as nodes sharing Redis do.
      let byKey = memoryLimiters.get(broker.bus)
      if (!byKey) { byKey = new Map(); memoryLimiters.set(broker.bus, byKey) }
      const k = `${keyPrefix}:${perMinute}`
      let l = byKey.get(k)
      if (!l) { l = memory(); byKey.set(k, l) }
      return l
    }
    throw new Error(`no message limiter for broker ${broker.kind}`)
  }
  const byUser = make('user')
  const byIp = make('ip')
  const take = async (l: RateLimiterAbstract, key: string): Promise<number> => {
    try {
      await l.consume(key)
      return 0
    } catch (res) {
      if (res instanceof RateLimiterRes) return Math.max(1, res.msBeforeNext)
      throw res
    }
  }
  return {
    async consume (userId, ip) {
      const [u, i] = await Promise.all([take(byUser, userId), take(byIp, ip)])
      if (u > 0) return { ok: false, scope: 'user', retryAfterMs: u }
      if (i > 0) return { ok: false, scope: 'ip', retryAfterMs: i }
      return { ok: true }
    },
  }
}
