import { RateLimiterMemory } from 'rate-limiter-flexible'
import { MemoryStore } from './memory-store.js'
import { rateKeyPrefix, rateLimit, type RateLimit, type RateStore } from './rates.js'

export class MemoryRates implements RateStore {
  constructor (private readonly store: MemoryStore = new MemoryStore(), private readonly prefix = '') {}

  limit (name: string, points: number, durationS: number): RateLimit {
    const keyPrefix = rateKeyPrefix(this.prefix, name)
    // Backends sharing a store (tests) share counts, as nodes sharing Redis do.
    const k = `${keyPrefix}:${points}:${durationS}`
    let l = this.store.rates.get(k)
    if (!l) { l = new RateLimiterMemory({ points, duration: durationS, keyPrefix }); this.store.rates.set(k, l) }
    return rateLimit(l)
  }
}
