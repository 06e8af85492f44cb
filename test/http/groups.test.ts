// The groups API and visitor tokens on one node: refusals with their codes,
// a minted token's claims as the verifier reads them, a node that cannot
// sign saying so; and the one answer to "may this connection read stream X".
import { generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { createTokenVerifier } from '../../src/auth/verifier.js'
import { loadConfig } from '../../src/config/index.js'
import { mayRead, readableStreams, type Reader } from '../../src/events/audience.js'
import { startApp } from '../helpers/app.js'
import { adminToken, serviceToken, TEST_SECRET, userToken } from '../helpers/tokens.js'

t.test('membership routes: validation, credentials, listing', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  t.match(await node.api('/api/groups/a%20b/members/u1', { method: 'PUT' }), { status: 400, body: { error: { code: 'VALIDATION', message: /params\.group "a b" must be 1-128 letters, digits, underscores, dots, colons or hyphens/ } } })
  t.match(await node.api('/api/groups/a%7Bb%7D/members/u1', { method: 'PUT' }), { status: 400, body: { error: { code: 'VALIDATION' } } }, 'braces (a hash tag) are no group name')
  t.match(await node.api('/api/groups/ok/members/u1', { method: 'PUT', key: '' }), { status: 401, body: { error: { code: 'CREDENTIAL_MISSING' } } })
  t.match(await node.api('/api/groups/ok/members/u1', { method: 'PUT', key: userToken('u1') }), { status: 403, body: { error: { code: 'ROLE_FORBIDDEN' } } }, 'a user cannot add itself')
  t.match(await node.api('/api/groups/ok/members/u1', { method: 'PUT', key: adminToken() }), { status: 403, body: { error: { code: 'ROLE_FORBIDDEN' } } }, 'membership is the services\' business')
  t.same((await node.api('/api/groups/ok/members/u1', { method: 'PUT', key: serviceToken() })).body, { group: 'ok', userId: 'u1', member: true, changed: true }, 'a service JWT')
  t.same((await node.api('/api/groups/ok/members/u2', { method: 'PUT' })).body, { group: 'ok', userId: 'u2', member: true, changed: true })
  t.same((await node.api('/api/groups/ok/members/u2', { method: 'PUT' })).body.changed, false, 'again: no change')
  t.same((await node.api('/api/groups/ok/members?limit=1', { key: adminToken() })).body, { group: 'ok', members: ['u1'], total: 2 }, 'an admin may list')
  t.match(await node.api('/api/groups/ok/members?limit=0'), { status: 400, body: { error: { code: 'VALIDATION' } } })
  t.same((await node.api('/api/groups/ok/members/u1', { method: 'DELETE' })).body, { group: 'ok', userId: 'u1', member: false, changed: true })
  t.same((await node.api('/api/groups/ok/members')).body, { group: 'ok', members: ['u2'], total: 1 })
  t.match(await node.api('/api/events', { body: { type: 'chat.message', group: 'ok', userId: 'u2' } }), { status: 400, body: { error: { code: 'VALIDATION', message: /give userId or group, not both/ } } })
})

t.test('visitor tokens: the claims the verifier reads; a node without the signing key says so', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const r = await node.api('/api/visitors', { body: { group: 'conv-9', publish: ['chat.message', 'chat.message'], ttlSeconds: 60 } })
  t.equal(r.status, 201)
  const id = await createTokenVerifier(loadConfig({ JWT_SECRET: TEST_SECRET }).jwt).verify(r.body.token)
  t.match(id, { userId: r.body.userId, sessionId: r.body.sessionId, roles: ['visitor'], groups: ['conv-9'], publish: ['chat.message'] })
  t.ok(id.expiresAt - Date.now() <= 61_000 && id.expiresAt - Date.now() > 50_000, 'lives ttlSeconds')
  t.not((await node.api('/api/visitors', { body: { group: 'conv-9', publish: ['chat.*'] } })).body.userId, r.body.userId, 'a fresh identity each time')
  t.match(await node.api('/api/visitors', { body: { group: 'conv-9', publish: [] } }), { status: 400, body: { error: { code: 'VALIDATION' } } })
  t.match(await node.api('/api/visitors', { body: { group: 'conv-9', publish: ['Bad Pattern'] } }), { status: 400, body: { error: { code: 'VALIDATION' } } })
  t.match(await node.api('/api/visitors', { body: { group: 'conv-9', publish: ['chat.*'], ttlSeconds: 999_999 } }), { status: 400, body: { error: { code: 'VALIDATION' } } })
  t.match(await node.api('/api/visitors', { body: { group: 'conv-9', publish: ['chat.*'] }, key: userToken('u') }), { status: 403, body: { error: { code: 'ROLE_FORBIDDEN' } } })

  const pub = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const verifying = await startApp({ JWT_SECRET: '', JWT_PUBLIC_KEY: pub })
  t.teardown(() => verifying.close())
  t.match(await verifying.api('/api/visitors', { body: { group: 'conv-9', publish: ['chat.*'] } }), { status: 404, body: { error: { code: 'VISITORS_UNAVAILABLE' } } })
})

t.test('malformed publish and groups claims make the token invalid, whole', async (t) => {
  const v = createTokenVerifier(loadConfig({ JWT_SECRET: TEST_SECRET }).jwt)
  for (const extra of [{ publish: 'agent.*' }, { publish: ['Agent'] }, { groups: ['a b'] }, { groups: Array.from({ length: 101 }, (_, i) => `g${i}`) }, { publish: [1] }]) {
    await t.rejects(v.verify(userToken('u', 's', extra)), { code: 'TOKEN_INVALID' }, JSON.stringify(extra).slice(0, 60))
  }
  t.match(await v.verify(userToken('u', 's', { publish: ['agent.*', 'agent.*'], groups: ['x:y'] })), { publish: ['agent.*'], groups: ['x:y'] })
})

t.test('mayRead and readableStreams: own user stream, groups it is in, the broadcast; admins the admin stream', async (t) => {
  const reader = (r: Partial<Reader>): Reader => ({ kind: 'events', userId: 'u1', guest: false, groups: new Set(['in']), ...r })
  const u = reader({})
  t.ok(mayRead(u, 'user:u1'))
  t.notOk(mayRead(u, 'user:u2'))
  t.ok(mayRead(u, 'group:in'))
  t.notOk(mayRead(u, 'group:out'))
  t.ok(mayRead(u, 'broadcast'))
  t.notOk(mayRead(u, 'admin'))
  t.notOk(mayRead(u, 'nonsense'))
  t.same(readableStreams(u), ['user:u1', 'broadcast', 'group:in'])
  t.same(readableStreams(reader({ groups: null })), ['user:u1', 'broadcast'], 'no groups')
  const guest = reader({ guest: true })
  t.notOk(mayRead(guest, 'user:u1'), 'a guest has no user stream')
  t.notOk(mayRead(guest, 'group:in'), 'nor groups')
  t.ok(mayRead(guest, 'broadcast'))
  t.same(readableStreams(guest), ['broadcast'])
  const admin = reader({ kind: 'admin' })
  t.ok(mayRead(admin, 'admin'))
  t.notOk(mayRead(admin, 'user:u1'), 'admins see users live, they do not resume them')
  t.notOk(mayRead(admin, 'group:in'))
  t.same(readableStreams(admin), ['admin', 'broadcast'])
})
