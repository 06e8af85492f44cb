import type { RateStore } from '../backend/rates.js'

// Client frames per minute, per user and per IP (MAX_MESSAGES_PER_MINUTE
// each), counted cluster-wide by the backend's rate store, so a user (or an
// address) spreading frames over several nodes gets one budget. While Redis
// cannot answer, each node counts on its own with the same limit
// (src/backend/rates-redis.ts), so limits loosen to per-node rather than vanish.

export type Verdict = { ok: true } | { ok: false, scope: 'user' | 'ip', retryAfterMs: number }

export interface MessageLimiter {
  consume (userId: string, ip: string): Promise<Verdict>
}

const DURATION_S = 60

export function createMessageLimiter (rates: RateStore, perMinute: number): MessageLimiter {
  const byUser = rates.limit('user', perMinute, DURATION_S)
  const byIp = rates.limit('ip', perMinute, DURATION_S)
  return {
    async consume (userId, ip) {
      const [u, i] = await Promise.all([byUser.consume(userId), byIp.consume(ip)])
      if (u > 0) return { ok: false, scope: 'user', retryAfterMs: u }
      if (i > 0) return { ok: false, scope: 'ip', retryAfterMs: i }
      return { ok: true }
    },
  }
}
