import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { tokenFrom } from '../auth/credentials.js'
import { requestOrigin } from '../auth/origin.js'
import type { Herald } from '../context.js'
import { errorBody } from '../errors.js'
import { vet } from '../endpoints/admission.js'
import { AdminVerdict } from '../protocol/schema.js'
import { ICON, PAGE } from './html.js'

// GET /admin: the admin dashboard, served by the node itself. The page is
// static (html.ts) and says nothing about the cluster; its script and style
// sheet are built from src/dashboard/page/ by `npm run build` into
// dist/dashboard/assets/. Every response carries a strict
// Content-Security-Policy: this node's own scripts, styles and images only,
// connections to itself only (its /ws/admin, whose Origin check accepts the
// page's own origin), no framing. POST /admin/verify tells the page whether
// its token would be taken on /ws/admin, and why not.

/** Where `npm run build` puts the page's script and style sheet, from src/dashboard/ and dist/dashboard/ alike. */
const ASSETS = fileURLToPath(new URL('../../dist/dashboard/assets/', import.meta.url))

interface Asset { body: Buffer | string, type: string, etag: string }

const asset = (body: Buffer | string, type: string): Asset => ({ body, type, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 27)}"` })

/** Reads the built assets; null (and the dashboard is not served) when the build did not make them. */
function builtAssets (): Map<string, Asset> | null {
  try {
    return new Map([
      ['dashboard.js', asset(readFileSync(ASSETS + 'dashboard.js'), 'text/javascript; charset=utf-8')],
      ['dashboard.css', asset(readFileSync(ASSETS + 'dashboard.css'), 'text/css; charset=utf-8')],
      ['icon.svg', asset(ICON, 'image/svg+xml')],
    ])
  } catch {
    return null
  }
}

const DEFAULT_PORTS: Record<string, string> = { 'http:': '80', 'https:': '443' }

/**
 * The policy of every /admin response. connect-src names this node's
 * WebSocket origin besides 'self': CSP Level 3 lets 'self' cover ws: and
 * wss: of the same host, older browsers do not.
 */
export function contentSecurityPolicy (own: string | null): string {
  let ws = ''
  if (own !== null) {
    const u = new URL(own)
    ws = ` ${u.protocol === 'https:' ? 'wss:' : 'ws:'}//${u.hostname}${u.port === '' || u.port === DEFAULT_PORTS[u.protocol] ? '' : `:${u.port}`}`
  }
  return [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self'",
    `connect-src 'self'${ws}`,
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ')
}

function secure (req: FastifyRequest, reply: FastifyReply): void {
  reply.header('content-security-policy', contentSecurityPolicy(requestOrigin(req.protocol, req.host)))
  reply.header('x-content-type-options', 'nosniff')
  reply.header('referrer-policy', 'no-referrer')
  reply.header('x-frame-options', 'DENY')
  reply.header('cross-origin-opener-policy', 'same-origin')
  reply.header('cross-origin-resource-policy', 'same-origin')
}

function send (req: FastifyRequest, reply: FastifyReply, a: Asset, cache: string): FastifyReply {
  reply.header('etag', a.etag).header('cache-control', cache).type(a.type)
  if (req.headers['if-none-match'] === a.etag) return reply.code(304).send()
  return reply.send(a.body)
}

export default async function dashboard (app: FastifyInstance): Promise<void> {
  const h: Herald = app.herald
  const assets = builtAssets()
  if (assets === null) {
    h.log.warn({ assets: ASSETS }, 'the admin dashboard was not built (npm run build): GET /admin is not served')
    return
  }
  const page = asset(PAGE, 'text/html; charset=utf-8')
  // Scoped to this plugin's routes: every /admin response, errors included.
  app.addHook('onRequest', async (req, reply) => { secure(req, reply) })

  const hide = { hide: true }
  app.get('/admin', { schema: hide, logLevel: 'warn' }, async (req, reply) => send(req, reply, page, 'no-cache'))
  app.get<{ Params: { name: string } }>('/admin/assets/:name', { schema: hide, logLevel: 'warn' }, async (req, reply) => {
    const a = assets.get(req.params.name)
    if (a === undefined) return await reply.code(404).send(errorBody('NOT_FOUND'))
    return send(req, reply, a, 'no-cache')
  })

  app.post('/admin/verify', {
    schema: {
      summary: 'Whether /ws/admin of this node would take this token now (the dashboard\'s sign-in): every handshake check but the connection slot',
      description: 'A browser sees a refused WebSocket handshake only as a close, without the refusal; this answers with it. The token goes in `Authorization: Bearer`. The answer is 200 either way: the verdict is the body.',
      tags: ['admin'],
      response: { 200: AdminVerdict },
    },
  }, async (req) => {
    const v = await vet(h, {
      endpoint: 'admin',
      transport: 'ws',
      origin: req.headers.origin,
      ownOrigin: requestOrigin(req.protocol, req.host),
      token: tokenFrom(req.headers, undefined),
      ip: req.ip,
      log: req.log,
    })
    if (!v.ok) return { ok: false, error: errorBody(v.code, v.message).error }
    const { identity } = v
    return { ok: true, userId: identity.userId, expiresAt: Number.isFinite(identity.expiresAt) ? new Date(identity.expiresAt).toISOString() : null }
  })
}
