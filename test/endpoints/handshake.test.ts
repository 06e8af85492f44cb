// Handshake refusals: every refusal is a plain HTTP response before
// any 101, with a JSON body {error:{code,message}}; accepted handshakes welcome.
import t, { type Test } from 'tap'
import { startApp } from '../helpers/app.js'
import { connect, refusal, type Refusal } from '../helpers/client.js'
import { adminToken, token, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

// Room enough that limits other suites may add never interfere here.
const ROOMY = { MAX_CONNECTIONS_PER_IP: '1000', MAX_CONNECTIONS_PER_USER: '1000', MAX_MESSAGES_PER_MINUTE: '100000' }

const b64url = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url')
const q = (tok: string): string => `?token=${encodeURIComponent(tok)}`

function refusedWith (t: Test, r: Refusal, status: number, code: string): void {
  t.equal(r.status, status, `HTTP ${status}`)
  t.match(String(r.headers['content-type']), /application\/json/, 'JSON body')
  t.equal(r.body?.error?.code, code, `code ${code}`)
  t.type(r.body?.error?.message, 'string', 'a message')
  t.ok(r.body.error.message.length > 0, 'message not empty')
  t.equal(r.headers.upgrade, undefined, 'no upgrade header: never switched protocols')
}

t.test('401 TOKEN_MISSING with neither header nor query', async (t) => {
  const node = await startApp(ROOMY)
  t.teardown(() => node.close())
  refusedWith(t, await refusal(`${node.ws}/ws/events`), 401, 'TOKEN_MISSING')
  refusedWith(t, await refusal(`${node.ws}/ws/events?token=`), 401, 'TOKEN_MISSING')
  refusedWith(t, await refusal(`${node.ws}/ws/admin`), 401, 'TOKEN_MISSING')
  // A non-Bearer Authorization is no token either.
  refusedWith(t, await refusal(`${node.ws}/ws/events`, { authorization: `Basic ${Buffer.from('a:b').toString('base64')}` }), 401, 'TOKEN_MISSING')
})

t.test('401 TOKEN_INVALID: garbage, wrong secret, alg none, bad signature', async (t) => {
  const node = await startApp(ROOMY)
  t.teardown(() => node.close())
  const url = `${node.ws}/ws/events`

  refusedWith(t, await refusal(url + q('garbage')), 401, 'TOKEN_INVALID')
  refusedWith(t, await refusal(url + q('a.b.c')), 401, 'TOKEN_INVALID')
  refusedWith(t, await refusal(url, { authorization: 'Bearer not-a-jwt-at-all' }), 401, 'TOKEN_INVALID')

  const wrongSecret = token({ sub: 'alice', roles: ['user'] }, { key: 'another-secret-that-is-at-least-32-characters' })
  refusedWith(t, await refusal(url + q(wrongSecret)), 401, 'TOKEN_INVALID')
  refusedWith(t, await refusal(url, { authorization: `Bearer ${wrongSecret}` }), 401, 'TOKEN_INVALID')

  const now = Math.floor(Date.now() / 1000)
  const claims = { sub: 'alice', sid: 's1', roles: ['admin'], iat: now, exp: now + 3600 }
  const algNone = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url(claims)}.`
  refusedWith(t, await refusal(url + q(algNone)), 401, 'TOKEN_INVALID')
  refusedWith(t, await refusal(`${node.ws}/ws/admin` + q(algNone)), 401, 'TOKEN_INVALID')
  const algNoneUpper = `${b64url({ alg: 'NONE', typ: 'JWT' })}.${b64url(claims)}.`
  refusedWith(t, await refusal(url + q(algNoneUpper)), 401, 'TOKEN_INVALID')

  // A valid token whose payload was swapped keeps a signature that no longer matches.
  const good = userToken('alice')
  const [h, , s] = good.split('.')
  const tampered = `${h}.${b64url({ ...claims, sub: 'mallory' })}.${s}`
  refusedWith(t, await refusal(url + q(tampered)), 401, 'TOKEN_INVALID')

  // The same good token is accepted, so the refusals above were about the token.
  const c = await connect(url, { token: good })
  t.teardown(() => c.close())
  t.equal(c.frames[0]?.payload.userId, 'alice')
})

t.test('401 TOKEN_EXPIRED', async (t) => {
  const node = await startApp(ROOMY)
  t.teardown(() => node.close())
  const now = Math.floor(Date.now() / 1000)
  const expired = token({ sub: 'alice', sid: 's1', roles: ['user'], iat: now - 7200, exp: now - 3600 })
  refusedWith(t, await refusal(`${node.ws}/ws/events${q(expired)}`), 401, 'TOKEN_EXPIRED')
  refusedWith(t, await refusal(`${node.ws}/ws/events`, { authorization: `Bearer ${expired}` }), 401, 'TOKEN_EXPIRED')
  const expiredAdmin = token({ sub: 'root', roles: ['admin'], iat: now - 7200, exp: now - 60 })
  refusedWith(t, await refusal(`${node.ws}/ws/admin${q(expiredAdmin)}`), 401, 'TOKEN_EXPIRED')
})

t.test('403 ORIGIN_FORBIDDEN against ALLOWED_ORIGINS wildcards', async (t) => {
  const node = await startApp({ ...ROOMY, ALLOWED_ORIGINS: 'https://*.example.com' })
  t.teardown(() => node.close())
  const url = `${node.ws}/ws/events${q(userToken('alice'))}`

  for (const origin of ['https://evil.io', 'https://app.example.com.evil.io', 'https://evilexample.com', 'https://example.com', 'http://app.example.com', 'https://app.example.com:8443', 'null']) {
    refusedWith(t, await refusal(url, { origin }), 403, 'ORIGIN_FORBIDDEN')
  }
  // The origin check runs before the token check: a forbidden origin with no token is still 403.
  refusedWith(t, await refusal(`${node.ws}/ws/events`, { origin: 'https://evil.io' }), 403, 'ORIGIN_FORBIDDEN')
  refusedWith(t, await refusal(`${node.ws}/ws/admin${q(adminToken())}`, { origin: 'https://evil.io' }), 403, 'ORIGIN_FORBIDDEN')

  const good = await connect(url, { headers: { origin: 'https://app.example.com' } })
  t.teardown(() => good.close())
  t.equal(good.frames[0]?.type, 'welcome', 'allowed origin welcomed')
  const deep = await connect(url, { headers: { origin: 'https://a.b.example.com' } })
  t.teardown(() => deep.close())
  t.equal(deep.frames[0]?.type, 'welcome', 'nested subdomain welcomed')
  // ws sends no Origin header unless told to: servers and agents are allowed.
  const none = await connect(url)
  t.teardown(() => none.close())
  t.equal(none.frames[0]?.type, 'welcome', 'no Origin welcomed')
})

t.test('/ws/admin: 403 ROLE_FORBIDDEN for a user token, admin token accepted', async (t) => {
  const node = await startApp(ROOMY)
  t.teardown(() => node.close())
  refusedWith(t, await refusal(`${node.ws}/ws/admin${q(userToken('alice'))}`), 403, 'ROLE_FORBIDDEN')
  refusedWith(t, await refusal(`${node.ws}/ws/admin`, { authorization: `Bearer ${userToken('alice')}` }), 403, 'ROLE_FORBIDDEN')
  refusedWith(t, await refusal(`${node.ws}/ws/admin${q(token({ sub: 'svc', roles: ['service'] }))}`), 403, 'ROLE_FORBIDDEN')
  refusedWith(t, await refusal(`${node.ws}/ws/admin${q(token({ sub: 'noroles' }))}`), 403, 'ROLE_FORBIDDEN')

  const admin = await connect(`${node.ws}/ws/admin`, { token: adminToken('root') })
  t.teardown(() => admin.close())
  t.match(admin.frames[0], { type: 'welcome', payload: { userId: 'root', sessionId: 'root-session' } })
  const viaHeader = await connect(`${node.ws}/ws/admin`, { headers: { authorization: `Bearer ${adminToken('root2')}` } })
  t.teardown(() => viaHeader.close())
  t.match(viaHeader.frames[0], { type: 'welcome', payload: { userId: 'root2' } })
  // Admin commands answer on /ws/admin.
  const stats = await admin.request('get_stats')
  t.equal(stats.type, 'stats')
})

t.test('426 UPGRADE_REQUIRED for a plain GET on the WebSocket endpoints', async (t) => {
  const node = await startApp(ROOMY)
  t.teardown(() => node.close())
  for (const path of ['/ws/events', `/ws/events${q(userToken('alice'))}`, '/ws/admin']) {
    const res = await fetch(node.http + path)
    t.equal(res.status, 426, `${path}: 426`)
    t.match(res.headers.get('content-type'), /application\/json/)
    const body = await res.json() as { error: { code: string, message: string } }
    t.equal(body.error.code, 'UPGRADE_REQUIRED')
    t.type(body.error.message, 'string')
  }
})

t.test('503 DRAINING once the node drains', async (t) => {
  const node = await startApp(ROOMY)
  t.teardown(() => node.close())
  const before = await connect(`${node.ws}/ws/events`, { token: userToken('alice') })
  t.teardown(() => before.close())
  node.app.herald.draining = true
  refusedWith(t, await refusal(`${node.ws}/ws/events${q(userToken('bob'))}`), 503, 'DRAINING')
  refusedWith(t, await refusal(`${node.ws}/ws/admin${q(adminToken())}`), 503, 'DRAINING')
  // Draining refuses before anything else, even a request with no token.
  refusedWith(t, await refusal(`${node.ws}/ws/events`), 503, 'DRAINING')
  node.app.herald.draining = false
  const after = await connect(`${node.ws}/ws/events`, { token: userToken('bob') })
  t.teardown(() => after.close())
  t.equal(after.frames[0]?.type, 'welcome', 'accepted again once no longer draining')
})

t.test('503 NODE_FULL at WEBSOCKET_MAX_CONNECTIONS', async (t) => {
  const node = await startApp({ ...ROOMY, WEBSOCKET_MAX_CONNECTIONS: '1' })
  t.teardown(() => node.close())
  const first = await connect(`${node.ws}/ws/events`, { token: userToken('alice') })
  t.teardown(() => first.close())
  refusedWith(t, await refusal(`${node.ws}/ws/events${q(userToken('bob'))}`), 503, 'NODE_FULL')
  refusedWith(t, await refusal(`${node.ws}/ws/admin${q(adminToken())}`), 503, 'NODE_FULL')
  // The first connection is still served.
  t.equal((await first.request('ping')).type, 'pong')
  // Once it leaves, the slot is free again.
  await first.close()
  await waitFor('the node to release the slot', () => node.app.herald.connections.size, (n) => n === 0)
  const second = await connect(`${node.ws}/ws/events`, { token: userToken('bob') })
  t.teardown(() => second.close())
  t.equal(second.frames[0]?.payload.userId, 'bob')
})

t.test('token accepted from ?token= and from Authorization: Bearer', async (t) => {
  const node = await startApp(ROOMY)
  t.teardown(() => node.close())
  const viaQuery = await connect(`${node.ws}/ws/events`, { token: userToken('alice', 'sess-q') })
  t.teardown(() => viaQuery.close())
  t.match(viaQuery.frames[0], { type: 'welcome', payload: { userId: 'alice', sessionId: 'sess-q' } })

  const viaHeader = await connect(`${node.ws}/ws/events`, { headers: { authorization: `Bearer ${userToken('bob', 'sess-h')}` } })
  t.teardown(() => viaHeader.close())
  t.match(viaHeader.frames[0], { type: 'welcome', payload: { userId: 'bob', sessionId: 'sess-h' } })

  const lower = await connect(`${node.ws}/ws/events`, { headers: { authorization: `bearer ${userToken('carol')}` } })
  t.teardown(() => lower.close())
  t.match(lower.frames[0], { type: 'welcome', payload: { userId: 'carol' } })

  // The welcome's expiresAt is the token's exp.
  const exp = Math.floor(Date.now() / 1000) + 600
  const c = await connect(`${node.ws}/ws/events`, { token: token({ sub: 'dave', sid: 'sd', roles: ['user'], exp }) })
  t.teardown(() => c.close())
  t.equal(c.frames[0]?.payload.expiresAt, new Date(exp * 1000).toISOString())
})
