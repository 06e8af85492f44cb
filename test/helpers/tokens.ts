import { createSigner } from 'fast-jwt'

export const TEST_SECRET = 'test-secret-that-is-at-least-32-characters-long'
export const TEST_API_KEY = 'test-api-key-0123456789abcdef'

export interface Claims { sub?: string, sid?: string, roles?: string[], iat?: number, exp?: number, [k: string]: unknown }

/** HS256 token with the test secret; expires in an hour unless claims say otherwise. */
export function token (claims: Claims, opts: { expiresInMs?: number, key?: string, noTimestamp?: boolean } = {}): string {
  const sign = createSigner({
    key: opts.key ?? TEST_SECRET,
    algorithm: 'HS256',
    ...(claims.exp === undefined && opts.expiresInMs !== 0 ? { expiresIn: opts.expiresInMs ?? 3600_000 } : {}),
    noTimestamp: opts.noTimestamp ?? false,
  })
  return sign(claims)
}

export const userToken = (sub: string, sid = `${sub}-session`, extra: Claims = {}): string => token({ sub, sid, roles: ['user'], ...extra })
export const adminToken = (sub = 'admin-1'): string => token({ sub, sid: `${sub}-session`, roles: ['admin'] })
export const serviceToken = (sub = 'svc-1'): string => token({ sub, roles: ['service'] })
