import { createPublicKey } from 'node:crypto'
import { createDecoder, createVerifier, TokenError } from 'fast-jwt'
import buildGetJwks from 'get-jwks'
import type { Config } from '../config/index.js'
import { HeraldError } from '../errors.js'
import { ID_RULE, isId } from '../protocol/identifiers.js'

export interface Identity {
  userId: string
  sessionId: string | null
  roles: string[]
  /** ms since epoch */
  expiresAt: number
  /** ms since epoch, when the token carries iat */
  issuedAt: number | null
  /**
   * Set only for ALLOW_ANONYMOUS guests, which have no token. Never derived
   * from a claim: a `guest` role in a JWT makes nobody a guest.
   */
  anonymous?: true
}

export interface TokenVerifier {
  verify (token: string): Promise<Identity>
}

type VerifyFn = (token: string) => Promise<Record<string, unknown>> | Record<string, unknown>

const MAX_TOKEN_LENGTH = 8192

/**
 * Verifies access tokens with pinned algorithms. The header's `alg` only picks
 * which pinned verifier runs; each verifier accepts its own algorithm and no
 * other, so `none` and HS/RS confusion fail in fast-jwt itself.
 */
export function createTokenVerifier (jwt: Config['jwt']): TokenVerifier {
  const decode = createDecoder({ complete: true })
  const common = {
    // fast-jwt checks iss/aud only when present; a configured issuer/audience must also be required.
    requiredClaims: ['exp', 'sub', ...(jwt.issuer !== undefined ? ['iss'] : []), ...(jwt.audience !== undefined ? ['aud'] : [])],
    clockTolerance: jwt.clockToleranceMs,
    allowedIss: jwt.issuer,
    allowedAud: jwt.audience,
    cache: 2048,
    // fast-jwt caches refusals too (for the clock tolerance past now). A key
    // lookup that failed because the identity provider was unreachable or busy
    // must not stick to the token: such refusals expire at once.
    errorCacheTTL: (e: TokenError) => e.code === TokenError.codes.keyFetchingError ? -jwt.clockToleranceMs - 1 : -1,
  }
  const byAlg = new Map<string, VerifyFn>()

  if (jwt.secret !== undefined) {
    byAlg.set('HS256', createVerifier({ ...common, key: jwt.secret, algorithms: ['HS256'] }))
  }
  if (jwt.publicKey !== undefined) {
    const kind = createPublicKey(jwt.publicKey).asymmetricKeyType
    const alg = kind === 'rsa' ? 'RS256' : kind === 'ec' ? 'ES256' : null
    if (alg === null) throw new Error(`JWT_PUBLIC_KEY must be an RSA or EC (P-256) public key, got ${String(kind)}`)
    byAlg.set(alg, createVerifier({ ...common, key: jwt.publicKey, algorithms: [alg] }))
  }
  if (jwt.jwksUrl !== undefined) {
    const key = jwksKeys(new URL(jwt.jwksUrl))
    for (const alg of ['RS256', 'ES256'] as const) {
      if (byAlg.has(alg)) continue
      byAlg.set(alg, createVerifier({ ...common, algorithms: [alg], key }))
    }
  }

  return {
    async verify (token: string): Promise<Identity> {
      if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw new HeraldError('TOKEN_INVALID')
      let alg: unknown
      try {
        alg = (decode(token) as { header: { alg?: unknown } }).header.alg
      } catch {
        throw new HeraldError('TOKEN_INVALID', 'the access token is malformed')
      }
      const verify = typeof alg === 'string' ? byAlg.get(alg) : undefined
      if (verify === undefined) throw new HeraldError('TOKEN_INVALID', `tokens signed with ${JSON.stringify(alg)} are not accepted`)
      let claims: Record<string, unknown>
      try {
        claims = await verify(token)
      } catch (err) {
        if (err instanceof TokenError && err.code === TokenError.codes.expired) throw new HeraldError('TOKEN_EXPIRED')
        // The key lookup's own verdict: an unknown kid, or an identity provider we cannot reach (503, not 401).
        const cause = (err as { originalError?: unknown }).originalError
        if (cause instanceof HeraldError) throw cause
        throw new HeraldError('TOKEN_INVALID')
      }
      return identityOf(claims, jwt.clockToleranceMs)
    },
  }
}

// An unauthenticated client chooses the token's kid, and a kid the key set
// lacks makes get-jwks fetch the set again: without bounds, anyone could make
// every node hammer the identity provider. Keys in the cache need no fetch; a
// kid found missing is refused without a fetch for a minute; after a miss,
// other unknown kids wait a second (503, retry) before the next fetch; and at
// most a few fetches for uncached kids run at once.
const UNKNOWN_KID_TTL_MS = 60_000
const UNKNOWN_KIDS_MAX = 1024
const AFTER_MISS_MS = 1000
const MAX_UNCACHED_FETCHES = 4

type KeyLookup = (decoded: { header: { kid?: string, alg?: string } }) => Promise<string>

function jwksKeys (url: URL): KeyLookup {
  const jwks = buildGetJwks({ jwksPath: url.pathname + url.search, providerDiscovery: false, max: 100, ttl: 10 * 60_000 })
  const domain = `${url.origin}/`
  const unknownKids = new Map<string, number>()
  let lastMiss = 0
  let fetching = 0
  const busy = (): HeraldError => new HeraldError('BACKEND_UNAVAILABLE', 'the identity provider\'s keys are being refreshed; retry in a second')
  return async ({ header }) => {
    const kid = header.kid
    if (typeof kid !== 'string' || kid.length === 0 || kid.length > 256) throw new HeraldError('TOKEN_INVALID', 'the token names no usable key id (kid)')
    const now = Date.now()
    const cached = jwks.cache.get(jwks.generateCacheKey(header.alg!, kid, domain)) !== undefined
    if (!cached) {
      const until = unknownKids.get(kid)
      if (until !== undefined && until > now) throw new HeraldError('TOKEN_INVALID', 'the identity provider has no key with this kid')
      if (now - lastMiss < AFTER_MISS_MS || fetching >= MAX_UNCACHED_FETCHES) throw busy()
      fetching++
    }
    try {
      return await jwks.getPublicKey({ domain: url.origin, kid, alg: header.alg })
    } catch (err) {
      if ((err as { code?: string }).code === 'JWK_NOT_FOUND') {
        lastMiss = Date.now()
        if (unknownKids.size >= UNKNOWN_KIDS_MAX) unknownKids.clear()
        unknownKids.set(kid, lastMiss + UNKNOWN_KID_TTL_MS)
        throw new HeraldError('TOKEN_INVALID', 'the identity provider has no key with this kid')
      }
      throw new HeraldError('BACKEND_UNAVAILABLE', 'the identity provider\'s key set (JWKS_URL) could not be fetched')
    } finally {
      if (!cached) fetching--
    }
  }
}

// NumericDate claims are seconds since the epoch (RFC 7519 §2). fast-jwt
// compares them with the clock but checks no range: an exp of
// Number.MAX_SAFE_INTEGER, or one in ms or µs, passes as "not expired" and
// breaks whatever turns it into a date later. Every time claim is held to
// 1970 .. 9999-12-31 here, once, for every caller of verify.
const MAX_NUMERIC_DATE = 253_402_300_799
const isNumericDate = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= MAX_NUMERIC_DATE

function identityOf (c: Record<string, unknown>, toleranceMs: number): Identity {
  if (!isId(c.sub)) throw new HeraldError('TOKEN_INVALID', `the token subject (sub) must be ${ID_RULE}`)
  const sid = c.sid
  if (sid !== undefined && !isId(sid)) throw new HeraldError('TOKEN_INVALID', `the token session id (sid) must be ${ID_RULE}`)
  const roles = c.roles
  if (roles !== undefined && (!Array.isArray(roles) || roles.length > 64 || !roles.every((r) => typeof r === 'string' && r.length <= 64))) {
    throw new HeraldError('TOKEN_INVALID', 'the token roles claim must be an array of strings')
  }
  for (const claim of ['exp', 'iat', 'nbf'] as const) {
    if ((claim === 'exp' || c[claim] !== undefined) && !isNumericDate(c[claim])) {
      throw new HeraldError('TOKEN_INVALID', `the token ${claim} must be a time in seconds since 1970 (up to year 9999)`)
    }
  }
  const exp = c.exp as number
  const iat = c.iat as number | undefined
  // fast-jwt checks iat only with maxAge; a token "issued" in the future would
  // dodge user revocations (iat before revocation), so refuse it here.
  if (iat !== undefined && iat * 1000 > Date.now() + toleranceMs) throw new HeraldError('TOKEN_INVALID', 'the token was issued in the future')
  return {
    userId: c.sub,
    sessionId: typeof sid === 'string' ? sid : null,
    roles: (roles as string[] | undefined) ?? [],
    expiresAt: exp * 1000,
    issuedAt: iat !== undefined ? iat * 1000 : null,
  }
}
