import type { Herald } from '../context.js'
import { CloseCodes } from '../protocol/close-codes.js'
import type { Connection } from './connection.js'

// setTimeout cannot wait longer than ~24.8 days; longer deadlines re-arm.
const MAX_DELAY = 2 ** 31 - 1

/**
 * Arms the connection's one timer: `auth_expiring` at exp - AUTH_EXPIRY_WARNING,
 * then `auth_expired` and 4001 at exp. A refresh re-arms it.
 */
export function armExpiry (h: Herald, c: Connection): void {
  if (c.expiryTimer) clearTimeout(c.expiryTimer)
  if (c.closed) return
  const exp = c.identity.expiresAt
  const warnAt = exp - h.config.authExpiryWarningMs
  const now = Date.now()
  const warned = c.warnedFor === exp
  const due = warned || warnAt <= now ? exp : warnAt
  c.expiryTimer = setTimeout(() => {
    c.expiryTimer = null
    if (c.closed || c.identity.expiresAt !== exp) return
    const t = Date.now()
    if (t >= exp) {
      c.reply('auth_expired', { expiredAt: new Date(exp).toISOString() })
      c.close(CloseCodes.AUTH_EXPIRED, 'authentication expired')
      return
    }
    if (t >= warnAt && c.warnedFor !== exp) {
      c.warnedFor = exp
      c.reply('auth_expiring', { expiresAt: new Date(exp).toISOString(), expiresIn: exp - t })
    }
    armExpiry(h, c)
  }, Math.min(MAX_DELAY, Math.max(0, due - now)))
  c.expiryTimer.unref()
}
