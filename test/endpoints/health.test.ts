// /ws/health as load balancers and operators use it, and the
// graceful drain.
import t from 'tap'
import { drain } from '../../src/endpoints/drain.js'
import { HEALTH_STREAMS_PER_IP, HEALTH_STREAMS_PER_NODE } from '../../src/endpoints/health.js'
import { startApp } from '../helpers/app.js'
import { connect, refusal } from '../helpers/client.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

async function get (url: string): Promise<{ status: number, body: any, headers: Headers }> {
  const res = await fetch(url)
  const text = await res.text()
  let body: unknown = text
  try { body = JSON.parse(text) } catch {}
  return { status: res.status, body, headers: res.headers }
}

t.test('GET /ws/health: 200 JSON readiness; connections counts open sockets', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const r = await get(`${node.http}/ws/health`)
  t.equal(r.status, 200)
  t.match(r.headers.get('content-type'), /application\/json/)
  t.match(r.headers.get('cache-control'), /no-store/, 'probes are never cached')
  t.match(r.body, { healthy: true, serverId: node.app.herald.config.serverId, connections: 0, redisConnected: false, uptime: Number, draining: false })
  for (const k of ['healthy', 'serverId', 'connections', 'redisConnected', 'uptime', 'draining']) t.ok(k in r.body, `has ${k}`)
  t.equal((await get(`${node.http}/ws/health?probe=ready`)).status, 200, '?probe=ready is readiness')
  // Health needs no credentials, and ignores ones it does not need.
  t.equal((await get(`${node.http}/ws/health?token=whatever`)).status, 200)

  const clients = [
    await connect(`${node.ws}/ws/events`, { token: userToken('alice') }),
    await connect(`${node.ws}/ws/events`, { token: userToken('bob') }),
    await connect(`${node.ws}/ws/admin`, { token: adminToken() }),
  ]
  for (const c of clients) t.teardown(() => c.close())
  t.equal((await get(`${node.http}/ws/health`)).body.connections, 3, 'events and admin connections count')

  await clients[1]!.close()
  const after = await waitFor('connections to drop to 2', async () => (await get(`${node.http}/ws/health`)).body, (b) => b.connections === 2)
  t.equal(after.connections, 2, 'a closed socket no longer counts')
  t.equal(after.healthy, true)
})

t.test('?probe=live answers 200 while the process serves; readiness 503 when draining', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const live = await get(`${node.http}/ws/health?probe=live`)
  t.equal(live.status, 200)
  t.match(live.body, { serverId: node.app.herald.config.serverId })

  node.app.herald.draining = true
  const ready = await get(`${node.http}/ws/health`)
  t.equal(ready.status, 503, 'readiness 503 while draining')
  t.match(ready.body, { healthy: false, draining: true, serverId: String, connections: 0 })
  t.equal((await get(`${node.http}/ws/health?probe=ready`)).status, 503)
  t.equal((await get(`${node.http}/ws/health?probe=live`)).status, 200, 'liveness still 200')
  const bad = await get(`${node.http}/ws/health?probe=bogus`)
  t.equal(bad.status, 400, 'an unknown probe is a validation error')
  t.equal(bad.body?.error?.code, 'VALIDATION')
})

t.test('upgrade on /ws/health streams health frames without auth', async (t) => {
  const node = await startApp({ HEALTH_STREAM_INTERVAL: '100' })
  t.teardown(() => node.close())
  const stream = await connect(`${node.ws}/ws/health`, { waitWelcome: false })
  t.teardown(() => stream.close())
  const frames = await stream.collect((f) => f.type === 'health', 3, 5000)
  for (const f of frames.slice(0, 3)) {
    t.match(f.payload, { healthy: true, serverId: node.app.herald.config.serverId, connections: Number, redisConnected: false, uptime: Number, draining: false })
  }
  t.notOk(stream.frames.some((f) => f.type === 'welcome'), 'no welcome: it is not a client connection')

  // The stream follows the node: a new connection shows in the next frames.
  const c = await connect(`${node.ws}/ws/events`, { token: userToken('alice') })
  t.teardown(() => c.close())
  const seen = stream.frames.length
  const f = await stream.next((x) => x.type === 'health' && x.payload.connections === 1, 5000, seen)
  t.equal(f.payload.connections, 1)
  t.equal(node.app.herald.healthStreams.size, 1, 'health streams are not client connections')
  t.equal(node.app.herald.connections.size, 1)

  // Binary frames are refused with 1003; the stream is text only.
  const other = await connect(`${node.ws}/ws/health`, { waitWelcome: false })
  t.teardown(() => other.close())
  await other.nextOfType('health')
  other.ws.send(Buffer.from([1, 2, 3]), { binary: true })
  t.equal((await within(5000, 'close', other.closed)).code, 1003)
})

t.test('drain(): closes every connection with 1001 and readiness goes 503', async (t) => {
  const node = await startApp({ HEALTH_STREAM_INTERVAL: '100' })
  t.teardown(() => node.close())
  const clients = [
    await connect(`${node.ws}/ws/events`, { token: userToken('alice') }),
    await connect(`${node.ws}/ws/events`, { token: userToken('bob') }),
    await connect(`${node.ws}/ws/events`, { token: userToken('carol') }),
    await connect(`${node.ws}/ws/admin`, { token: adminToken() }),
  ]
  for (const c of clients) t.teardown(() => c.close())
  const stream = await connect(`${node.ws}/ws/health`, { waitWelcome: false })
  t.teardown(() => stream.close())
  await stream.nextOfType('health')
  t.equal((await get(`${node.http}/ws/health`)).status, 200)

  const started = Date.now()
  const drained = drain(node.app.herald, 300)
  // Readiness turns at once, before the window ends.
  const during = await get(`${node.http}/ws/health`)
  t.equal(during.status, 503, 'readiness 503 as soon as the drain starts')
  t.equal(during.body.draining, true)
  await within(5000, 'drain', drained)
  const elapsed = Date.now() - started
  t.ok(elapsed >= 150, `closes are spread over the window (${elapsed} ms)`)

  for (const [i, c] of clients.entries()) {
    const { code } = await within(5000, `client ${i} close`, c.closed)
    t.equal(code, 1001, `client ${i + 1} closed with 1001`)
  }
  t.equal((await within(5000, 'stream close', stream.closed)).code, 1001, 'health stream closed with 1001')
  t.equal(node.app.herald.connections.size, 0, 'no connection left')

  const r = await get(`${node.http}/ws/health`)
  t.equal(r.status, 503)
  t.match(r.body, { healthy: false, draining: true, connections: 0 })
  t.equal((await get(`${node.http}/ws/health?probe=live`)).status, 200, 'still alive')
  // New connections are refused while draining.
  const refused = await refusal(`${node.ws}/ws/events?token=${userToken('dave')}`)
  t.equal(refused.status, 503, 'upgrade refused while draining')
  t.equal(refused.body?.error?.code, 'DRAINING')
})

t.test('health streams are bounded: per IP, per node, refused while draining, and a silent peer is dropped', { timeout: 30_000 }, async (t) => {
  // No token is needed, so nothing else stops an anonymous peer from holding
  // sockets: these bounds are the only ones.
  const node = await startApp({ TRUSTED_PROXIES: '127.0.0.1', WEBSOCKET_HEARTBEAT_INTERVAL: '300', HEALTH_STREAM_INTERVAL: '60000' })
  t.teardown(() => node.close())
  const streams: Array<Awaited<ReturnType<typeof connect>>> = []
  const open = async (ip: string): Promise<Awaited<ReturnType<typeof connect>>> => {
    const c = await connect(`${node.ws}/ws/health`, { waitWelcome: false, headers: { 'x-forwarded-for': ip } })
    t.teardown(() => c.close())
    await c.nextOfType('health')
    streams.push(c)
    return c
  }
  for (let i = 0; i < HEALTH_STREAMS_PER_IP; i++) await open('198.51.100.1')
  const perIp = await refusal(`${node.ws}/ws/health`, { 'x-forwarded-for': '198.51.100.1' })
  t.equal(perIp.status, 429, `stream ${HEALTH_STREAMS_PER_IP + 1} from one IP is refused`)
  t.equal(perIp.body?.error?.code, 'CONNECTION_LIMIT')
  t.ok(perIp.headers['retry-after'], 'with Retry-After')
  await open('198.51.100.2') // another IP is not held up

  // Fill the node from many addresses, then one more is refused.
  const held = HEALTH_STREAMS_PER_IP + 1
  await Promise.all(Array.from({ length: HEALTH_STREAMS_PER_NODE - held }, async (_v, i) => await open(`10.9.${Math.floor(i / 8)}.${i % 8}`)))
  t.equal(node.app.herald.healthStreams.size, HEALTH_STREAMS_PER_NODE)
  const full = await refusal(`${node.ws}/ws/health`, { 'x-forwarded-for': '203.0.113.99' })
  t.equal(full.status, 503, 'past the node bound: 503')
  t.equal(full.body?.error?.code, 'NODE_FULL')

  // A peer that stops answering pings is closed 4009, which frees its place.
  await streams.pop()!.close()
  await waitFor('a free place', async () => node.app.herald.healthStreams.size, (n) => n < HEALTH_STREAMS_PER_NODE)
  const { default: WebSocket } = await import('ws')
  const silent = new WebSocket(`${node.ws}/ws/health`, { headers: { 'x-forwarded-for': '203.0.113.7' }, autoPong: false })
  silent.on('error', () => {})
  t.teardown(() => silent.terminate())
  const code = await within(5000, 'the silent peer closed', new Promise<number>((resolve) => silent.once('close', (c) => resolve(c))))
  t.equal(code, 4009, 'a peer that answers no ping is closed 4009')

  // Draining: no new stream.
  const drained = drain(node.app.herald, 100)
  const draining = await refusal(`${node.ws}/ws/health`, { 'x-forwarded-for': '203.0.113.9' })
  t.equal(draining.status, 503, 'refused while draining')
  t.equal(draining.body?.error?.code, 'DRAINING')
  await within(5000, 'the drain', drained)
})
