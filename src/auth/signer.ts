import { createSigner } from 'fast-jwt'

export interface TokenClaims {
  sub: string
  sid?: string
  roles?: string[]
  iss?: string
  aud?: string
  /** event type patterns the token may publish */
  publish?: string[]
  /** groups its subject is a member of for the token's life */
  groups?: string[]
}

/**
 * The one way Herald signs access tokens: HS256 with the shared secret, for
 * the development banner and `herald token`. fast-jwt adds iat and exp (the
 * verifier requires exp), so a token never outlives ttlMs.
 */
export function signToken (secret: string, claims: TokenClaims, ttlMs: number): string {
  const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: ttlMs })
  return sign({ ...claims })
}
