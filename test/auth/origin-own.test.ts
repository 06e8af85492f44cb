// The own-origin rule: /ws/admin accepts a browser Origin equal to the
// origin the request was sent to (the dashboard this node serves), whatever
// ALLOWED_ORIGINS lists, and nothing else is loosened: /ws/events still takes
// only listed origins, and a page of another host, port or scheme is refused
// 403 on /ws/admin (CSWSH). Behind a proxy, X-Forwarded-Proto and
// X-Forwarded-Host count only from a peer in TRUSTED_PROXIES.
import t from 'tap'
import { isOwnOrigin, requestOrigin } from '../../src/auth/origin.js'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect, refusal } from '../helpers/client.js'
import { adminToken, userToken } from '../helpers/tokens.js'

t.test('requestOrigin: the scheme and Host as an origin, or null', async (t) => {
  t.equal(requestOrigin('http', '127.0.0.1:3000'), 'http://127.0.0.1:3000')
  t.equal(requestOrigin('https', 'Ops.Example.COM'), 'https://ops.example.com:443', 'host lowercased, default port made explicit')
  t.equal(requestOrigin('http', 'ops.example.com:80'), 'http://ops.example.com:80')
  t.equal(requestOrigin('http', '[::1]:8080'), 'http://[::1]:8080')
  for (const [p, h] of [['http', ''], ['http', undefined], [undefined, 'x.com'], ['ftp', 'x.com'], ['http', 'a b'], ['http', 'x.com/path'], ['http', 'x.com@evil.io'], ['http', 'evil.io#x'], ['http', 'x.com:99999'], ['http', 'x.com, evil.io']] as const) {
    t.equal(requestOrigin(p, h), null, `${String(p)} ${JSON.stringify(h)}: none`)
  }
})

t.test('isOwnOrigin: scheme, host and port equal; anything else is not', async (t) => {
  const own = requestOrigin('https', 'ops.example.com')
  for (const o of ['https://ops.example.com', 'https://OPS.example.com', 'https://ops.example.com:443']) t.equal(isOwnOrigin(o, own), true, `${o} is own`)
  for (const o of ['http://ops.example.com', 'https://ops.example.com:8443', 'https://evil.ops.example.com', 'https://ops.example.com.evil.io', 'https://example.com', 'null', '', 'https://ops.example.com/']) {
    t.equal(isOwnOrigin(o, own), false, `${JSON.stringify(o)} is not`)
  }
  t.equal(isOwnOrigin(undefined, own), false, 'no Origin is not own (the allow list decides)')
  t.equal(isOwnOrigin('https://ops.example.com', null), false, 'no own origin: nothing matches')
})

const LISTED = 'https://app.example.com'
const admin = (n: RunningApp): string => `${n.ws}/ws/admin?token=${adminToken()}`

t.test('on a node without trusted proxies', async (t) => {
  const node = await startApp({ ALLOWED_ORIGINS: LISTED })
  t.teardown(() => node.close())
  const own = node.http // http://127.0.0.1:<port>, what a page of this node has as its Origin

  const c = await connect(admin(node), { headers: { origin: own } })
  t.equal(c.frames[0]?.type, 'welcome', '/ws/admin welcomes its own origin, not listed in ALLOWED_ORIGINS')
  await c.close()
  const listed = await connect(admin(node), { headers: { origin: LISTED } })
  t.equal(listed.frames[0]?.type, 'welcome', 'and still the listed one')
  await listed.close()

  const port = new URL(own).port
  for (const origin of [`http://localhost:${port}`, `https://127.0.0.1:${port}`, `http://127.0.0.1:${Number(port) + 1}`, 'http://127.0.0.1', 'https://evil.example', `http://127.0.0.1:${port}.evil.io`, 'null']) {
    t.match(await refusal(admin(node), { origin }), { status: 403, body: { error: { code: 'ORIGIN_FORBIDDEN' } } }, `/ws/admin refuses ${origin}`)
  }
  t.match(await refusal(`${node.ws}/ws/events?token=${userToken('own-u')}`, { origin: own }), { status: 403, body: { error: { code: 'ORIGIN_FORBIDDEN' } } },
    '/ws/events does not take the node\'s own origin: no page of the node speaks it')
  t.match(await refusal(`${node.ws}/ws/admin?token=${userToken('own-u')}`, { origin: own }), { status: 403, body: { error: { code: 'ROLE_FORBIDDEN' } } },
    'own origin passes the Origin check only: the token still needs role admin')

  // An untrusted peer's forwarding headers are not believed: the node takes http and the Host.
  t.match(await refusal(admin(node), { origin: 'https://ops.example.com', host: 'ops.example.com', 'x-forwarded-proto': 'https' }), { status: 403 },
    'X-Forwarded-Proto from a peer not in TRUSTED_PROXIES is ignored')
  t.match(await refusal(admin(node), { origin: 'http://ops.example.com', 'x-forwarded-host': 'ops.example.com' }), { status: 403 },
    'X-Forwarded-Host from a peer not in TRUSTED_PROXIES is ignored')
})

t.test('behind a trusted proxy that terminates TLS (a page at https://ops.example.com)', async (t) => {
  const node = await startApp({ ALLOWED_ORIGINS: LISTED, TRUSTED_PROXIES: '127.0.0.1' })
  t.teardown(() => node.close())
  const proxied = { host: 'ops.example.com', 'x-forwarded-proto': 'https' }
  for (const origin of ['https://ops.example.com', 'https://ops.example.com:443']) {
    const c = await connect(admin(node), { headers: { ...proxied, origin } })
    t.equal(c.frames[0]?.type, 'welcome', `${origin} through the proxy (Host kept, X-Forwarded-Proto https)`)
    await c.close()
  }
  // A proxy that rewrites Host to the upstream's address says where the client went in X-Forwarded-Host.
  const rewritten = await connect(admin(node), { headers: { host: '10.0.0.5:3000', 'x-forwarded-host': 'ops.example.com', 'x-forwarded-proto': 'https', origin: 'https://ops.example.com' } })
  t.equal(rewritten.frames[0]?.type, 'welcome', 'X-Forwarded-Host from the trusted proxy')
  await rewritten.close()
  for (const origin of ['http://ops.example.com', 'https://ops.example.com:8443', 'https://other.example.com', 'https://evil.example']) {
    t.match(await refusal(admin(node), { ...proxied, origin }), { status: 403, body: { error: { code: 'ORIGIN_FORBIDDEN' } } }, `${origin} refused`)
  }
  t.match(await refusal(`${node.ws}/ws/events?token=${userToken('own-u')}`, { ...proxied, origin: 'https://ops.example.com' }), { status: 403 }, '/ws/events: listed origins only')
})
