// GET /metrics: Prometheus text with connections, messages, events
// published and delivered, delivery latency, auth failures by reason,
// rate-limit hits, disconnects by code and Redis state. Every value is read
// before and after the test acts on the node, so each must move for real.
// Node A is the one scraped; B (and C) publish into it across a private Redis.
import t, { type Test } from 'tap'
import { connect, refusal, type TestClient } from '../helpers/client.js'
import type { NodeProc } from '../helpers/node.js'
import { health, metric, opsCluster, parseMetrics, type Sample } from '../helpers/ops.js'
import { sioAttempt, sioConnect } from '../helpers/sio.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const PER_USER = 3
const ORIGIN = 'https://app.example.com'
const cl = await opsCluster(t, { NODE_TTL: '1500', HEALTH_PROBE_INTERVAL: '200' }, ['met-a', 'met-b', 'met-c'], [{ MAX_CONNECTIONS_PER_USER: String(PER_USER), ALLOWED_ORIGINS: ORIGIN }])
const [A, B, C] = cl.nodes as [NodeProc, NodeProc, NodeProc]

async function scrape (n: NodeProc = A): Promise<Sample[]> {
  const r = await n.api('/metrics', { key: '' })
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`)
  return parseMetrics(r.body as string)
}

/** Waits until A holds no connection: closes from earlier tests are counted before a baseline is read. */
async function settled (): Promise<void> {
  await waitFor('A to hold no connection', async () => (await health(A)).body.connections, (n) => n === 0, { timeoutMs: 5000 })
}

async function open (t: Test, userId: string, path = '/ws/events'): Promise<TestClient> {
  const c = await connect(`${A.ws}${path}`, { token: path === '/ws/admin' ? adminToken(userId) : userToken(userId) })
  t.teardown(() => c.close())
  return c
}

t.test('Prometheus text format with the build, the node and Redis state', async (t) => {
  const r = await A.api('/metrics', { key: '' })
  t.equal(r.status, 200)
  t.match(r.headers.get('content-type'), /^text\/plain; version=0\.0\.4/, 'Prometheus content type')
  const text = r.body as string
  for (const name of ['herald_connections', 'herald_messages_in_total', 'herald_messages_out_total', 'herald_events_published_total', 'herald_events_delivered_total',
    'herald_delivery_latency_seconds', 'herald_auth_failures_total', 'herald_rate_limit_hits_total', 'herald_disconnects_total', 'herald_redis_up', 'herald_redis_probe_latency_seconds', 'herald_build_info',
    'herald_broker_messages_dropped_total', 'herald_delivery_failures_total', 'herald_delivery_backlog_messages', 'herald_delivery_lag_seconds', 'herald_pubsub_missed_messages_total']) {
    t.match(text, new RegExp(`^# HELP ${name} \\S`, 'm'), `${name} has HELP`)
    t.match(text, new RegExp(`^# TYPE ${name} (counter|gauge|histogram)$`, 'm'), `${name} has TYPE`)
  }
  t.match(text, /^# TYPE herald_delivery_latency_seconds histogram$/m)
  // Node's own metrics under the herald_ prefix, as the README names them (no doubled word).
  for (const name of ['herald_process_resident_memory_bytes', 'herald_process_cpu_seconds_total', 'herald_nodejs_eventloop_lag_seconds', 'herald_nodejs_heap_size_used_bytes']) {
    t.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`)
  }
  t.notMatch(text, /process_process_|process_nodejs_/, 'no doubled prefix')
  const s = parseMetrics(text)
  const build = s.find((x) => x.name === 'herald_build_info')!
  t.match(build, { value: 1, labels: { version: '0.1.0', server_id: A.serverId } }, 'build info with version and node')
  t.equal(metric(s, 'herald_redis_up'), 1, 'herald_redis_up 1 on a Redis node')
  t.ok(s.filter((x) => x.name.startsWith('herald_')).every((x) => x.labels.server_id === A.serverId), 'every sample names the node')
  const probes = metric(s, 'herald_redis_probe_latency_seconds_count')
  const later = await waitFor('more probe round trips', async () => await scrape(), (x) => metric(x, 'herald_redis_probe_latency_seconds_count') >= probes + 2, { timeoutMs: 3000, intervalMs: 100 })
  t.pass('herald_redis_probe_latency_seconds counts probe round trips as they happen')
  t.ok(metric(later, 'herald_redis_probe_latency_seconds_sum') > metric(s, 'herald_redis_probe_latency_seconds_sum'), 'and their latency adds to the sum')
})

t.test('herald_connections follows the open connections by endpoint', async (t) => {
  await settled()
  const before = await scrape()
  const base = { events: metric(before, 'herald_connections', { endpoint: 'events' }), admin: metric(before, 'herald_connections', { endpoint: 'admin' }) }
  t.same(base, { events: 0, admin: 0 }, 'zero while the node holds no connection')
  const cs = [await open(t, 'conn-1'), await open(t, 'conn-2'), await open(t, 'conn-3')]
  await open(t, 'conn-admin', '/ws/admin')
  let s = await scrape()
  t.equal(metric(s, 'herald_connections', { endpoint: 'events' }), base.events + 3, 'three more events connections')
  t.equal(metric(s, 'herald_connections', { endpoint: 'admin' }), base.admin + 1, 'one more admin connection')
  await cs[0]!.close()
  s = await waitFor('the gauge to drop', scrape, (x) => metric(x, 'herald_connections', { endpoint: 'events' }) === base.events + 2)
  t.equal(metric(s, 'herald_connections', { endpoint: 'events' }), (await health(A)).body.connections - base.admin - 1, 'equal to the open count after a close')
})

t.test('messages in and out', async (t) => {
  const c = await open(t, 'msg-u')
  const before = await scrape()
  for (let i = 0; i < 5; i++) t.equal((await c.request('ping')).type, 'pong')
  await c.subscribe(['session.*'])
  const after = await scrape()
  t.equal(metric(after, 'herald_messages_in_total', { endpoint: 'events', type: 'ping' }) - metric(before, 'herald_messages_in_total', { endpoint: 'events', type: 'ping' }), 5, '5 pings in')
  t.equal(metric(after, 'herald_messages_in_total', { endpoint: 'events', type: 'subscribe' }) - metric(before, 'herald_messages_in_total', { endpoint: 'events', type: 'subscribe' }), 1, '1 subscribe in')
  t.ok(metric(after, 'herald_messages_out_total', { endpoint: 'events' }) - metric(before, 'herald_messages_out_total', { endpoint: 'events' }) >= 6, '6 replies out')
})

t.test('events published and delivered, with the delivery latency histogram', async (t) => {
  await settled()
  const [u1, u2] = [await open(t, 'ev-1'), await open(t, 'ev-2')]
  await u1.subscribe(['*'])
  await u2.subscribe(['*'])
  const [before, beforeB] = [await scrape(), await scrape(B)]
  const fromB: string[] = []
  for (let i = 0; i < 10; i++) fromB.push((await B.api('/api/events', { body: { type: 'session.remote', userId: 'ev-1', data: { i } } })).body.id)
  const local = (await A.api('/api/events', { body: { type: 'session.local', userId: 'ev-2' } })).body.id as string
  const n = await B.api('/api/notifications/users/ev-2', { body: { level: 'info', title: 't', message: 'm' } })
  await u1.collect((f) => f.type === 'event', 10, 5000)
  await u2.next((f) => f.type === 'event' && f.payload.id === local)
  await u2.next((f) => f.type === 'notification' && f.payload.id === n.body.id)
  const [after, afterB] = [await scrape(), await scrape(B)]
  const d = (name: string, labels: Record<string, string> = {}): number => metric(after, name, labels) - metric(before, name, labels)
  t.equal(d('herald_events_published_total', { kind: 'event' }), 1, 'A counts the one event published through it')
  t.equal(metric(afterB, 'herald_events_published_total', { kind: 'event' }) - metric(beforeB, 'herald_events_published_total', { kind: 'event' }), 10, 'B counts its ten')
  t.equal(metric(afterB, 'herald_events_published_total', { kind: 'notification' }) - metric(beforeB, 'herald_events_published_total', { kind: 'notification' }), 1, 'and its notification')
  t.equal(d('herald_events_delivered_total', { kind: 'event' }), 11, '11 event frames delivered on A')
  t.equal(d('herald_events_delivered_total', { kind: 'notification' }), 1, '1 notification delivered on A')
  t.equal(d('herald_delivery_latency_seconds_count', { kind: 'event' }), 11, 'a latency observation per delivered dispatch')
  t.equal(d('herald_delivery_latency_seconds_bucket', { kind: 'event', le: '+Inf' }), 11, '+Inf bucket moved by the same count')
  t.ok(d('herald_delivery_latency_seconds_bucket', { kind: 'event', le: '1' }) >= 10, 'nearly all within a second')
  t.ok(d('herald_delivery_latency_seconds_sum', { kind: 'event' }) > 0, 'latency sum grew')
  const buckets = after.filter((x) => x.name === 'herald_delivery_latency_seconds_bucket' && x.labels.kind === 'event').map((x) => x.value)
  t.same(buckets, [...buckets].sort((a, b) => a - b), 'buckets are cumulative')
})

t.test('auth failures by reason, rate-limit hits, disconnects by code', async (t) => {
  await settled()
  const before = await scrape()
  const d = async (name: string, labels: Record<string, string>): Promise<number> => metric(await scrape(), name, labels) - metric(before, name, labels)

  t.equal((await refusal(`${A.ws}/ws/events`)).status, 401)
  t.equal((await refusal(`${A.ws}/ws/events?token=garbage`)).status, 401)
  t.equal((await refusal(`${A.ws}/ws/events?token=also-garbage`)).status, 401)
  t.equal((await refusal(`${A.ws}/ws/admin?token=${userToken('not-admin')}`)).status, 403)
  t.equal((await A.api('/api/events', { key: 'wrong-key-0123456789', body: { type: 'x.y' } })).status, 401)
  t.equal(await d('herald_auth_failures_total', { endpoint: 'events', reason: 'TOKEN_MISSING' }), 1, 'TOKEN_MISSING once')
  t.equal(await d('herald_auth_failures_total', { endpoint: 'events', reason: 'TOKEN_INVALID' }), 2, 'TOKEN_INVALID twice')
  t.equal(await d('herald_auth_failures_total', { endpoint: 'admin', reason: 'ROLE_FORBIDDEN' }), 1, 'ROLE_FORBIDDEN on admin once')
  t.equal(await d('herald_auth_failures_total', { endpoint: 'api', reason: 'CREDENTIAL_INVALID' }), 1, 'CREDENTIAL_INVALID on the API once')

  // MAX_CONNECTIONS_PER_USER is 3 on A.
  const mine = [await open(t, 'limited'), await open(t, 'limited'), await open(t, 'limited')]
  t.match(await refusal(`${A.ws}/ws/events?token=${userToken('limited')}`), { status: 429, body: { error: { code: 'CONNECTION_LIMIT' } } })
  t.equal(await d('herald_rate_limit_hits_total', { scope: 'connection-user' }), 1, 'one connection-user hit')
  const authFailures = async (): Promise<number> => metric(await scrape(), 'herald_auth_failures_total') - metric(before, 'herald_auth_failures_total')
  t.equal(await authFailures(), 5, 'a connection limit is not an authentication failure: still the five above')

  await mine[0]!.close()
  await waitFor('the close to be counted', () => d('herald_disconnects_total', { endpoint: 'events', code: '1000' }), (n) => n === 1)
  const r = await C.api(`/api/connections/${mine[1]!.frames[0]!.payload.connectionId}/disconnect`, { method: 'POST' })
  t.equal(r.status, 202)
  t.equal((await within(3000, 'the admin disconnect', mine[1]!.closed)).code, 4003)
  await waitFor('the 4003 to be counted', () => d('herald_disconnects_total', { endpoint: 'events', code: '4003' }), (n) => n === 1)
  t.pass('herald_disconnects_total counts 1000 and 4003 separately')
})

t.test('disconnects: a code the client chose is counted as code="client", never as one of the node\'s codes or a series of its own', { timeout: 20_000 }, async (t) => {
  await settled()
  const before = await scrape()
  const d = (after: Sample[], code: string): number => metric(after, 'herald_disconnects_total', { endpoint: 'events', code }) - metric(before, 'herald_disconnects_total', { endpoint: 'events', code })
  // The node's own meanings (4004 revoked, 4008 slow consumer, 4029 rate
  // limited), codes nobody defined, and 1001 (a browser leaving the page).
  const clientCodes = [4004, 4008, 4029, 3999, 4500, 4999, 1001]
  for (const code of clientCodes) {
    const c = await open(t, `client-code-${code}`)
    c.ws.close(code, 'chosen by the client')
    t.equal((await within(3000, `the close with ${code}`, c.closed)).code, code, `the node answered the client's ${code}`)
  }
  // A normal closure means the same whoever sends it.
  const normal = await open(t, 'client-code-1000')
  await normal.close()
  // Closes the node chose while the client answers: a binary frame (1003), a frame over MAX_MESSAGE_BYTES (1009, sent by ws itself).
  const binary = await open(t, 'client-code-binary')
  binary.ws.send(Buffer.from([1, 2, 3]), { binary: true })
  t.equal((await within(3000, 'the 1003', binary.closed)).code, 1003)
  const big = await open(t, 'client-code-big')
  big.send('x'.repeat(20_000))
  t.equal((await within(3000, 'the 1009', big.closed)).code, 1009)

  const all = (x: Sample[]): number => metric(x, 'herald_disconnects_total', { endpoint: 'events' }) - metric(before, 'herald_disconnects_total', { endpoint: 'events' })
  const s = await waitFor('every close counted', scrape, (x) => all(x) >= clientCodes.length + 3)
  t.equal(d(s, 'client'), clientCodes.length, `the ${clientCodes.length} client-chosen codes in one bucket`)
  for (const code of clientCodes) t.equal(d(s, String(code)), 0, `nothing counted under code="${code}"`)
  t.same(s.filter((x) => x.name === 'herald_disconnects_total' && ['3999', '4500', '4999'].includes(x.labels.code!)), [], 'no series for a number only a client used')
  t.equal(d(s, '1000'), 1, 'a client\'s normal closure: 1000')
  t.equal(d(s, '1003'), 1, 'the node\'s 1003')
  t.equal(d(s, '1009'), 1, 'ws\'s 1009 on an oversized frame: the node\'s code, though the client answered the close')
})

t.test('Socket.IO traffic: connections, messages in, auth failures on socket.io (token and Origin), disconnects by code', { timeout: 30_000 }, async (t) => {
  await settled()
  const before = await scrape()
  const d = (after: Sample[], name: string, labels: Record<string, string>): number => metric(after, name, labels) - metric(before, name, labels)
  const overWs = await sioConnect(A.http, { transports: ['websocket'], auth: { token: userToken('sio-met-1') }, extraHeaders: { origin: ORIGIN } })
  t.teardown(() => overWs.client.close())
  const overPolling = await sioConnect(A.http, { transports: ['polling'], auth: { token: userToken('sio-met-2') } })
  t.teardown(() => overPolling.client.close())
  let s = await scrape()
  t.equal(d(s, 'herald_connections', { endpoint: 'events' }), 2, 'both Socket.IO clients in herald_connections{endpoint="events"}')
  t.equal(d(s, 'herald_connections', { endpoint: 'admin' }), 0)

  for (let i = 0; i < 3; i++) t.equal((await overWs.client.request('ping')).type, 'pong')
  await overPolling.client.subscribe(['session.*'])
  s = await scrape()
  t.equal(d(s, 'herald_messages_in_total', { endpoint: 'events', type: 'ping' }), 3, '3 pings in over Socket.IO')
  t.equal(d(s, 'herald_messages_in_total', { endpoint: 'events', type: 'subscribe' }), 1, '1 subscribe in over polling')
  t.ok(d(s, 'herald_messages_out_total', { endpoint: 'events' }) >= 4, 'replies out (welcomes and acks)')

  const badToken = await sioAttempt(A.http, { transports: ['websocket'], auth: { token: 'not.a.jwt' } })
  t.match(badToken, { ok: false, data: { code: 'TOKEN_INVALID' } })
  for (const transports of [['websocket'], ['polling']]) {
    const foreign = await sioAttempt(A.http, { transports, auth: { token: userToken('sio-met-3') }, extraHeaders: { origin: 'https://evil.example.org' } })
    t.equal(foreign.ok, false, `${transports[0]}: foreign Origin refused`)
  }
  s = await scrape()
  t.equal(d(s, 'herald_auth_failures_total', { endpoint: 'socket.io', reason: 'TOKEN_INVALID' }), 1, 'the bad token, on socket.io')
  t.equal(d(s, 'herald_auth_failures_total', { endpoint: 'socket.io', reason: 'ORIGIN_FORBIDDEN' }), 2, 'both foreign Origins, refused at the engine.io handshake')
  t.equal(d(s, 'herald_auth_failures_total', { endpoint: 'events' }), 0, 'not counted as /ws/events')

  overWs.client.close()
  overPolling.client.socket.io.engine.close()
  s = await waitFor('both disconnects counted', scrape, (x) => d(x, 'herald_disconnects_total', { endpoint: 'events' }) >= 2)
  t.equal(d(s, 'herald_disconnects_total', { endpoint: 'events', code: '1000' }), 1, 'socket.disconnect() on the client: 1000')
  t.equal(d(s, 'herald_disconnects_total', { endpoint: 'events', code: '1006' }), 1, 'a transport lost without a goodbye: 1006')
  s = await waitFor('the gauge back at its baseline', scrape, (x) => d(x, 'herald_connections', { endpoint: 'events' }) === 0)
  t.pass('herald_connections follows Socket.IO closes')
})

t.test('Redis state: herald_redis_up 0 while Redis is down, 1 once it is back', { timeout: 30_000 }, async (t) => {
  const before = await scrape()
  t.equal(metric(before, 'herald_redis_up'), 1)
  await cl.redis.kill()
  const down = await waitFor('herald_redis_up 0', scrape, (s) => metric(s, 'herald_redis_up') === 0, { timeoutMs: 5000 })
  t.equal(metric(down, 'herald_backend_ready'), 0, 'herald_backend_ready 0 too')
  t.equal(metric(down, 'herald_redis_state_changes_total', { state: 'down' }) - metric(before, 'herald_redis_state_changes_total', { state: 'down' }), 1, 'one transition down')
  await cl.redis.restart()
  const up = await waitFor('herald_redis_up 1', scrape, (s) => metric(s, 'herald_redis_up') === 1 && metric(s, 'herald_backend_ready') === 1, { timeoutMs: 10_000, intervalMs: 50 })
  t.equal(metric(up, 'herald_redis_state_changes_total', { state: 'up' }) - metric(before, 'herald_redis_state_changes_total', { state: 'up' }), 1, 'one transition up')
  t.equal(A.proc.exitCode, null, 'the node stayed up')
})
