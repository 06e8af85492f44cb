import { createPublicKey } from 'node:crypto'
import { setTimeout as sleep } from 'node:timers/promises'
import { HeraldError } from '../errors.js'

// JWKS_URL keys by kid. An unauthenticated client chooses the kid, so a kid
// must never make a node hammer the identity provider, and an attacker's
// made-up kids must never stand in the way of a real one:
// - the set is fetched whole and every usable key in it is kept, so a key the
//   provider publishes (a rotated one) is known from the first fetch after;
// - a kid the set lacks waits for a fetch that starts after it arrived; every
//   such request joins the same one, and fetches start at most once per
//   `minIntervalMs` whatever asks for them: random kids cost one fetch a
//   second per node and delay a real new kid to that fetch at most, never
//   refuse it;
// - a kid the latest fetch lacked is refused from memory (per kid) for
//   `missTtlMs`, without waiting;
// - a set past `maxAgeMs` is still used while one shared fetch refreshes it
//   in the background, so the current kid never counts as unknown; a failed
//   refresh keeps the set we have (a provider outage does not lock users out).

export type JwksAlg = 'RS256' | 'ES256'

export interface JwksOptions {
  maxAgeMs?: number
  minIntervalMs?: number
  missTtlMs?: number
  timeoutMs?: number
}

const MAX_KID_LENGTH = 256
const MAX_KEYS = 100
const MAX_MISSES = 1024
const MAX_BODY_BYTES = 1024 * 1024

interface Key { alg: JwksAlg, pem: string }

const invalid = (message: string): HeraldError => new HeraldError('TOKEN_INVALID', message)
const unavailable = (): HeraldError => new HeraldError('BACKEND_UNAVAILABLE', 'the identity provider\'s key set (JWKS_URL) could not be fetched')

/** Resolves a token's kid and alg to a PEM public key, or throws a HeraldError. */
export function createJwksLookup (url: URL, opts: JwksOptions = {}): (kid: unknown, alg: JwksAlg) => Promise<string> {
  const maxAgeMs = opts.maxAgeMs ?? 10 * 60_000
  const minIntervalMs = opts.minIntervalMs ?? 1000
  const missTtlMs = opts.missTtlMs ?? 60_000
  const timeoutMs = opts.timeoutMs ?? 5000

  let keys = new Map<string, Key>()
  let fetchedAt = -Infinity
  let lastStart = -Infinity
  let running: { startedAt: number, done: Promise<void> } | null = null
  let queued: Promise<void> | null = null
  const misses = new Map<string, number>()

  const load = async (): Promise<void> => {
    let body: unknown
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), headers: { accept: 'application/json' } })
      if (!res.ok || res.body === null) throw new Error(`answered ${res.status}`)
      const chunks: Buffer[] = []
      let size = 0
      for await (const chunk of res.body) {
        size += (chunk as Uint8Array).byteLength
        if (size > MAX_BODY_BYTES) throw new Error('key set too large')
        chunks.push(Buffer.from(chunk as Uint8Array))
      }
      body = JSON.parse(Buffer.concat(chunks).toString('utf8'))
    } catch {
      throw unavailable()
    }
    const list = (body as { keys?: unknown } | null)?.keys
    if (!Array.isArray(list)) throw unavailable()
    keys = keySet(list)
    fetchedAt = Date.now()
  }

  const fetchNow = (): Promise<void> => {
    const startedAt = lastStart = Date.now()
    const done: Promise<void> = load().finally(() => { if (running?.done === done) running = null })
    running = { startedAt, done }
    return done
  }

  /** Settles once a fetch that started at or after `after` has finished. */
  const fetchFrom = (after: number): Promise<void> => {
    if (running !== null && running.startedAt >= after) return running.done
    if (queued === null) {
      const q: Promise<void> = (async () => {
        if (running !== null) await running.done.catch(() => {})
        const wait = lastStart + minIntervalMs - Date.now()
        if (wait > 0) await sleep(wait)
      })().then(async () => {
        if (queued === q) queued = null
        await fetchNow()
      })
      queued = q
    }
    return queued
  }

  return async (kid, alg) => {
    if (typeof kid !== 'string' || kid.length === 0 || kid.length > MAX_KID_LENGTH) throw invalid('the token names no usable key id (kid)')
    const now = Date.now()
    let key = keys.get(kid)
    if (key === undefined) {
      const until = misses.get(kid)
      if (until !== undefined && until > now) throw invalid('the identity provider has no key with this kid')
      await fetchFrom(now)
      key = keys.get(kid)
      if (key === undefined) {
        misses.delete(kid)
        if (misses.size >= MAX_MISSES) misses.delete(misses.keys().next().value!)
        misses.set(kid, Date.now() + missTtlMs)
        throw invalid('the identity provider has no key with this kid')
      }
    } else if (now - fetchedAt > maxAgeMs) {
      // In the background (the set we have stays in use); any fetch since the set aged will do.
      fetchFrom(fetchedAt + maxAgeMs).catch(() => {})
    }
    if (key.alg !== alg) throw invalid(`the key with this kid is not an ${alg} key`)
    return key.pem
  }
}

/** The usable signing keys of a JWKS `keys` array, by kid: RSA for RS256, P-256 for ES256. */
function keySet (list: unknown[]): Map<string, Key> {
  const out = new Map<string, Key>()
  for (const jwk of list) {
    if (out.size >= MAX_KEYS) break
    if (typeof jwk !== 'object' || jwk === null) continue
    const j = jwk as Record<string, unknown>
    if (typeof j.kid !== 'string' || j.kid.length === 0 || j.kid.length > MAX_KID_LENGTH || out.has(j.kid)) continue
    if (j.use !== undefined && j.use !== 'sig') continue
    const alg: JwksAlg | null = j.kty === 'RSA' ? 'RS256' : j.kty === 'EC' && j.crv === 'P-256' ? 'ES256' : null
    if (alg === null || (j.alg !== undefined && j.alg !== alg)) continue
    try {
      const pem = createPublicKey({ key: j as import('node:crypto').JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString()
      out.set(j.kid, { alg, pem })
    } catch {
      // not a readable public key: skipped, as a key of another type would be
    }
  }
  return out
}
