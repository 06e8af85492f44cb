import { RefusalReconnect } from '../../protocol/close-codes.js'

// The operator's admin token: in this tab's session storage only (never local
// storage, never a cookie: nothing the browser would send by itself), sent to
// the node as ?token= on the /ws/admin URL, since a browser's WebSocket
// cannot carry an Authorization header.

const KEY = 'herald.admin.token'

export function storedToken (): string | null {
  try { return sessionStorage.getItem(KEY) } catch { return null }
}

export function storeToken (token: string): void {
  sessionStorage.setItem(KEY, token)
}

export function forgetToken (): void {
  try { sessionStorage.removeItem(KEY) } catch {}
}

/** The token's `exp` in ms, read without verifying (the node verifies); null when it has none or is not a JWT. */
export function expiryOf (token: string): number | null {
  const part = token.split('.')[1]
  if (part === undefined) return null
  try {
    const json = atob(part.replace(/-/g, '+').replace(/_/g, '/').padEnd(Math.ceil(part.length / 4) * 4, '='))
    const exp = (JSON.parse(json) as { exp?: unknown }).exp
    return typeof exp === 'number' && Number.isFinite(exp) ? exp * 1000 : null
  } catch { return null }
}

export type Verdict =
  | { ok: true, userId: string, expiresAt: string | null }
  | { ok: false, error: { code: string, message: string } }

/**
 * Asks the node whether it would take this token on /ws/admin now, and if
 * not, why: a browser sees a refused WebSocket handshake only as a close
 * (1006), without the node's answer.
 */
export async function verify (token: string): Promise<Verdict> {
  let res: Response
  try {
    res = await fetch('/admin/verify', { method: 'POST', headers: { authorization: `Bearer ${token}` }, credentials: 'omit', cache: 'no-store' })
  } catch {
    return { ok: false, error: { code: 'UNREACHABLE', message: 'the node did not answer' } }
  }
  try {
    return await res.json() as Verdict
  } catch {
    return { ok: false, error: { code: `HTTP_${res.status}`, message: `the node answered ${res.status}` } }
  }
}

/**
 * A refusal that retrying with this token cannot fix (the client SDK's
 * policy `stop`, or `new-token`: the page has no other token to try).
 */
export function finalRefusal (code: string): boolean {
  const policy = Object.hasOwn(RefusalReconnect, code) ? RefusalReconnect[code as keyof typeof RefusalReconnect] : undefined
  return policy === 'stop' || policy === 'new-token'
}
