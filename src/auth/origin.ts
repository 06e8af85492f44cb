// Browser Origin check against ALLOWED_ORIGINS, before any upgrade (a page on
// another site must not open a socket with its visitor's token): exact entries and
// `scheme://*.domain[:port]` wildcards. Comparison is on parsed parts, never on
// substrings, so `https://app.example.com.evil.io` and `https://evil-example.com`
// fail for `https://*.example.com`.

interface Rule { scheme: string, port: string, host: string, wildcard: boolean }

const DEFAULT_PORTS: Record<string, string> = { 'http:': '80', 'https:': '443' }

function parseOrigin (origin: string): { scheme: string, host: string, port: string } | null {
  // WHATWG URL is lenient (strips tabs and edge spaces, accepts `https:host`, backslashes,
  // an empty `?`, `#` or port, `*` and %-escapes in hosts); an Origin is exactly scheme://host[:port].
  if (!/^[a-z][a-z0-9+.-]*:\/\/(?:\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::\d{1,5})?$/i.test(origin)) return null
  let u: URL
  try { u = new URL(origin) } catch { return null }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null
  // An Origin is scheme://host[:port] and nothing else.
  if (u.username !== '' || u.password !== '' || (u.pathname !== '/' && u.pathname !== '') || u.search !== '' || u.hash !== '') return null
  if (origin.endsWith('/')) return null
  return { scheme: u.protocol, host: u.hostname.toLowerCase(), port: u.port === '' ? DEFAULT_PORTS[u.protocol]! : u.port }
}

export type OriginCheck = (origin: string | undefined) => boolean

/**
 * The origin a request was sent to, as a page this node served at that
 * address has it: the scheme and the host the client used. A node speaks
 * no TLS, so the scheme is `http`, unless a proxy in TRUSTED_PROXIES (the
 * nearest hop) says otherwise in X-Forwarded-Proto; the host is the Host
 * header, or that proxy's X-Forwarded-Host. `protocol` and `host` are what
 * Fastify's request.protocol and request.host make of exactly that. Null when
 * they do not make an origin (no Host, a scheme other than http/https).
 */
export function requestOrigin (protocol: string | undefined, host: string | undefined): string | null {
  if (protocol === undefined || host === undefined || host === '') return null
  const origin = `${protocol.toLowerCase()}://${host}`
  const p = parseOrigin(origin)
  // URL keeps an IPv6 host in brackets, as an Origin writes it.
  return p === null ? null : `${p.scheme}//${p.host}:${p.port}`
}

/**
 * True when a browser's Origin is the request's own origin (requestOrigin):
 * the page that opens the socket was served from the address the socket goes
 * to. Scheme, host and port compare equal after the same parsing as
 * ALLOWED_ORIGINS entries (case, default ports). No Origin is not a match:
 * such clients are not browsers and the allow list already admits them.
 */
export function isOwnOrigin (origin: string | undefined, own: string | null): boolean {
  if (origin === undefined || own === null) return false
  const o = parseOrigin(origin)
  const s = parseOrigin(own)
  return o !== null && s !== null && o.scheme === s.scheme && o.host === s.host && o.port === s.port
}

/** allowed === null allows every origin (development default). */
export function createOriginCheck (allowed: string[] | null): OriginCheck {
  if (allowed === null) return () => true
  const rules: Rule[] = allowed.map((entry) => {
    const wildcard = /^[a-z]+:\/\/\*\./i.test(entry)
    const p = parseOrigin(wildcard ? entry.replace('*.', 'wildcard.') : entry)
    if (p === null) throw new Error(`invalid ALLOWED_ORIGINS entry ${entry}`)
    return { scheme: p.scheme, port: p.port, host: wildcard ? p.host.slice('wildcard.'.length) : p.host, wildcard }
  })
  return (origin) => {
    // No Origin: a server, agent or CLI, which CSWSH cannot impersonate.
    if (origin === undefined) return true
    const o = parseOrigin(origin)
    if (o === null) return false
    for (const r of rules) {
      if (r.scheme !== o.scheme || r.port !== o.port) continue
      if (r.wildcard ? o.host.endsWith('.' + r.host) && o.host.length > r.host.length + 1 : o.host === r.host) return true
    }
    return false
  }
}
