import type { IncomingMessage } from 'node:http'
import proxyaddr from 'proxy-addr'
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

/** Where a request came from, read as Fastify's trustProxy reads it. */
export interface ClientAddress {
  /** the client address: the nearest one a trusted hop vouched for, or the peer */
  readonly ip: string
  /** the scheme the client used: X-Forwarded-Proto from a trusted peer, else the socket's */
  protocol (): string
  /** the host the client asked for: X-Forwarded-Host from a trusted peer, else Host ('' without) */
  host (): string
}

// A header a proxy may have sent more than once, or as a list: its last entry, the nearest hop's.
const lastEntry = (v: string): string => v.slice(v.lastIndexOf(',') + 1).trim()

/**
 * The client address of requests Fastify does not route (the WebSocket
 * upgrades, Socket.IO), by the rules of Fastify's request.ip, .protocol and
 * .host under the same TRUSTED_PROXIES, so a client has one address
 * whichever way it came in. X-Forwarded-For is cut to valid entries first.
 */
export function clientAddress (trustedProxies: readonly string[]): (req: IncomingMessage) => ClientAddress {
  const trust = proxyaddr.compile([...trustedProxies])
  const trusting = trustedProxies.length > 0
  return (req) => {
    const socket = req.socket
    const peerTrusted = (): boolean => trusting && trust(socket.remoteAddress ?? '', 0)
    return {
      ip: trusting ? proxyaddr(withValidForwardedFor(req), trust) : socket.remoteAddress ?? '',
      protocol: () => {
        const p = req.headers['x-forwarded-proto']
        if (typeof p === 'string' && p !== '' && peerTrusted()) return lastEntry(p)
        return (socket as { encrypted?: boolean }).encrypted === true ? 'https' : 'http'
      },
      host: () => {
        const fh = req.headers['x-forwarded-host']
        if (typeof fh === 'string' && fh !== '' && peerTrusted()) return lastEntry(fh)
        return req.headers.host ?? ''
      },
    }
  }
}
