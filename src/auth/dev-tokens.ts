import { createSigner } from 'fast-jwt'

// Development convenience: tokens signed with the boot-generated HS256 secret,
// printed by `npm start` so a newcomer can connect at once.
export function signDevToken (secret: string, claims: { sub: string, sid?: string, roles?: string[] }, ttlMs = 12 * 3600_000): string {
  const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: ttlMs })
  return sign(claims)
}
