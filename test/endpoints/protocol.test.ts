import t, { type Test } from 'tap'
import { startApp } from '../helpers/app.js'
import { connect, type TestClient } from '../helpers/client.js'
import { userToken } from '../helpers/tokens.js'
import { within } from '../helpers/wait.js'

t.test('welcome, then request/reply with ids', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const c = await connect(`${node.ws}/ws/events`, { token: userToken('alice', 'sess-a') })
  t.teardown(() => c.close())
  const w = c.frames[0]!
  t.equal(w.type, 'welcome')
  t.match(w.payload, { userId: 'alice', sessionId: 'sess-a', serverId: String, connectionId: String, expiresAt: String, heartbeatInterval: Number })

  const s = await c.request('subscribe', { eventTypes: ['authentication.*', 'system.*'] })
  t.same(s.payload, { eventTypes: ['authentication.*', 'system.*'] })
  const g = await c.request('get_subscriptions')
  t.equal(g.type, 'subscriptions')
  t.same(g.payload.eventTypes, ['authentication.*', 'system.*'])
  const u = await c.request('unsubscribe', { eventTypes: ['system.*'] })
  t.same(u.payload, { eventTypes: ['authentication.*'] })
  const p = await c.request('ping')
  t.equal(p.type, 'pong')
  t.ok(Date.parse(p.payload.timestamp) > 0)
})

// ---------------------------------------------------------------------------
// Hostile and malformed input: answered with `error` and the connection
// stays open, or closed with the documented code; the node keeps
// serving everyone else.

const ROOMY = { MAX_CONNECTIONS_PER_IP: '1000', MAX_CONNECTIONS_PER_USER: '1000', MAX_MESSAGES_PER_MINUTE: '100000' }

/** A node, a victim factory and a bystander that must stay served after every hostile case. */
async function hostileSetup (t: Test, env: Record<string, string> = {}) {
  const node = await startApp({ ...ROOMY, ...env })
  t.teardown(() => node.close())
  const bystander = await connect(`${node.ws}/ws/events`, { token: userToken('bystander') })
  t.teardown(() => bystander.close())
  await bystander.subscribe(['system.*'])
  const open = async (user = 'mallory'): Promise<TestClient> => {
    const c = await connect(`${node.ws}/ws/events`, { token: userToken(user) })
    t.teardown(() => c.close())
    return c
  }
  /** the bystander still answers requests and still receives events */
  const bystanderServed = async (label: string): Promise<void> => {
    t.equal((await bystander.request('ping')).type, 'pong', `${label}: bystander still gets pong`)
    const r = await node.api('/api/events', { body: { type: 'system.check', data: { label } } })
    t.equal(r.status, 202)
    const ev = await bystander.next((f) => f.type === 'event' && f.payload.id === r.body.id)
    t.equal(ev.payload.data.label, label, `${label}: bystander still receives events`)
  }
  return { node, open, bystanderServed }
}

t.test('bad JSON is answered with BAD_JSON and the connection stays open', async (t) => {
  const { open, bystanderServed } = await hostileSetup(t)
  const c = await open()
  for (const bad of ['{not json', '', '[1,2', 'undefined', '{"type":"ping",}']) {
    const before = c.frames.length
    c.send(bad)
    const err = await c.next((f) => f.type === 'error', 5000, before)
    t.equal(err.payload.code, 'BAD_JSON', `${JSON.stringify(bad)} -> BAD_JSON`)
    t.type(err.payload.message, 'string')
  }
  const p = await c.request('ping')
  t.equal(p.type, 'pong', 'a later ping still gets pong')
  t.equal(c.closeInfo, null, 'still open')
  // Valid JSON that is not an envelope is also answered, not fatal.
  const before = c.frames.length
  c.send('[1,2,3]')
  t.equal((await c.next((f) => f.type === 'error', 5000, before)).payload.code, 'BAD_MESSAGE')
  t.equal((await c.request('ping')).type, 'pong')
  await bystanderServed('bad json')
})

t.test('unknown type is answered with UNKNOWN_TYPE carrying the request id', async (t) => {
  const { node, open, bystanderServed } = await hostileSetup(t)
  const c = await open()
  c.send({ type: 'launch_missiles', id: 'req-42', payload: {} })
  const err = await c.next((f) => f.id === 'req-42')
  t.equal(err.type, 'error')
  t.equal(err.payload.code, 'UNKNOWN_TYPE')
  // Prototype names are not handlers.
  for (const [i, type] of ['constructor', '__proto__', 'toString', 'hasOwnProperty'].entries()) {
    c.send({ type, id: `proto-${i}` })
    const e = await c.next((f) => f.id === `proto-${i}`)
    t.match(e, { type: 'error', payload: { code: 'UNKNOWN_TYPE' } }, `${type} is unknown`)
  }
  // An admin-only command is unknown on /ws/events.
  const s = await c.request('get_stats')
  t.match(s, { type: 'error', payload: { code: 'UNKNOWN_TYPE' } }, 'get_stats is admin only')
  t.equal((await c.request('ping')).type, 'pong', 'still open')
  t.ok(node.app.herald.connections.size >= 2)
  await bystanderServed('unknown type')
})

t.test('binary frame closes with 1003', async (t) => {
  const { open, bystanderServed } = await hostileSetup(t)
  const c = await open()
  c.ws.send(Buffer.from(JSON.stringify({ type: 'ping', id: 'b' })), { binary: true })
  const { code } = await within(5000, 'close', c.closed)
  t.equal(code, 1003)
  t.notOk(c.frames.some((f) => f.id === 'b'), 'the binary frame was not handled')
  await bystanderServed('binary')
})

t.test('invalid UTF-8 in a text frame closes with 1007', async (t) => {
  const { open, bystanderServed } = await hostileSetup(t)
  const c = await open()
  c.ws.send(Buffer.from([0xff, 0xfe]), { binary: false })
  const { code } = await within(5000, 'close', c.closed)
  t.equal(code, 1007)
  await bystanderServed('utf-8')
})

t.test('a frame over MAX_MESSAGE_BYTES closes with 1009', async (t) => {
  const { open, bystanderServed } = await hostileSetup(t, { MAX_MESSAGE_BYTES: '1024' })
  const c = await open()
  // Just under the limit is fine.
  const fits = JSON.stringify({ type: 'ping', id: 'fits', payload: { pad: '' } })
  c.send(JSON.stringify({ type: 'ping', id: 'fits', payload: { pad: 'x'.repeat(1024 - fits.length) } }))
  t.equal((await c.next((f) => f.id === 'fits')).type, 'pong', 'a frame of exactly MAX_MESSAGE_BYTES is served')
  c.send(JSON.stringify({ type: 'ping', id: 'big', payload: { pad: 'x'.repeat(2048) } }))
  const { code } = await within(5000, 'close', c.closed)
  t.equal(code, 1009)
  t.notOk(c.frames.some((f) => f.id === 'big'))
  await bystanderServed('too big')
})

t.test('an invalid pattern is refused with INVALID_PATTERN and nothing is subscribed', async (t) => {
  const { node, open, bystanderServed } = await hostileSetup(t)
  const c = await open()
  for (const [i, bad] of [['authentication.*', 'Authentication.Login'], ['ok.one', 'a..b'], ['x', ''], ['a.b', 'a.**'], ['y', '*.'], ['z', 'a b'], ['q', 'a.(.*)+'], ['w', 'x'.repeat(129)], ['v', Array(13).fill('a').join('.')]].entries()) {
    const r = await c.request('subscribe', { eventTypes: bad })
    t.match(r, { type: 'error', payload: { code: 'INVALID_PATTERN' } }, `case ${i}: ${JSON.stringify(bad).slice(0, 60)}`)
    const g = await c.request('get_subscriptions')
    t.same(g.payload.eventTypes, [], `case ${i}: nothing subscribed`)
  }
  // The valid half of a refused request is really not subscribed: its events do not arrive.
  await c.subscribe(['sentinel.*'])
  const e1 = await node.api('/api/events', { body: { type: 'authentication.login.success', userId: 'mallory' } })
  const e2 = await node.api('/api/events', { body: { type: 'sentinel.ok', userId: 'mallory' } })
  t.equal(e1.status, 202)
  t.equal(e2.status, 202)
  await c.next((f) => f.type === 'event' && f.payload.id === e2.body.id)
  t.notOk(c.frames.some((f) => f.type === 'event' && f.payload.id === e1.body.id), 'event of the refused pattern not delivered')
  await bystanderServed('invalid pattern')
})

t.test('MAX_SUBSCRIPTIONS: a request past the limit is refused whole', async (t) => {
  const { open, bystanderServed } = await hostileSetup(t, { MAX_SUBSCRIPTIONS: '3' })
  const c = await open()
  t.same((await c.subscribe(['a.*', 'b.*'])).payload.eventTypes, ['a.*', 'b.*'])
  const over = await c.request('subscribe', { eventTypes: ['c.*', 'd.*'] })
  t.match(over, { type: 'error', payload: { code: 'TOO_MANY_SUBSCRIPTIONS' } })
  t.same((await c.request('get_subscriptions')).payload.eventTypes, ['a.*', 'b.*'], 'set unchanged: c.* was not added either')
  // Patterns already held do not count twice.
  t.same((await c.subscribe(['a.*', 'b.*', 'c.*'])).payload.eventTypes, ['a.*', 'b.*', 'c.*'], 'exactly at the limit is fine')
  t.match(await c.request('subscribe', { eventTypes: ['d.*'] }), { type: 'error', payload: { code: 'TOO_MANY_SUBSCRIPTIONS' } })
  t.same((await c.request('get_subscriptions')).payload.eventTypes, ['a.*', 'b.*', 'c.*'])
  // Room made by unsubscribing can be used again.
  await c.request('unsubscribe', { eventTypes: ['a.*'] })
  t.same((await c.subscribe(['d.*'])).payload.eventTypes, ['b.*', 'c.*', 'd.*'])
  await bystanderServed('too many subscriptions')
})

t.test('subscribe/unsubscribe payloads of the wrong shape are INVALID_PAYLOAD', async (t) => {
  const { open, bystanderServed } = await hostileSetup(t)
  const c = await open()
  await c.subscribe(['keep.*'])
  const cases: Array<[string, unknown]> = [
    ['no payload', undefined],
    ['no eventTypes', {}],
    ['eventTypes a string', { eventTypes: 'authentication.*' }],
    ['eventTypes an object', { eventTypes: { 0: 'a' } }],
    ['eventTypes null', { eventTypes: null }],
    ['empty list', { eventTypes: [] }],
    ['numbers', { eventTypes: [1, 2] }],
    ['mixed', { eventTypes: ['ok.*', 7] }],
    ['nested arrays', { eventTypes: [['a']] }],
  ]
  // Every error counts toward the abuse limit, so unsubscribe gets its own connection.
  const u = await open()
  await u.subscribe(['keep.*'])
  for (const [type, client] of [['subscribe', c], ['unsubscribe', u]] as const) {
    for (const [label, payload] of cases) {
      const r = await client.request(type, payload)
      t.match(r, { type: 'error', payload: { code: 'INVALID_PAYLOAD' } }, `${type}: ${label}`)
    }
  }
  t.same((await u.request('get_subscriptions')).payload.eventTypes, ['keep.*'], 'unsubscribe: subscriptions unchanged')
  // payload itself not an object
  for (const [i, payload] of [[1], 'str', 5].entries()) {
    c.send({ type: 'subscribe', id: `np-${i}`, payload })
    t.match(await c.next((f) => f.id === `np-${i}`), { type: 'error', payload: { code: 'INVALID_PAYLOAD' } }, `payload ${JSON.stringify(payload)}`)
  }
  t.same((await c.request('get_subscriptions')).payload.eventTypes, ['keep.*'], 'subscriptions unchanged')
  t.equal(c.closeInfo, null)
  await bystanderServed('invalid payload')
})

t.test('repeated abuse closes the connection with 4029', async (t) => {
  const { open, bystanderServed } = await hostileSetup(t)
  const c = await open()
  // 20 bad frames in a minute are tolerated...
  for (let i = 0; i < 20; i++) c.send('{bad')
  await c.collect((f) => f.type === 'error', 20)
  t.equal((await c.request('ping')).type, 'pong', 'still served after 20 bad frames')
  t.equal(c.closeInfo, null)
  // ...the 21st is one too many.
  c.send({ type: 'nope', id: 'last-straw' })
  const { code } = await within(5000, 'close', c.closed)
  t.equal(code, 4029)
  // A well-behaved client of the same user on the same node is untouched.
  const other = await open('mallory')
  t.equal((await other.request('ping')).type, 'pong')
  await bystanderServed('abuse')
})

t.test('mixed abuse counts every kind of bad frame toward 4029', async (t) => {
  const { open, bystanderServed } = await hostileSetup(t)
  const c = await open()
  const bad = ['{x', '[]', JSON.stringify({ type: 'nope' }), JSON.stringify({ type: 'subscribe', payload: { eventTypes: 'x' } }), JSON.stringify({ type: 'subscribe', payload: { eventTypes: ['BAD'] } })]
  // Every kind of bad frame counts: envelope errors and errors a handler reports alike.
  for (let i = 0; i < 20; i++) c.send(bad[i % bad.length]!)
  const errs = await c.collect((f) => f.type === 'error', 20)
  t.same(new Set(errs.map((f) => f.payload.code)), new Set(['BAD_JSON', 'BAD_MESSAGE', 'UNKNOWN_TYPE', 'INVALID_PAYLOAD', 'INVALID_PATTERN']))
  t.equal((await c.request('ping')).type, 'pong', 'still served after 20')
  c.send(bad[3]!)
  const { code } = await within(5000, 'close', c.closed)
  t.equal(code, 4029)
  await bystanderServed('mixed abuse')
})
