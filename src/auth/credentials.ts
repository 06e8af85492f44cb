import { hash, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'
import { HeraldError } from '../errors.js'

/** The bearer token of a request: Authorization header first, then ?token= (throws TOKEN_INVALID when the query gives it twice). */
export function tokenFrom (headers: IncomingHttpHeaders, query: unknown): string | undefined {
  const auth = headers.authorization
  if (typeof auth === 'string') {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(auth)
    if (m) return m[1]
  }
  const t = (query as { token?: unknown } | undefined)?.token
  // `?token=a&token=b` parses to an array: not "no token", and not one to pick.
  if (Array.isArray(t)) throw new HeraldError('TOKEN_INVALID', 'the token is given more than once in the query (?token=…&token=…)')
  return typeof t === 'string' && t.length > 0 ? t : undefined
}

// The one-shot hash: every API request pays it, and it costs about half of
// a Hash object's create, update and digest.
const digest = (s: string): Buffer => hash('sha256', s, 'buffer')

/** Constant-time API key lookup: compares fixed-length digests, so length leaks nothing. */
export function createApiKeyCheck (keys: string[]): (candidate: string) => boolean {
  const digests = keys.map(digest)
  return (candidate) => {
    const d = digest(candidate)
    let ok = false
    for (const k of digests) ok = timingSafeEqual(k, d) || ok
    return ok
  }
}
