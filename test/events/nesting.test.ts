// Deeply nested `data` (docs/design.md, "Nesting depth"): about 4,100 levels
// of arrays in an 8 KB body used to take down every node holding a Socket.IO
// subscriber (Socket.IO's encoder overflowed the stack inside the Redis
// message handler), and the API answered 500. Now every entry point refuses
// data nested past 32 levels: the HTTP API (400 DATA_TOO_DEEP), /ws/admin,
// the publisher library in both modes, and a node decoding a message that
// some other tool put straight on Redis. Two node processes on a private
// Redis, each with a Socket.IO and a raw WebSocket subscriber.
import t, { type Test } from 'tap'
import { Redis } from 'ioredis'
import { HeraldPublisher, PublishError } from '../../src/client/publisher.js'
import { connect, type TestClient } from '../helpers/client.js'
import { startCluster } from '../helpers/cluster.js'
import type { NodeProc } from '../helpers/node.js'
import { metric, mustStayUp, parseMetrics } from '../helpers/ops.js'
import { sioConnect, type SioClient } from '../helpers/sio.js'
import { TEST_API_KEY, adminToken, userToken } from '../helpers/tokens.js'
import { within } from '../helpers/wait.js'

const { nodes, rc, redis } = await startCluster(t, {}, 2)
const [A, B] = nodes as [NodeProc, NodeProc]
for (const n of nodes) mustStayUp(t, n)

/** `depth` levels of arrays around 1, as JSON text (built as text: the test's own JSON.stringify would overflow too). */
const nested = (depth: number): string => '['.repeat(depth) + '1' + ']'.repeat(depth)
/** The value JSON.parse makes of it. */
const nestedValue = (depth: number): unknown => JSON.parse(nested(depth))

/** POST with a body given as JSON text. */
async function post (n: NodeProc, path: string, body: string): Promise<{ status: number, body: any }> {
  const res = await fetch(n.http + path, { method: 'POST', headers: { authorization: `Bearer ${TEST_API_KEY}`, 'content-type': 'application/json' }, body })
  return { status: res.status, body: await res.json() }
}

interface Subscribers { ws: TestClient, sio: SioClient }
async function subscribers (t: Test, n: NodeProc, user: string, wsPatterns = ['*']): Promise<Subscribers> {
  const ws = await connect(`${n.ws}/ws/events`, { token: userToken(`${user}-ws`) })
  t.teardown(() => ws.close())
  await ws.subscribe(wsPatterns)
  const { client: sio } = await sioConnect(n.http, { transports: ['websocket'], auth: { token: userToken(`${user}-sio`) } })
  t.teardown(() => sio.close())
  await sio.subscribe(['*'])
  return { ws, sio }
}

/** Every subscriber receives the event `id` (the node and the connection are alive and served). */
async function allReceive (subs: Subscribers[], id: string): Promise<void> {
  for (const s of subs) {
    await s.ws.next((f) => (f.type === 'event' || f.type === 'notification') && f.payload?.id === id, 5000)
    await s.sio.next((r) => (r.event === 'event' || r.event === 'notification') && r.payload?.id === id, 5000)
  }
}

const systemEvent = async (n: NodeProc, tag: string): Promise<string> => {
  const r = await n.api('/api/events', { body: { type: 'system.nesting.check', data: { tag } } })
  if (r.status !== 202) throw new Error(`publish answered ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.id as string
}

const scrape = async (n: NodeProc): Promise<ReturnType<typeof parseMetrics>> => parseMetrics((await n.api('/metrics', { key: '' })).body as string)

t.test('the API refuses data nested 4,100 levels with 400 DATA_TOO_DEEP, on every publish route; 32 levels reach both transports, 33 are refused', { timeout: 30_000 }, async (t) => {
  const subs = [await subscribers(t, A, 'api-a'), await subscribers(t, B, 'api-b')]
  const deep = nested(4100)
  t.ok(deep.length < 9000, `an ${deep.length}-byte body`)
  for (const [path, body] of [
    ['/api/events', `{"type":"system.deep","data":{"x":${deep}}}`],
    ['/api/notifications/users/api-a-ws', `{"level":"info","title":"t","message":"m","data":{"x":${deep}}}`],
    ['/api/notifications/broadcast', `{"level":"info","title":"t","message":"m","data":{"x":${deep}}}`],
  ] as const) {
    const r = await within(5000, `POST ${path}`, post(A, path, body))
    t.equal(r.status, 400, `${path}: 400`)
    t.equal(r.body.error?.code, 'DATA_TOO_DEEP', `${path}: DATA_TOO_DEEP`)
    t.match(r.body.error?.message, /at most 32 levels/, 'the message states the limit')
  }
  // The deepest body the 64 KiB limit lets through: parsed (JSON.parse and its
  // prototype scan are iterative), then refused like the others.
  const deepest = `{"type":"system.deep","data":{"x":${nested(32_000)}}}`
  t.ok(deepest.length < 64 * 1024, `${deepest.length} bytes`)
  t.match(await within(5000, 'the deepest body', post(A, '/api/events', deepest)), { status: 400, body: { error: { code: 'DATA_TOO_DEEP' } } }, '32,000 levels: 400 DATA_TOO_DEEP')
  const proto = `{"type":"system.deep","data":{"constructor":{"prototype":{}},"x":${nested(32_000)}}}`
  t.match(await within(5000, 'a body the prototype scan walks', post(A, '/api/events', proto)), { status: 400 }, 'one that makes the parser scan every level for prototype keys: 400 as well')
  await allReceive(subs, await systemEvent(A, 'after-refusals'))
  t.pass('both nodes and all four subscribers are still served')

  // The limit itself: data is level 1, so {"x": 31 levels} is 32.
  const atLimit = await post(A, '/api/events', `{"type":"system.deep","data":{"x":${nested(31)}}}`)
  t.equal(atLimit.status, 202, 'data nested 32 levels is accepted')
  await allReceive(subs, atLimit.body.id)
  const got = subs[1]!.sio.records.find((r) => r.event === 'event' && r.payload?.id === atLimit.body.id)!
  t.same(got.payload.data, { x: nestedValue(31) }, 'and reaches a Socket.IO subscriber on another node intact')
  const over = await post(A, '/api/events', `{"type":"system.deep","data":{"x":${nested(32)}}}`)
  t.match(over, { status: 400, body: { error: { code: 'DATA_TOO_DEEP' } } }, '33 levels are refused')
})

t.test('/ws/admin broadcast with deep data: an error frame DATA_TOO_DEEP, the connection stays', { timeout: 20_000 }, async (t) => {
  const admin = await connect(`${A.ws}/ws/admin`, { token: adminToken('nesting-admin') })
  t.teardown(() => admin.close())
  admin.send(`{"type":"broadcast","id":"deep","payload":{"level":"info","title":"t","message":"m","data":{"x":${nested(4000)}}}}`)
  const reply = await admin.next((f) => f.id === 'deep')
  t.match(reply, { type: 'error', payload: { code: 'DATA_TOO_DEEP' } })
  t.equal((await admin.request('ping')).type, 'pong', 'the admin connection is still served')
})

t.test('the publisher library refuses deep data in both modes with PublishError 400 DATA_TOO_DEEP', { timeout: 20_000 }, async (t) => {
  const subs = [await subscribers(t, A, 'lib-a')]
  const direct = new Redis(redis.url)
  t.teardown(() => direct.disconnect())
  for (const [mode, p] of [['http', new HeraldPublisher({ url: A.http, apiKey: TEST_API_KEY })], ['redis', new HeraldPublisher({ redis: direct })]] as const) {
    for (const depth of [4100, 20_000]) {
      const data = { x: nestedValue(depth) }
      for (const [what, call] of [
        ['publish', () => p.publishSystemEvent('system.maintenance.scheduled', data)],
        ['sendUserNotification', () => p.sendUserNotification('lib-a-ws', 'info', 't', 'm', data)],
        ['sendBroadcastNotification', () => p.sendBroadcastNotification('info', 't', 'm', data)],
      ] as const) {
        const err = await call().then(() => null, (e: unknown) => e)
        t.ok(err instanceof PublishError, `${mode} ${what}, ${depth} levels: a PublishError (${String(err)})`)
        t.match(err, { status: 400, code: 'DATA_TOO_DEEP' })
      }
    }
    const ok = await p.publishSystemEvent('system.maintenance.scheduled', { x: nestedValue(31) })
    await allReceive(subs, ok)
    t.pass(`${mode}: 32 levels are published and delivered`)
  }
})

t.test('a message nested 4,100 or 10,000 levels put straight on Redis: no node stops, every subscriber keeps receiving, the drop is counted and logged', { timeout: 30_000 }, async (t) => {
  const subs = [await subscribers(t, A, 'raw-a'), await subscribers(t, B, 'raw-b')]
  const before = await Promise.all(nodes.map(scrape))
  const fromLine = nodes.map((n) => n.lines.length)
  const ids: string[] = []
  for (const depth of [4100, 10_000]) {
    const id = `deep-${depth}`
    ids.push(id)
    const json = `{"id":"${id}","type":"system.deep","timestamp":"2030-01-01T00:00:00.000Z","data":{"x":${nested(depth)}}}`
    t.equal(await rc.publish('herald:{b}', `e\t\t${Date.now()}\tsystem.deep\t\t\t\t\t${json}`), 2, `${depth} levels: both nodes hear it`)
    t.equal(await rc.publish('herald:{b}', `n\t\t${Date.now()}\tnotification\t\t\t\t\t${json}`), 2, 'as a notification too')
  }
  // Ordered after the deep ones on the same channel: once it arrives, they have been handled.
  await allReceive(subs, await systemEvent(B, 'after-raw'))
  t.pass('both nodes still serve all four subscribers')
  for (const s of subs) {
    t.equal(s.ws.count((f) => ids.includes(f.payload?.id)), 0, 'the deep messages reached no WebSocket subscriber')
    t.equal(s.sio.count((r) => ids.includes(r.payload?.id)), 0, 'nor a Socket.IO one')
  }
  for (const [i, n] of nodes.entries()) {
    const after = await scrape(n)
    t.equal(metric(after, 'herald_broker_messages_dropped_total', { reason: 'too_deep' }) - metric(before[i]!, 'herald_broker_messages_dropped_total', { reason: 'too_deep' }), 4, `${n.serverId}: four drops counted as too_deep`)
    const line = await n.waitLine((l) => n.lines.indexOf(l) >= fromLine[i]! && l.includes('message from Redis dropped') && l.includes('"too_deep"'), 1000)
    t.match(JSON.parse(line), { level: 40, reason: 'too_deep', channel: 'herald:{b}' }, 'logged at warn with the reason')
  }
})

t.test('a message whose JSON does not parse: Socket.IO subscribers skip it and stay connected, nothing escapes the Redis handler', { timeout: 30_000 }, async (t) => {
  // The node does not parse what it relays to WebSocket clients: those would get
  // the text as it is (the test client would choke on it), so they listen elsewhere.
  const subs = [await subscribers(t, A, 'bad-a', ['system.nesting.*']), await subscribers(t, B, 'bad-b', ['system.nesting.*'])]
  const before = await Promise.all(nodes.map(scrape))
  // Balanced brackets, not JSON: only a parse finds out, and only Socket.IO parses.
  const bad = '{"id":"unparsable","type":"system.bad","data":{"a":}}'
  t.equal(await rc.publish('herald:{b}', `e\t\t${Date.now()}\tsystem.bad\t\t\t\t\t${bad}`), 2)
  await allReceive(subs, await systemEvent(A, 'after-unparsable'))
  for (const s of subs) {
    t.ok(s.sio.socket.connected, 'the Socket.IO subscriber is still connected')
    t.equal(s.sio.count((r) => r.payload?.id === 'unparsable'), 0, 'and was not sent it')
  }
  for (const [i, n] of nodes.entries()) {
    const after = await scrape(n)
    t.equal(metric(after, 'herald_broker_messages_dropped_total', { reason: 'malformed' }) - metric(before[i]!, 'herald_broker_messages_dropped_total', { reason: 'malformed' }), 1, `${n.serverId}: counted once as malformed`)
    t.equal(metric(after, 'herald_delivery_failures_total') - metric(before[i]!, 'herald_delivery_failures_total'), 0, 'not as a failure of the recipients')
  }
})
