import { hash, timingSafeEqual } from 'node:crypto'
import type { IncomingHttpHeaders } from 'node:http'

/** The bearer token of a request: Authorization header first, then ?token=. */
export function tokenFrom (headers: IncomingHttpHeaders, query: unknown): string | undefined {
  const auth = headers.authorization
  if (typeof auth === 'string') {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(auth)
    if (m) return m[1]
  }
  const t = (query as { token?: unknown } | undefined)?.token
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
