import { createPublicKey } from 'node:crypto'
import { createVerifier, TokenError } from 'fast-jwt'
import type { Config } from '../config/index.js'
import { HeraldError } from '../errors.js'
import { GROUP_RULE, isGroupName } from '../protocol/groups.js'
import { ID_RULE, isId } from '../protocol/identifiers.js'
import { parsePattern, PATTERN_RULE } from '../protocol/patterns.js'
import { createJwksLookup, type JwksOptions } from './jwks.js'

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
  /** the `publish` claim: event type patterns this token may publish (absent: none) */
  publish?: readonly string[]
  /** the `groups` claim: groups the token's subject is a member of for the token's life */
  groups?: readonly string[]
}

/** Patterns in a `publish` claim and names in a `groups` claim, at most. */
export const MAX_CLAIM_ITEMS = 100

/**
 * Why a token was refused, for what watches refusals (src/gateway-events/):
 * a bad signature or an algorithm the node does not accept is someone
 * trying a token they did not get from the issuer, unlike an expired one.
 */
export type TokenRefusal = 'malformed' | 'algorithm' | 'signature' | 'expired' | 'claims' | 'key'

/** A token refused (TOKEN_INVALID or TOKEN_EXPIRED), with why. */
export class TokenRefused extends HeraldError {
  constructor (code: 'TOKEN_INVALID' | 'TOKEN_EXPIRED', readonly reason: TokenRefusal, message?: string) {
    super(code, message)
  }
}

/** fast-jwt's verdict, as a TokenRefusal. */
function refusalOf (code: string): TokenRefusal {
  const c = TokenError.codes
  if (code === c.expired) return 'expired'
  if (code === c.invalidSignature || code === c.missingSignature || code === c.verifyError) return 'signature'
  if (code === c.invalidAlgorithm) return 'algorithm'
  if (code === c.malformed || code === c.invalidType || code === c.invalidPayload || code === c.invalidCritHeader) return 'malformed'
  if (code === c.missingKey || code === c.keyFetchingError || code === c.invalidKey) return 'key'
  return 'claims'
}

export interface TokenVerifier {
  verify (token: string): Promise<Identity>
}

type VerifyFn = (token: string) => Promise<Record<string, unknown>> | Record<string, unknown>

const MAX_TOKEN_LENGTH = 8192

/**
 * Tokens whose verdict a verifier keeps, and the characters of token they
 * may hold together (about 2 bytes each): whichever bound is reached first
 * drops the least recently used. 16k typical tokens (~300 chars) fit both.
 */
export const VERIFIED_CACHE_ENTRIES = 16_384
export const VERIFIED_CACHE_CHARS = 8 * 2 ** 20
/** A JWKS-verified token is verified again after this long: its key may have left the set. */
export const JWKS_VERIFIED_TTL_MS = 10 * 60_000

/**
 * Identities of tokens verified already, by the token itself, each until
 * its expiry (the clock tolerance included, as fast-jwt counts it). A
 * reconnecting client presents the token it connected with; hashing it, as
 * fast-jwt's own cache does, costs about what an HS256 check does, so this
 * is looked up first, by the string. Only valid tokens are kept: a refusal
 * is recomputed, and so says why every time.
 */
class VerifiedTokens {
  private readonly entries = new Map<string, { identity: Identity, until: number }>()
  private chars = 0

  constructor (private readonly maxEntries: number, private readonly maxChars: number) {}

  get (token: string, now: number): Identity | undefined {
    const e = this.entries.get(token)
    if (e === undefined) return undefined
    this.entries.delete(token)
    if (now >= e.until) { this.chars -= token.length; return undefined }
    this.entries.set(token, e) // the most recently used, last
    return e.identity
  }

  set (token: string, identity: Identity, until: number): void {
    const prev = this.entries.get(token)
    if (prev !== undefined) { this.entries.delete(token); this.chars -= token.length }
    this.entries.set(token, { identity, until })
    this.chars += token.length
    for (const k of this.entries.keys()) {
      if (this.entries.size <= this.maxEntries && this.chars <= this.maxChars) break
      this.entries.delete(k)
      this.chars -= k.length
    }
  }
}

/** The cached identity, as a copy: a caller may keep it, and another connection must not see its changes. */
const copyOf = (i: Identity): Identity => ({ ...i, roles: [...i.roles] })

/**
 * Verifies access tokens with pinned algorithms. The header's `alg` only picks
 * which pinned verifier runs; each verifier accepts its own algorithm and no
 * other, so `none` and HS/RS confusion fail in fast-jwt itself.
 */
export function createTokenVerifier (jwt: Config['jwt'], opts: { jwks?: JwksOptions } = {}): TokenVerifier {
  const decode = (header: string): unknown => {
    const h: unknown = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'))
    if (typeof h !== 'object' || h === null) throw new Error('not a JOSE header')
    return h
  }
  const common = {
    // fast-jwt checks iss/aud only when present; a configured issuer/audience must also be required.
    requiredClaims: ['exp', 'sub', ...(jwt.issuer !== undefined ? ['iss'] : []), ...(jwt.audience !== undefined ? ['aud'] : [])],
    clockTolerance: jwt.clockToleranceMs,
    allowedIss: jwt.issuer,
    allowedAud: jwt.audience,
    // Valid tokens are cached here (VerifiedTokens), by the string; fast-jwt's
    // cache would hash every token first, a fifth of an HS256 verification,
    // and would keep refusals, which must be recomputed (a key lookup that
    // failed while the identity provider was unreachable must not stick).
    cache: false,
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
  const fromJwks = new Set<string>()
  const jwksOnly = (alg: string): boolean => fromJwks.has(alg)
  if (jwt.jwksUrl !== undefined) {
    const lookup = createJwksLookup(new URL(jwt.jwksUrl), opts.jwks)
    for (const alg of ['RS256', 'ES256'] as const) {
      if (byAlg.has(alg)) continue
      fromJwks.add(alg)
      const key = async ({ header }: { header: { kid?: unknown } }): Promise<string> => await lookup(header.kid, alg)
      byAlg.set(alg, createVerifier({ ...common, algorithms: [alg], key }))
    }
  }

  const verified = new VerifiedTokens(VERIFIED_CACHE_ENTRIES, VERIFIED_CACHE_CHARS)

  return {
    async verify (token: string): Promise<Identity> {
      if (token.length === 0 || token.length > MAX_TOKEN_LENGTH) throw new TokenRefused('TOKEN_INVALID', 'malformed')
      const now = Date.now()
      const known = verified.get(token, now)
      if (known !== undefined) return copyOf(known)
      let alg: unknown
      try {
        // The header alone picks the verifier; fast-jwt decodes and checks the rest.
        alg = (decode(token.slice(0, token.indexOf('.') >>> 0)) as { alg?: unknown }).alg
      } catch {
        throw new TokenRefused('TOKEN_INVALID', 'malformed', 'the access token is malformed')
      }
      const verify = typeof alg === 'string' ? byAlg.get(alg) : undefined
      if (verify === undefined) throw new TokenRefused('TOKEN_INVALID', 'algorithm', `tokens signed with ${JSON.stringify(alg)} are not accepted`)
      let claims: Record<string, unknown>
      try {
        claims = await verify(token)
      } catch (err) {
        if (err instanceof TokenError && err.code === TokenError.codes.expired) throw new TokenRefused('TOKEN_EXPIRED', 'expired')
        // The key lookup's own verdict: an unknown kid, or an identity provider we cannot reach (503, not 401).
        const cause = (err as { originalError?: unknown }).originalError
        if (cause instanceof HeraldError) throw cause.code === 'TOKEN_INVALID' && !(cause instanceof TokenRefused) ? new TokenRefused('TOKEN_INVALID', 'key', cause.message) : cause
        throw new TokenRefused('TOKEN_INVALID', err instanceof TokenError ? refusalOf(err.code) : 'claims')
      }
      const identity = identityOf(claims, jwt.clockToleranceMs)
      // fast-jwt refuses from exp + tolerance on; a key from a JWKS is trusted as long as the lookup caches it.
      const until = identity.expiresAt + jwt.clockToleranceMs
      verified.set(token, identity, jwksOnly(alg as string) ? Math.min(until, now + JWKS_VERIFIED_TTL_MS) : until)
      return copyOf(identity)
    },
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
  if (!isId(c.sub)) throw new TokenRefused('TOKEN_INVALID', 'claims', `the token subject (sub) must be ${ID_RULE}`)
  const sid = c.sid
  if (sid !== undefined && !isId(sid)) throw new TokenRefused('TOKEN_INVALID', 'claims', `the token session id (sid) must be ${ID_RULE}`)
  const roles = c.roles
  if (roles !== undefined && (!Array.isArray(roles) || roles.length > 64 || !roles.every((r) => typeof r === 'string' && r.length <= 64))) {
    throw new TokenRefused('TOKEN_INVALID', 'claims', 'the token roles claim must be an array of strings')
  }
  for (const claim of ['exp', 'iat', 'nbf'] as const) {
    if ((claim === 'exp' || c[claim] !== undefined) && !isNumericDate(c[claim])) {
      throw new TokenRefused('TOKEN_INVALID', 'claims', `the token ${claim} must be a time in seconds since 1970 (up to year 9999)`)
    }
  }
  const exp = c.exp as number
  const iat = c.iat as number | undefined
  // fast-jwt checks iat only with maxAge; a token "issued" in the future would
  // dodge user revocations (iat before revocation), so refuse it here.
  if (iat !== undefined && iat * 1000 > Date.now() + toleranceMs) throw new TokenRefused('TOKEN_INVALID', 'claims', 'the token was issued in the future')
  const publish = listClaim(c.publish, 'publish', (p) => parsePattern(p) !== null, `event type patterns (${PATTERN_RULE})`)
  const groups = listClaim(c.groups, 'groups', isGroupName, `group names (${GROUP_RULE})`)
  const identity: Identity = {
    userId: c.sub,
    sessionId: typeof sid === 'string' ? sid : null,
    roles: (roles as string[] | undefined) ?? [],
    expiresAt: exp * 1000,
    issuedAt: iat !== undefined ? iat * 1000 : null,
  }
  if (publish !== undefined) identity.publish = publish
  if (groups !== undefined) identity.groups = groups
  return identity
}

/** A claim that is a list of strings of one shape: refused whole when one item is not, so a typo never grants less (or more) than meant silently. */
function listClaim (v: unknown, name: string, ok: (item: string) => boolean, what: string): string[] | undefined {
  if (v === undefined) return undefined
  if (!Array.isArray(v) || v.length > MAX_CLAIM_ITEMS || !v.every((x) => typeof x === 'string' && ok(x))) {
    throw new TokenRefused('TOKEN_INVALID', 'claims', `the token ${name} claim must be an array of at most ${MAX_CLAIM_ITEMS} ${what}`)
  }
  return [...new Set(v as string[])]
}
