// When a failed delivery is tried again: exponential backoff with jitter,
// after the schedule Svix uses, scaled by WEBHOOK_RETRY_BASE (5 s by default;
// a smaller base only for tests and tuning). With the default base:
//
//   attempt      1    2     3      4       5     6     7      8
//   after prev   -    5 s   5 min  30 min  2 h   5 h   10 h   10 h
//
// each delay drawn within ±10 % of its value. The eighth and last attempt
// comes 27 h 35 min after the first (24 h 49 min at the earliest); after it,
// the delivery is a dead letter. A Retry-After on the answer (seconds or an
// HTTP date) postpones the next attempt to then, if later, up to a day.

export const RETRY_MULTIPLIERS: readonly number[] = [1, 60, 360, 1440, 3600, 7200, 7200]
export const MAX_ATTEMPTS = RETRY_MULTIPLIERS.length + 1
export const DEFAULT_RETRY_BASE_MS = 5000
/** The most a Retry-After may postpone an attempt. */
export const MAX_RETRY_AFTER_MS = 86_400_000
export const JITTER = 0.1

/** ms before the next attempt after `attemptsMade` failed ones; null when none is left. */
export function nextDelay (attemptsMade: number, baseMs: number, retryAfterMs?: number, random: () => number = Math.random): number | null {
  const m = RETRY_MULTIPLIERS[attemptsMade - 1]
  if (m === undefined) return null
  const scheduled = Math.round(baseMs * m * (1 - JITTER + 2 * JITTER * random()))
  return retryAfterMs === undefined ? scheduled : Math.max(scheduled, Math.min(retryAfterMs, MAX_RETRY_AFTER_MS))
}

/** A Retry-After header's ms from `now`: delay-seconds or an HTTP date; undefined when absent or unreadable. */
export function parseRetryAfter (value: string | undefined, now: number): number | undefined {
  if (value === undefined) return undefined
  const v = value.trim()
  if (/^\d{1,10}$/.test(v)) return Number(v) * 1000
  const at = Date.parse(v)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}
