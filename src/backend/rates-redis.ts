import { Cluster } from 'ioredis'
import { RateLimiterMemory } from 'rate-limiter-flexible'
import type { RedisClient } from './redis-clients.js'
import { rateKeyPrefix, rateLimit, type RateLimit, type RateStore } from './rates.js'
import { slotOf } from './streams-redis.js'
import { chunksOf } from './turn-batch.js'

// A connected but unresponsive Redis (paused, overloaded) never errors: its
// commands just wait. Past this, the action is counted by the insurance limiter.
export const RATE_TIMEOUT_MS = 500

// rate-limiter-flexible's count (RateLimiterRedis), for many keys in one
// call: per key, a counter created with the window's TTL, incremented, and
// its TTL in ms. KEYS the counters; ARGV the window in seconds per key.
// Replies {consumed, ttl} per key.
const CONSUME_MANY = `
local out = {}
for i = 1, #KEYS do
  local d = ARGV[i]
  redis.call('set', KEYS[i], 0, 'EX', d, 'NX')
  local consumed = redis.call('incrby', KEYS[i], 1)
  local ttl = redis.call('pttl', KEYS[i])
  if ttl == -1 then
    redis.call('expire', KEYS[i], d)
    ttl = 1000 * d
  end
  out[2 * i - 1] = consumed
  out[2 * i] = ttl
end
return out
`

// Counters per call: a script holds Redis while it runs, a few µs a counter.
const PER_CALL = 256

interface Action {
  /** the key counted (a user id, an address) */
  id: string
  /** its counter's key, as rate-limiter-flexible names it: `<keyPrefix>:<id>` */
  key: string
  points: number
  durationS: number
  /** where the action is counted while Redis cannot answer */
  insurance: RateLimit
  resolve: (msBeforeNext: number) => void
  reject: (err: unknown) => void
}

type ConsumeMany = (...a: Array<string | number>) => Promise<number[]>

/**
 * Counted in Redis, so the budget is the cluster's. While Redis cannot answer
 * (unreachable, or not within RATE_TIMEOUT_MS) each node counts on its own
 * with the same budget (an insurance limiter in memory, as
 * rate-limiter-flexible's): limits loosen to per node rather than vanish,
 * and no action waits for Redis.
 *
 * Every client frame is counted twice (its user, its IP): the actions of an
 * event-loop turn go to Redis as one script call (per hash slot on a
 * Cluster), not two commands a frame, which a reconnect storm's thousands of
 * `subscribe`s paid in writes and replies one by one.
 */
export class RedisRates implements RateStore {
  private waiting: Action[] = []
  private readonly consumeMany: ConsumeMany

  constructor (private readonly client: RedisClient, private readonly prefix: string) {
    client.defineCommand('heraldConsumeMany', { lua: CONSUME_MANY } as { numberOfKeys: number, lua: string })
    const scripts = client as unknown as { heraldConsumeMany: ConsumeMany }
    this.consumeMany = async (...a) => await scripts.heraldConsumeMany(...a)
  }

  limit (name: string, points: number, durationS: number): RateLimit {
    const keyPrefix = rateKeyPrefix(this.prefix, name)
    const insurance = rateLimit(new RateLimiterMemory({ points, duration: durationS, keyPrefix }))
    return {
      consume: async (key) => await new Promise<number>((resolve, reject) => {
        // After the turn's I/O callbacks (every frame read in this poll), not after this one's microtasks.
        if (this.waiting.length === 0) setImmediate(() => this.flush())
        this.waiting.push({ id: key, key: `${keyPrefix}:${key}`, points, durationS, insurance, resolve, reject })
      }),
    }
  }

  private flush (): void {
    const batch = this.waiting
    this.waiting = []
    if (this.client.status !== 'ready') return this.insure(batch)
    if (!(this.client instanceof Cluster)) {
      for (const part of chunksOf(batch, PER_CALL)) this.send(part)
      return
    }
    // A script's keys must share a hash slot.
    const bySlot = new Map<number, Action[]>()
    for (const a of batch) {
      const slot = slotOf(a.key)
      const list = bySlot.get(slot)
      if (list === undefined) bySlot.set(slot, [a])
      else list.push(a)
    }
    for (const list of bySlot.values()) for (const part of chunksOf(list, PER_CALL)) this.send(part)
  }

  private send (batch: readonly Action[]): void {
    let settled = false
    const timer = setTimeout(() => { if (!settled) { settled = true; this.insure(batch) } }, RATE_TIMEOUT_MS)
    this.consumeMany(batch.length, ...batch.map((a) => a.key), ...batch.map((a) => a.durationS)).then((r) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      batch.forEach((a, i) => a.resolve(Number(r[2 * i]) > a.points ? Math.max(1, Number(r[2 * i + 1])) : 0))
    }, () => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      this.insure(batch)
    })
  }

  /** Redis could not answer: each action is counted by its limit's insurance limiter. */
  private insure (batch: readonly Action[]): void {
    for (const a of batch) a.insurance.consume(a.id).then(a.resolve, a.reject)
  }
}
