// The HTTP API as a backend service and an operator use it:
// credentials, validation, errors, stats, OpenAPI; and the admin socket's
// stats and pushed metrics.
import net from 'node:net'
import t from 'tap'
import { Errors } from '../../src/errors.js'
import { startApp } from '../helpers/app.js'
import { connect, refusal } from '../helpers/client.js'
import { adminToken, serviceToken, token, TEST_API_KEY, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const EVENT = { type: 'authentication.login.success', userId: 'alice', data: { ip: '203.0.113.7' } }
const NOTE = { level: 'info', title: 'Hello', message: 'World' }

t.test('credentials: API key and service JWT accepted; others refused with the right code', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const alice = await connect(`${node.ws}/ws/events`, { token: userToken('alice') })
  t.teardown(() => alice.close())
  await alice.subscribe(['authentication.*'])

  const byKey = await node.api('/api/events', { body: EVENT })
  t.equal(byKey.status, 202, 'API key')
  t.type(byKey.body.id, 'string')
  t.equal((await alice.next((f) => f.type === 'event' && f.payload.id === byKey.body.id)).payload.userId, 'alice', 'published for real')

  const byJwt = await node.api('/api/events', { body: EVENT, key: serviceToken() })
  t.equal(byJwt.status, 202, 'service JWT')
  await alice.next((f) => f.type === 'event' && f.payload.id === byJwt.body.id)

  for (const path of ['/api/notifications/users/alice', '/api/notifications/broadcast']) {
    t.equal((await node.api(path, { body: NOTE })).status, 202, `${path}: API key`)
    t.equal((await node.api(path, { body: NOTE, key: serviceToken() })).status, 202, `${path}: service JWT`)
  }

  const refusals: Array<[string, Record<string, string> | string, number, string]> = [
    ['user JWT', userToken('alice'), 403, 'ROLE_FORBIDDEN'],
    ['JWT without roles', token({ sub: 'x' }), 403, 'ROLE_FORBIDDEN'],
    ['missing', '', 401, 'CREDENTIAL_MISSING'],
    ['wrong API key', 'test-api-key-0123456789abcdeX', 401, 'CREDENTIAL_INVALID'],
    ['garbage', 'garbage', 401, 'CREDENTIAL_INVALID'],
    ['JWT signed with another secret', token({ sub: 'svc', roles: ['service'] }, { key: 'another-secret-that-is-at-least-32-characters' }), 401, 'CREDENTIAL_INVALID'],
    ['expired service JWT', token({ sub: 'svc', roles: ['service'], exp: Math.floor(Date.now() / 1000) - 3600 }), 401, 'CREDENTIAL_INVALID'],
    ['Basic scheme', { authorization: `Basic ${Buffer.from(`x:${TEST_API_KEY}`).toString('base64')}` }, 401, 'CREDENTIAL_MISSING'],
    ['key in the query string only', { 'x-nothing': '1' }, 401, 'CREDENTIAL_MISSING'],
  ]
  for (const [label, cred, status, code] of refusals) {
    const init = typeof cred === 'string' ? { body: EVENT, key: cred } : { body: EVENT, key: '', headers: cred }
    const path = label === 'key in the query string only' ? `/api/events?token=${TEST_API_KEY}` : '/api/events'
    const r = await node.api(path, init)
    t.equal(r.status, status, `${label}: ${status}`)
    t.equal(r.body?.error?.code, code, `${label}: ${code}`)
    t.type(r.body?.error?.message, 'string')
  }
  // The credential is checked before the body is read: a caller without one
  // learns nothing of the schema and costs the node no parse. A valid key
  // with the same bodies gets the body's own refusal.
  const deep = `{"type":"a.b","data":{"x":${'['.repeat(20_000)}${']'.repeat(20_000)}}}`
  for (const [what, path, body, code] of [
    ['a batch that is not a list', '/api/events/batch', '{"events":5}', 'VALIDATION'],
    ['broken JSON', '/api/events', '{"type":', 'BAD_JSON'],
    ['data of 20,000 nested arrays', '/api/events', deep, 'DATA_TOO_DEEP'],
    ['an unknown webhook body', '/api/webhooks', '{"url":7}', 'VALIDATION'],
    ['a visitor request that is a list', '/api/visitors', '[1]', 'VALIDATION'],
  ] as const) {
    for (const [cred, status, expected] of [['', 401, 'CREDENTIAL_MISSING'], ['garbage', 401, 'CREDENTIAL_INVALID'], [TEST_API_KEY, 400, code]] as const) {
      const r = await fetch(`${node.http}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...(cred === '' ? {} : { authorization: `Bearer ${cred}` }) }, body })
      const answer = await r.json() as { error?: { code?: string } }
      t.equal(`${r.status} ${answer.error?.code}`, `${status} ${expected}`, `${what}, ${cred === TEST_API_KEY ? 'with the API key' : cred === '' ? 'no credential' : 'a bad credential'}: ${status} ${expected}`)
    }
  }

  // A refused publish delivers nothing: the next accepted one is the first alice sees after byJwt.
  const after = await node.api('/api/events', { body: EVENT })
  await alice.next((f) => f.type === 'event' && f.payload.id === after.body.id)
  t.equal(alice.count((f) => f.type === 'event'), 3, 'refused publishes were not delivered')
})

t.test('validation failures are 400 VALIDATION', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const cases: Array<[string, string, unknown]> = [
    ['uppercase type', '/api/events', { type: 'Authentication.Login' }],
    ['type with a space', '/api/events', { type: 'a b' }],
    ['type with a wildcard', '/api/events', { type: 'authentication.*' }],
    ['empty type', '/api/events', { type: '' }],
    ['type with an empty segment', '/api/events', { type: 'a..b' }],
    ['type too long', '/api/events', { type: 'a'.repeat(129) }],
    ['type with 13 segments', '/api/events', { type: Array(13).fill('a').join('.') }],
    ['extra property on an event', '/api/events', { type: 'a.b', userId: 'alice', role: 'admin' }],
    ['missing type', '/api/events', { userId: 'alice' }],
    ['empty body object', '/api/events', {}],
    ['data not an object', '/api/events', { type: 'a.b', data: 'x' }],
    ['data an array', '/api/events', { type: 'a.b', data: [1] }],
    ['tab in userId', '/api/events', { type: 'a.b', userId: 'ali\tce' }],
    ['newline in sessionId', '/api/events', { type: 'a.b', sessionId: 's\n1' }],
    ['empty userId', '/api/events', { type: 'a.b', userId: '' }],
    ['bad level', '/api/notifications/broadcast', { ...NOTE, level: 'urgent' }],
    ['missing title', '/api/notifications/broadcast', { level: 'info', message: 'm' }],
    ['missing message', '/api/notifications/users/alice', { level: 'info', title: 't' }],
    ['empty title', '/api/notifications/users/alice', { ...NOTE, title: '' }],
    ['extra property on a notification', '/api/notifications/users/alice', { ...NOTE, userId: 'bob' }],
    ['tab in the userId path parameter', '/api/notifications/users/ali%09ce', NOTE],
    ['newline in the userId path parameter', '/api/notifications/users/ali%0Ace', NOTE],
  ]
  for (const [label, path, body] of cases) {
    const r = await node.api(path, { body })
    t.equal(r.status, 400, `${label}: 400`)
    t.equal(r.body?.error?.code, 'VALIDATION', `${label}: VALIDATION`)
    t.type(r.body?.error?.message, 'string')
  }
  // The message names the field and says the rule in words (the same words as frames and the publisher library).
  const says: Array<[string, unknown, RegExp]> = [
    ['/api/events', { type: 'authentication.*' }, /^body\.type "authentication\.\*" is not an event type: dot-separated lowercase segments \[a-z0-9_-\], at most 12 segments and 128 characters$/],
    ['/api/events', { type: 'a.b', userId: 'ali\tce' }, /^body\.userId must be 1-256 characters without control characters or unpaired surrogates$/],
    ['/api/events', { type: 'a.b', role: 'admin' }, /^body\.role is not allowed here$/],
    ['/api/events', { userId: 'alice' }, /^body\.type is required$/],
    ['/api/events', { type: 'a.b', data: [1] }, /^body\.data must be an object$/],
    ['/api/notifications/broadcast', { ...NOTE, level: 'urgent' }, /^body\.level must be one of info, success, warning, error, critical$/],
    ['/api/notifications/users/alice', { ...NOTE, title: '' }, /^body\.title must be 1-200 characters$/],
    ['/api/notifications/users/ali%09ce', NOTE, /^params\.userId must be 1-256 characters without control characters or unpaired surrogates$/],
  ]
  for (const [path, body, message] of says) t.match((await node.api(path, { body })).body?.error?.message, message, `${path} ${JSON.stringify(body)}: says what is wrong`)
  // A body that is not an object breaks the schema too.
  const arr = await node.api('/api/events', { body: [EVENT] })
  t.equal(arr.status, 400)
  t.equal(arr.body?.error?.code, 'VALIDATION')
  // The boundary cases that are valid stay valid.
  t.equal((await node.api('/api/events', { body: { type: Array(12).fill('a').join('.') } })).status, 202, '12 segments')
  t.equal((await node.api('/api/events', { body: { type: 'a_b-c.d0' } })).status, 202, 'digits, _ and -')
  t.equal((await node.api('/api/notifications/users/ali%20ce', { body: NOTE })).status, 202, 'a space is allowed in a userId')
  // A valid body without credentials is still refused.
  t.equal((await node.api('/api/events', { body: EVENT, key: '' })).status, 401)
})

t.test('ids of 101-256 characters work on every route that names one', { timeout: 30_000 }, async (t) => {
  // Fastify's router refused path parameters past 100 characters (414, in its
  // own shape), so a user whose token the node accepts could not be revoked.
  const node = await startApp()
  t.teardown(() => node.close())
  const ids = ['u'.repeat(101), 'ü ser/'.repeat(33), 'x'.repeat(256), '😀'.repeat(256)]
  for (const [i, userId] of ids.entries()) {
    const what = `id ${i + 1} (${userId.length} UTF-16 units)`
    const enc = encodeURIComponent(userId)
    const sid = `${'s'.repeat(200)}-${i}`
    const open = async (session: string): Promise<Awaited<ReturnType<typeof connect>>> => {
      const c = await connect(`${node.ws}/ws/events`, { token: userToken(userId, session) })
      t.teardown(() => c.close())
      return c
    }
    const c1 = await open(sid)
    t.equal(c1.frames[0]!.payload.userId, userId, `${what}: the token is accepted`)

    const note = await node.api(`/api/notifications/users/${enc}`, { body: NOTE })
    t.equal(note.status, 202, `${what}: POST /api/notifications/users/:userId`)
    t.equal((await c1.next((f) => f.type === 'notification')).payload.id, note.body.id, `${what}: the notification is delivered`)

    const list = await node.api(`/api/users/${enc}/connections`)
    t.equal(list.status, 200, `${what}: GET /api/users/:userId/connections`)
    t.equal(list.body.userId, userId)
    t.same(list.body.connections.map((x: { connectionId: string }) => x.connectionId), [c1.frames[0]!.payload.connectionId], `${what}: lists the connection`)

    const one = await node.api(`/api/connections/${encodeURIComponent('c'.repeat(250))}/disconnect`, { method: 'POST' })
    t.equal(one.status, 202, `${what}: POST /api/connections/:connectionId/disconnect with a 250-character id`)

    const d = await node.api(`/api/users/${enc}/disconnect`, { method: 'POST' })
    t.equal(d.status, 202, `${what}: POST /api/users/:userId/disconnect`)
    t.equal((await c1.closed).code, 4003, `${what}: the connection is closed 4003`)

    const c2 = await open(sid)
    const rs = await node.api(`/api/sessions/${encodeURIComponent(sid)}/revoke`, { method: 'POST' })
    t.equal(rs.status, 200, `${what}: POST /api/sessions/:sessionId/revoke with a ${sid.length}-character session id`)
    t.same({ revoked: rs.body.revoked, id: rs.body.id }, { revoked: 'session', id: sid })
    t.equal((await c2.closed).code, 4004, `${what}: the session's connection is closed 4004`)

    const c3 = await open(`other-${i}`)
    // Minted before the revocation: a user revocation covers tokens issued up
    // to its second, and one minted after it may fall in the next second.
    const issuedBefore = userToken(userId, `late-${i}`)
    const ru = await node.api(`/api/users/${enc}/revoke`, { method: 'POST' })
    t.equal(ru.status, 200, `${what}: POST /api/users/:userId/revoke`)
    t.same({ revoked: ru.body.revoked, id: ru.body.id }, { revoked: 'user', id: userId })
    t.equal((await c3.closed).code, 4004, `${what}: the user's connection is closed 4004`)
    const again = await refusal(`${node.ws}/ws/events?token=${encodeURIComponent(issuedBefore)}`)
    t.equal(again.body?.error?.code, 'SESSION_REVOKED', `${what}: the revoked user is refused`)
  }
})

t.test('ids past the rule, bad URLs and malformed requests are refused in the error shape', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const refusals: Array<[string, string, string, string]> = [
    ['a 257-character userId', `/api/users/${'u'.repeat(257)}/revoke`, 'POST', 'VALIDATION'],
    ['257 characters outside the BMP', `/api/users/${encodeURIComponent('😀'.repeat(257))}/revoke`, 'POST', 'VALIDATION'],
    ['a 600-character userId (past the router\'s own limit)', `/api/users/${'u'.repeat(600)}/revoke`, 'POST', 'VALIDATION'],
    ['a 5000-character userId', `/api/users/${'u'.repeat(5000)}/connections`, 'GET', 'VALIDATION'],
    ['a 600-character sessionId', `/api/sessions/${'s'.repeat(600)}/revoke`, 'POST', 'VALIDATION'],
    ['a 600-character connectionId', `/api/connections/${'c'.repeat(600)}/disconnect`, 'POST', 'VALIDATION'],
    ['a DEL character in a userId', '/api/users/ali%7Fce/revoke', 'POST', 'VALIDATION'],
    ['broken percent-encoding', '/api/users/%E0%A4%A/revoke', 'POST', 'MALFORMED_REQUEST'],
  ]
  for (const [what, path, method, code] of refusals) {
    const r = await node.api(path, { method })
    t.equal(r.status, 400, `${what}: 400`)
    t.equal(r.body?.error?.code, code, `${what}: ${code} in {error:{code,message}}`)
    t.type(r.body?.error?.message, 'string')
    t.notMatch(r.body?.error?.message, /\\P\{Cc\}|\^|FST_ERR/, `${what}: says what an id is, not a regex or a Fastify code: ${r.body?.error?.message}`)
  }
  const long = await node.api(`/api/users/${'u'.repeat(257)}/revoke`, { method: 'POST' })
  t.match(long.body.error.message, /256/, 'the limit is named')

  // Requests Node's HTTP parser refuses never reach Fastify; they are answered in the same shape.
  const { port } = new URL(node.http)
  const raw = async (request: string): Promise<{ status: number, body: any }> => await new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), '127.0.0.1', () => sock.end(request))
    let data = ''
    sock.setEncoding('utf8')
    sock.on('data', (c: string) => { data += c })
    sock.on('error', reject)
    sock.on('close', () => {
      const [head, ...rest] = data.split('\r\n\r\n')
      let body: unknown = rest.join('\r\n\r\n')
      try { body = JSON.parse(body as string) } catch {}
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head ?? '')?.[1] ?? 0), body })
    })
  })
  const bad = await raw(`GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${TEST_API_KEY}\r\nnot a header line\r\n\r\n`)
  t.equal(bad.status, 400, 'a malformed request: 400')
  t.equal(bad.body?.error?.code, 'MALFORMED_REQUEST', 'a malformed request: {error:{code,message}}')
  const huge = await raw(`GET /api/stats HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`)
  t.equal(huge.status, 431, 'headers past Node\'s limit: 431')
  t.equal(huge.body?.error?.code, 'HEADERS_TOO_LARGE', 'headers past Node\'s limit: {error:{code,message}}')
  // Node drops a CONNECT without a word unless someone listens for it.
  const tunnel = await raw('CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n')
  t.equal(tunnel.status, 400, 'a CONNECT (Herald is no proxy): 400')
  t.equal(tunnel.body?.error?.code, 'MALFORMED_REQUEST', 'a CONNECT: {error:{code,message}}')
  t.match(tunnel.body?.error?.message, /CONNECT/, 'which says why')
  t.equal((await node.api('/api/stats')).status, 200, 'the node serves on')
})

t.test('what Fastify and Node refuse before any schema has a code of its own, not VALIDATION', { timeout: 20_000 }, async (t) => {
  // VALIDATION used to answer every 4xx: a client could not tell a body too
  // large (413) or not JSON from a field breaking its schema.
  const node = await startApp({ HANDSHAKE_TIMEOUT: '1000' })
  t.teardown(() => node.close())
  const post = async (body: string, type = 'application/json'): Promise<{ status: number, body: any }> => {
    const res = await fetch(`${node.http}/api/events`, { method: 'POST', headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': type }, body })
    return { status: res.status, body: await res.json() }
  }
  const cases: Array<[string, () => Promise<{ status: number, body: any }>, number, string]> = [
    ['a body that is not JSON', async () => await post('{"type":'), 400, 'BAD_JSON'],
    ['an empty JSON body', async () => await post(''), 400, 'BAD_JSON'],
    ['a body with a __proto__ key', async () => await post('{"type":"a.b","__proto__":{"x":1}}'), 400, 'BAD_JSON'],
    ['a body over 64 KiB', async () => await post(JSON.stringify({ type: 'a.b', data: { pad: 'x'.repeat(70_000) } })), 413, 'PAYLOAD_TOO_LARGE'],
    ['an application/xml body', async () => await post('<event/>', 'application/xml'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['a text/plain body', async () => await post('{"type":"a.b"}', 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
    ['a body with a constructor.prototype key', async () => await post('{"type":"a.b","data":{"constructor":{"prototype":{"x":1}}}}'), 400, 'BAD_JSON'],
  ]
  for (const [what, send, status, code] of cases) {
    const r = await send()
    t.equal(r.status, status, `${what}: ${status}`)
    t.equal(r.body?.error?.code, code, `${what}: ${code}`)
    t.equal(Errors[code as keyof typeof Errors].status, status, `${what}: the registry says ${status} for ${code}`)
    t.notMatch(r.body?.error?.message, /FST_ERR/, `${what}: no Fastify code in the message (${r.body?.error?.message})`)
  }
  // A request not received within HANDSHAKE_TIMEOUT: 408 REQUEST_TIMEOUT, from Node's parser.
  const { port } = new URL(node.http)
  const answer = await new Promise<string>((resolve, reject) => {
    const sock = net.connect(Number(port), '127.0.0.1', () => sock.write('POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n'))
    let data = ''
    sock.setEncoding('utf8')
    sock.on('data', (c: string) => { data += c })
    sock.on('error', reject)
    sock.on('close', () => resolve(data))
  })
  t.match(answer, /^HTTP\/1\.1 408 /, 'a request never finished: 408')
  t.match(answer, /"code":"REQUEST_TIMEOUT"/, 'with REQUEST_TIMEOUT')
  t.equal((await node.api('/api/events', { body: EVENT })).status, 202, 'the node serves on')
})

t.test('unknown routes answer 404 JSON', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  for (const [method, path] of [['GET', '/nope'], ['POST', '/api/nope'], ['GET', '/api/events'], ['DELETE', '/api/stats'], ['GET', '/nope?token=secret-looking']] as const) {
    const res = await fetch(node.http + path, { method, headers: { authorization: `Bearer ${TEST_API_KEY}` } })
    t.equal(res.status, 404, `${method} ${path}: 404`)
    t.match(res.headers.get('content-type'), /application\/json/)
    const body = await res.json() as { error: { code: string, message: string } }
    t.equal(body.error.code, 'NOT_FOUND')
    t.notMatch(body.error.message, /secret-looking/, 'the query string is not echoed')
  }
})

t.test('GET /api/stats: service key and admin JWT, with correct connection counts', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const clients = [
    await connect(`${node.ws}/ws/events`, { token: userToken('alice') }),
    await connect(`${node.ws}/ws/events`, { token: userToken('alice') }),
    await connect(`${node.ws}/ws/events`, { token: userToken('bob') }),
    await connect(`${node.ws}/ws/admin`, { token: adminToken() }),
  ]
  for (const c of clients) t.teardown(() => c.close())

  for (const [label, key] of [['service key', TEST_API_KEY], ['service JWT', serviceToken()], ['admin JWT', adminToken()]] as const) {
    const r = await node.api('/api/stats', { key })
    t.equal(r.status, 200, `${label}: 200`)
    t.same(Object.keys(r.body).sort(), ['global', 'server'])
    t.match(r.body.server, { serverId: node.app.herald.config.serverId, connections: { events: 3, admin: 1, total: 4 }, users: 2, draining: false, uptime: Number })
    t.match(r.body.global, { servers: 1, connections: { events: 3, admin: 1, total: 4 } })
    t.equal(r.body.global.nodes?.length, 1)
  }
  t.match(await node.api('/api/stats', { key: userToken('alice') }), { status: 403, body: { error: { code: 'ROLE_FORBIDDEN' } } })
  t.match(await node.api('/api/stats', { key: '' }), { status: 401, body: { error: { code: 'CREDENTIAL_MISSING' } } })

  // Counts follow connections as they close.
  await clients[0]!.close()
  await clients[3]!.close()
  const r = await waitFor('stats to count 2 connections', async () => await node.api('/api/stats'), (x) => x.body?.server?.connections?.total === 2)
  t.match(r.body.server.connections, { events: 2, admin: 0, total: 2 })
  t.match(r.body.global.connections, { events: 2, admin: 0, total: 2 })
})

t.test('GET /docs/json is the OpenAPI of the HTTP API', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const res = await fetch(`${node.http}/docs/json`)
  t.equal(res.status, 200)
  const doc = await res.json() as { openapi: string, paths: Record<string, Record<string, any>> }
  t.match(doc.openapi, /^3\./)
  for (const [path, method] of [['/api/events', 'post'], ['/api/notifications/users/{userId}', 'post'], ['/api/notifications/broadcast', 'post'], ['/api/stats', 'get']] as const) {
    t.ok(doc.paths[path]?.[method], `${method.toUpperCase()} ${path} documented`)
  }
  t.ok(doc.paths['/api/events']!.post.requestBody, 'event body documented')
  t.notOk(doc.paths['/ws/events'], 'upgrade-only routes are not in the HTTP API document')
  // The UI is served too.
  t.equal((await fetch(`${node.http}/docs`)).status, 200)
})

t.test('/ws/admin: get_stats replies {server, global}; metrics are pushed', async (t) => {
  const node = await startApp({ ADMIN_METRICS_INTERVAL: '200' })
  t.teardown(() => node.close())
  const users = [await connect(`${node.ws}/ws/events`, { token: userToken('alice') }), await connect(`${node.ws}/ws/events`, { token: userToken('bob') })]
  for (const c of users) t.teardown(() => c.close())
  const admin = await connect(`${node.ws}/ws/admin`, { token: adminToken() })
  t.teardown(() => admin.close())

  const s = await admin.request('get_stats')
  t.equal(s.type, 'stats')
  t.same(Object.keys(s.payload).sort(), ['global', 'server'])
  t.match(s.payload.server, { serverId: node.app.herald.config.serverId, connections: { events: 2, admin: 1, total: 3 } })
  t.match(s.payload.global, { servers: 1, connections: { events: 2, admin: 1, total: 3 } })

  const metrics = await admin.collect((f) => f.type === 'metrics', 2, 5000)
  t.ok(metrics.length >= 2, 'metrics pushed repeatedly')
  for (const m of metrics.slice(0, 2)) {
    t.equal(m.id, undefined)
    t.match(m.payload, { server: { connections: { events: 2, admin: 1 } }, global: { servers: 1 } })
  }
  // Users get no metrics.
  const sentinel = await users[0]!.request('ping')
  t.equal(sentinel.type, 'pong')
  t.notOk(users[0]!.frames.some((f) => f.type === 'metrics'), 'a user connection receives no metrics')
})
