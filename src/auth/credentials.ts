import { createHash, timingSafeEqual } from 'node:crypto'
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

const digest = (s: string): Buffer => createHash('sha256').update(s).digest()

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
