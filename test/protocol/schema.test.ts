// The schemas (src/protocol/schema.ts) against the node that speaks them:
// every server frame a node sends, on /ws/events, /ws/admin and /ws/health,
// matches its schema, and every frame type the schemas declare is seen; and
// a request that breaks its payload schema is refused with the specific code
// and a message that names the field and the rule.
import t from 'tap'
import { ClientFrames, ServerFrames, type ServerFrameType } from '../../src/protocol/schema.js'
import { compile, payloadCheck } from '../../src/protocol/validation.js'
import { startApp } from '../helpers/app.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { adminToken, token, TEST_API_KEY, userToken } from '../helpers/tokens.js'

t.test('every frame a node sends matches its schema, and every declared type is sent', { timeout: 30_000 }, async (t) => {
  const node = await startApp({ AUTH_EXPIRY_WARNING: '2000', ADMIN_METRICS_INTERVAL: '200', HEALTH_STREAM_INTERVAL: '200' })
  t.teardown(() => node.close())
  const clients: TestClient[] = []
  const open = async (path: string, tok?: string): Promise<TestClient> => {
    const c = await connect(`${node.ws}${path}`, { ...(tok !== undefined ? { token: tok } : {}), waitWelcome: tok !== undefined })
    clients.push(c)
    t.teardown(() => c.close())
    return c
  }
  const alice = await open('/ws/events', userToken('schema-alice', 'schema-alice-s1'))
  const admin = await open('/ws/admin', adminToken('schema-admin'))
  const health = await open('/ws/health')

  await alice.subscribe(['authentication.*', 'system.*'])
  await alice.request('unsubscribe', { eventTypes: ['system.*'] })
  await alice.request('get_subscriptions')
  await alice.request('ping')
  await alice.request('refresh', { token: userToken('schema-alice', 'schema-alice-s1') })
  await alice.request('subscribe', { eventTypes: ['Not A Pattern'] })
  const e = await node.api('/api/events', { body: { type: 'authentication.login.success', userId: 'schema-alice', sessionId: 's1', data: { ip: '203.0.113.7' } } })
  await alice.next((f) => f.type === 'event' && f.payload.id === e.body.id)
  const n = await node.api('/api/notifications/users/schema-alice', { body: { level: 'warning', title: 't', message: 'm', data: { a: [1] } } })
  await alice.next((f) => f.type === 'notification' && f.payload.id === n.body.id)
  // A client's publish, and its event with the stamped source, to a group.
  const agent = await open('/ws/events', userToken('schema-agent', 'schema-agent-s1', { publish: ['agent.*'], groups: ['schema-room'] }))
  await agent.subscribe(['agent.*'])
  const p = await agent.request('publish', { type: 'agent.status', group: 'schema-room', key: 'k-1', data: { ok: true } })
  await agent.next((f) => f.type === 'event' && f.payload.id === p.payload.id && f.payload.source.userId === 'schema-agent')
  await agent.request('publish', { type: 'agent.status', group: 'schema-room', key: 'k-1', data: { ok: true } })

  await admin.request('get_stats')
  await admin.request('list_webhooks')
  await admin.nextOfType('metrics')
  await admin.request('list_connections', { userId: 'schema-alice' })
  await admin.request('broadcast', { level: 'info', title: 'hello', message: 'everyone' })
  await alice.nextOfType('notification')
  await admin.request('start_tail', { eventTypes: ['authentication.*'] })
  await node.api('/api/events', { body: { type: 'authentication.logout', userId: 'schema-alice' } })
  await admin.nextOfType('tail')
  await admin.request('stop_tail')
  await health.nextOfType('health')

  // Expiry: a token with 3 s left is warned 2 s before exp, then expires (4001).
  const brief = await open('/ws/events', token({ sub: 'schema-brief', roles: ['user'], exp: Math.floor(Date.now() / 1000) + 3 }))
  await brief.nextOfType('auth_expiring')
  await brief.nextOfType('auth_expired', 6000)
  // Revocation and disconnects, each with its reply to the admin.
  const bob = await open('/ws/events', userToken('schema-bob', 'schema-bob-s1'))
  await admin.request('revoke_session', { sessionId: 'schema-bob-s1' })
  await bob.nextOfType('session_revoked')
  await open('/ws/events', userToken('schema-carol', 'schema-carol-s1'))
  await admin.request('revoke_user', { userId: 'schema-carol' })
  const dave = await open('/ws/events', userToken('schema-dave'))
  await admin.request('disconnect', { connectionId: dave.frames[0]!.payload.connectionId })
  await admin.request('disconnect', { userId: 'schema-erin' })

  const checks = new Map(Object.entries(ServerFrames).map(([type, f]) => [type, compile(f.payload)]))
  const seen = new Set<string>()
  const all: Frame[] = clients.flatMap((c) => c.frames)
  for (const f of all) {
    const check = checks.get(f.type)
    if (check === undefined) { t.fail(`a frame type the schemas do not declare: ${f.type}`); continue }
    seen.add(f.type)
    if (!check(f.payload)) t.fail(`${f.type} does not match its schema: ${JSON.stringify(check.errors?.[0])} in ${JSON.stringify(f.payload).slice(0, 300)}`)
  }
  t.pass(`${all.length} frames checked`)
  t.same([...seen].sort(), Object.keys(ServerFrames).sort() as ServerFrameType[], 'every declared server frame type was sent')
})

t.test('a payload that breaks its schema: the specific code, and a message naming the field and the rule', async (t) => {
  const check = Object.fromEntries(Object.entries(ClientFrames).map(([type, f]) => [type, payloadCheck(f.payload)]))
  const cases: Array<[string, unknown, string, RegExp]> = [
    ['subscribe', {}, 'INVALID_PAYLOAD', /^payload\.eventTypes or payload\.since is required$/],
    ['subscribe', { eventTypes: '*' }, 'INVALID_PAYLOAD', /^payload\.eventTypes must be an array$/],
    ['subscribe', { eventTypes: [] }, 'INVALID_PAYLOAD', /^payload\.eventTypes must hold 1-1000 items$/],
    ['subscribe', { eventTypes: Array(1001).fill('a') }, 'INVALID_PAYLOAD', /1-1000 items/],
    ['subscribe', { eventTypes: ['a', 7] }, 'INVALID_PAYLOAD', /^payload\.eventTypes\[1\] must be a string$/],
    ['subscribe', { eventTypes: ['a.*', 'Auth Login'] }, 'INVALID_PATTERN', /^invalid pattern "Auth Login": dot-separated lowercase segments \[a-z0-9_-\] or \*, at most 12 segments and 128 characters$/],
    ['subscribe', { eventTypes: [''] }, 'INVALID_PATTERN', /^invalid pattern "": /],
    ['subscribe', { eventTypes: ['x'.repeat(129)] }, 'INVALID_PATTERN', /^invalid pattern "x{129}": /],
    ['unsubscribe', { eventTypes: [{}] }, 'INVALID_PAYLOAD', /^payload\.eventTypes\[0\] must be a string$/],
    ['refresh', { token: { sub: 'admin' } }, 'INVALID_PAYLOAD', /^payload\.token must be a string$/],
    ['refresh', { token: '' }, 'INVALID_PAYLOAD', /^payload\.token must not be empty$/],
    ['list_connections', { userId: 'a\tb' }, 'INVALID_PAYLOAD', /^payload\.userId must be 1-256 characters without control characters or unpaired surrogates$/],
    ['list_connections', { userId: 'u'.repeat(257) }, 'INVALID_PAYLOAD', /^payload\.userId must be 1-256 characters without control characters or unpaired surrogates$/],
    ['disconnect', {}, 'INVALID_PAYLOAD', /^payload\.connectionId or payload\.userId is required$/],
    ['disconnect', { connectionId: 7 }, 'INVALID_PAYLOAD', /^payload\.connectionId must be a string$/],
    ['disconnect', { connectionId: '', userId: 'ok' }, 'INVALID_PAYLOAD', /^payload\.connectionId must be 1-256 characters/],
    ['disconnect', { connectionId: 'c', userId: 7 }, 'INVALID_PAYLOAD', /^payload\.userId must be a string$/],
    ['revoke_session', { sessionId: null }, 'INVALID_PAYLOAD', /^payload\.sessionId must be a string$/],
    ['broadcast', { level: 'loud', title: 't', message: 'm' }, 'INVALID_PAYLOAD', /^payload\.level must be one of info, success, warning, error, critical$/],
    ['broadcast', { level: 'info', title: 'x'.repeat(201), message: 'm' }, 'INVALID_PAYLOAD', /^payload\.title must be 1-200 characters$/],
    ['broadcast', { level: 'info', title: 't', message: 'm', data: [1] }, 'INVALID_PAYLOAD', /^payload\.data must be an object$/],
    ['broadcast', { level: 'info', title: 't', message: 'm', userId: 'bob' }, 'INVALID_PAYLOAD', /^payload\.userId is not allowed here$/],
    ['start_tail', { eventTypes: [] }, 'INVALID_PAYLOAD', /^payload\.eventTypes must hold 1-100 items$/],
    ['start_tail', { eventTypes: Array(101).fill('a') }, 'INVALID_PAYLOAD', /1-100 items/],
    ['start_tail', { eventTypes: ['orders.*', 'Orders'] }, 'INVALID_PATTERN', /^invalid pattern "Orders": /],
    ['start_tail', { userId: '' }, 'INVALID_PAYLOAD', /^payload\.userId must be 1-256 characters without control characters or unpaired surrogates$/],
  ]
  for (const [type, payload, code, message] of cases) {
    const r = check[type]!(payload)
    t.equal(r?.code, code, `${type} ${JSON.stringify(payload).slice(0, 60)}: ${code}`)
    t.match(r?.message, message, `  says: ${r?.message.slice(0, 120)}`)
  }
  for (const [type, payload] of [['subscribe', { eventTypes: ['*', 'a.*.c'] }], ['disconnect', { userId: 'ok' }], ['ping', { anything: 1 }], ['broadcast', { level: 'info', title: 't', message: 'm', data: {} }], ['start_tail', {}], ['start_tail', { eventTypes: ['orders.*'], userId: 'u' }], ['stop_tail', {}]] as const) {
    t.equal(check[type]!(payload), null, `${type} ${JSON.stringify(payload)} is valid`)
  }
})
