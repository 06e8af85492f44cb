// GET /admin as a browser fetches it, and the sign-in check: the page and
// its assets come from the node with a strict Content-Security-Policy and say
// nothing about the cluster; POST /admin/verify answers whether /ws/admin
// would take a token, and why not, with the handshake's own checks and
// without taking a connection slot. (test/dashboard/dashboard.test.ts drives
// the page in Chromium.)
import { readFileSync } from 'node:fs'
import t, { type Test } from 'tap'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { adminToken, token, userToken } from '../helpers/tokens.js'

const LISTED = 'https://app.example.com'
const node = await startApp({ ALLOWED_ORIGINS: LISTED, MAX_CONNECTIONS_PER_USER: '1' })
t.teardown(() => node.close())
const serverId = node.app.herald.config.serverId

const get = async (path: string, headers: Record<string, string> = {}): Promise<Response> => await fetch(node.http + path, { headers })

function policy (res: Response): Map<string, string> {
  const csp = res.headers.get('content-security-policy') ?? ''
  return new Map(csp.split(';').map((d) => d.trim()).filter(Boolean).map((d) => { const [k, ...v] = d.split(/\s+/); return [k!, v.join(' ')] }))
}

function strictHeaders (t: Test, res: Response, ws = `ws://127.0.0.1:${new URL(node.http).port}`): void {
  const p = policy(res)
  t.equal(p.get('default-src'), "'self'")
  t.equal(p.get('script-src'), "'self'", 'scripts: this node only; no unsafe-eval, no unsafe-inline')
  t.equal(p.get('style-src'), "'self'", 'styles: this node only; no inline style')
  t.equal(p.get('connect-src'), `'self' ${ws}`, 'connections: this node, its WebSocket origin named for older browsers')
  t.equal(p.get('frame-ancestors'), "'none'", 'never framed')
  t.equal(p.get('object-src'), "'none'")
  t.equal(p.get('base-uri'), "'none'")
  t.notMatch(res.headers.get('content-security-policy'), /unsafe|\*|https?:\/\/|data:/, 'no unsafe keyword, wildcard, other origin or data:')
  t.equal(res.headers.get('x-content-type-options'), 'nosniff')
  t.equal(res.headers.get('referrer-policy'), 'no-referrer')
  t.equal(res.headers.get('x-frame-options'), 'DENY')
}

t.test('the page: static markup, nothing about the cluster, nothing inline, nothing from elsewhere', async (t) => {
  const res = await get('/admin')
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/html; charset=utf-8/)
  strictHeaders(t, res)
  const html = await res.text()
  for (const secret of [serverId, node.app.herald.version, new URL(node.http).port, '127.0.0.1', 'redis']) {
    t.notOk(html.includes(secret), `the HTML does not hold ${JSON.stringify(secret)}`)
  }
  const scripts = [...html.matchAll(/<script\b([^>]*)>([\s\S]*?)<\/script>/g)]
  t.ok(scripts.length > 0 && scripts.every((m) => /\bsrc="\/admin\/assets\/[a-z.]+"/.test(m[1]!) && m[2]!.trim() === ''), 'every script is a file of this node, none inline')
  t.notMatch(html, /<style|\sstyle=|\son[a-z]+=|javascript:/i, 'no inline style or event handler attribute')
  const refs = [...html.matchAll(/\b(?:src|href|action)="([^"]*)"/g)].map((m) => m[1]!)
  t.ok(refs.length >= 3 && refs.every((r) => r.startsWith('/admin/') || r.startsWith('#')), `every reference is this node's /admin/ or the page itself: ${refs.join(' ')}`)

  // What the page loads: built at npm run build, served with the same policy.
  for (const [name, type] of [['dashboard.js', /^text\/javascript/], ['dashboard.css', /^text\/css/], ['icon.svg', /^image\/svg\+xml/]] as const) {
    const a = await get(`/admin/assets/${name}`)
    t.equal(a.status, 200, name)
    t.match(a.headers.get('content-type'), type)
    strictHeaders(t, a)
    const etag = a.headers.get('etag')!
    t.equal((await get(`/admin/assets/${name}`, { 'if-none-match': etag })).status, 304, `${name}: 304 when unchanged`)
  }
  const js = await (await get('/admin/assets/dashboard.js')).text()
  t.equal(js, readFileSync(new URL('../../dist/dashboard/assets/dashboard.js', import.meta.url), 'utf8'), 'the script is the build\'s')
  t.notMatch(js, /\beval\(|new Function\(|\bimport\(/, 'no eval, no code from strings, no dynamic import')
  t.notMatch(js, /localStorage\.setItem\([^)]*token/i, 'the token never goes to local storage')
  t.notMatch(js, /document\.cookie/, 'nor to a cookie')
  const missing = await get('/admin/assets/../../package.json')
  t.not(missing.status, 200, 'no path outside the assets')
  t.equal((await get('/admin/assets/main.ts')).status, 404)
})

t.test('behind a trusted proxy the policy names the wss: origin the browser used', async (t) => {
  const proxied = await startApp({ TRUSTED_PROXIES: '127.0.0.1' })
  t.teardown(() => proxied.close())
  // (fetch sets Host itself: the proxy's X-Forwarded-Host says where the browser went.)
  const res = await fetch(proxied.http + '/admin', { headers: { 'x-forwarded-host': 'ops.example.com', 'x-forwarded-proto': 'https' } })
  t.equal(policy(res).get('connect-src'), "'self' wss://ops.example.com")
  const odd = await fetch(proxied.http + '/admin', { headers: { 'x-forwarded-host': 'ops.example.com:8443', 'x-forwarded-proto': 'https' } })
  t.equal(policy(odd).get('connect-src'), "'self' wss://ops.example.com:8443")
})

async function verify (n: RunningApp, tok: string | null, origin?: string): Promise<any> {
  const headers: Record<string, string> = {}
  if (tok !== null) headers.authorization = `Bearer ${tok}`
  if (origin !== undefined) headers.origin = origin
  const res = await fetch(n.http + '/admin/verify', { method: 'POST', headers })
  t.equal(res.status, 200, 'the verdict is the answer: 200 either way')
  return await res.json()
}

t.test('POST /admin/verify: the handshake\'s checks and its refusals, in words', async (t) => {
  const own = node.http
  const ok = await verify(node, adminToken('verify-ops'), own)
  t.same(ok.ok, true)
  t.equal(ok.userId, 'verify-ops')
  t.ok(Date.parse(ok.expiresAt) > Date.now(), 'with the token\'s expiry')
  t.match(await verify(node, userToken('verify-u'), own), { ok: false, error: { code: 'ROLE_FORBIDDEN' } })
  t.match(await verify(node, null, own), { ok: false, error: { code: 'TOKEN_MISSING' } })
  t.match(await verify(node, 'not.a.jwt', own), { ok: false, error: { code: 'TOKEN_INVALID', message: /./ } })
  t.match(await verify(node, token({ sub: 'verify-ops', roles: ['admin'], exp: Math.floor(Date.now() / 1000) - 60 }), own), { ok: false, error: { code: 'TOKEN_EXPIRED' } })
  t.match(await verify(node, adminToken('verify-ops'), 'https://evil.example'), { ok: false, error: { code: 'ORIGIN_FORBIDDEN' } }, 'a page of another origin is refused as its socket would be')
  t.match(await verify(node, adminToken('verify-ops'), LISTED), { ok: true }, 'a listed origin is taken')
  t.match(await verify(node, adminToken('verify-ops')), { ok: true }, 'no Origin (not a browser) is taken')

  const revoked = adminToken('verify-revoked')
  const r = await node.api('/api/users/verify-revoked/revoke', { method: 'POST' })
  t.equal(r.status, 200)
  t.match(await verify(node, revoked, own), { ok: false, error: { code: 'SESSION_REVOKED' } })

  const metrics = await (await fetch(node.http + '/metrics')).text()
  t.match(metrics, /herald_auth_failures_total\{[^}]*endpoint="admin"[^}]*reason="ROLE_FORBIDDEN"[^}]*\} 1/, 'a refused sign-in counts as a refused admin handshake')
})

t.test('verify takes no connection slot', async (t) => {
  // One connection per user on this node: a check that held a slot would refuse the real connection.
  const tok = adminToken('verify-slot')
  for (let i = 0; i < 5; i++) t.match(await verify(node, tok, node.http), { ok: true })
  const c = await connect(`${node.ws}/ws/admin?token=${tok}`, { headers: { origin: node.http } })
  t.equal(c.frames[0]?.type, 'welcome', 'the connection after five checks is admitted')
  t.match(await verify(node, tok, node.http), { ok: true }, 'and a check while it is open does not count against the limit')
  await c.close()
})
