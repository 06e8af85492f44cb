import type { IncomingMessage } from 'node:http'
import { isIP } from 'node:net'

/**
 * Cuts X-Forwarded-For at its first entry, reading from the nearest hop
 * (the right), that is not a bare IP address: that entry and everything
 * further left are dropped. proxy-addr (Fastify's trustProxy, and Socket.IO's
 * address in endpoints/socketio.ts) then walks only real addresses, so the
 * client address is the nearest one a trusted hop vouched for: with a bad
 * nearest entry, the peer itself. An address is a Redis key (per-IP limits),
 * a log field and an admin listing: never an arbitrary string. Idempotent.
 */
export function withValidForwardedFor<R extends IncomingMessage> (req: R): R {
  const header = req.headers['x-forwarded-for']
  if (typeof header !== 'string') return req
  const entries = header.split(',')
  let keep = entries.length
  while (keep > 0 && isIP(entries[keep - 1]!.trim()) !== 0) keep--
  if (keep === 0) return req
  const valid = entries.slice(keep)
  if (valid.length === 0) delete req.headers['x-forwarded-for']
  else req.headers['x-forwarded-for'] = valid.join(',')
  return req
}
