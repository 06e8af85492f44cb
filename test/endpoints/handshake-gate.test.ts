// Client handshakes past the token check and not yet welcomed are bounded on
// a node (WEBSOCKET_MAX_HANDSHAKES, src/endpoints/handshake-gate.ts): the
// rest wait there, in order of arrival, each taking the place of one that
// has its welcome, its refusal or its close. First the gate on its own, then
// nodes: one whose single place the test holds itself, and ones whose Redis
// is paused, so that the handshake in flight stays in flight until the test
// lets it go.
import type { IncomingMessage } from 'node:http'
import net, { type Socket } from 'node:net'
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { WebSocket } from 'ws'
import { HandshakeGate, type GateLimits, type Refusing } from '../../src/endpoints/handshake-gate.js'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect, refusal, type TestClient } from '../helpers/client.js'
import { startRedis } from '../helpers/redis.js'
import { sio, sioAttempt } from '../helpers/sio.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const IP = '127.0.0.1'
/** A gate whose waits and caps are larger than any of these tests. */
const gateOf = (inFlight: number, refusing: () => Refusing | null, limits: Partial<GateLimits> = {}): HandshakeGate =>
  new HandshakeGate({ inFlight, waiting: 100_000, waitingPerIp: 100_000, waitMs: 600_000, ...limits }, refusing)

t.test('the gate gives its places at once, then in order of arrival as each ends, and counts an end once', async (t) => {
  const gate = gateOf(2, () => null)
  t.equal(gate.enter('a', IP), null, 'a free place is taken at once, without a promise')
  t.equal(gate.enter('b', IP), null)
  const got: string[] = []
  const c = gate.enter('c', IP)!.then((turned) => { got.push(`c ${turned}`) })
  const d = gate.enter('d', IP)!.then((turned) => { got.push(`d ${turned}`) })
  t.equal(gate.queued, 2)
  t.not(gate.enter('e', IP), null, 'nobody overtakes those waiting, even with a place free')
  gate.end('a')
  gate.end('a')
  await c
  t.same(got, ['c null'], 'one end, counted once, gives one place, to the first waiting')
  t.equal(gate.inFlight, 2)
  gate.end('b')
  await d
  t.same(got, ['c null', 'd null'])
  gate.end('nobody')
  t.equal(gate.inFlight, 2, 'ending a handshake that holds no place changes nothing')
  for (const id of ['c', 'd', 'e']) gate.end(id)
  t.equal(gate.inFlight, 0)
  t.equal(gate.queued, 0)
})

t.test('while the node refuses every handshake, those waiting are refused within a sweep', async (t) => {
  let refusing: Refusing | null = null
  const gate = gateOf(1, () => refusing)
  t.equal(gate.enter('held', IP), null)
  const waiting = [gate.enter('w1', IP)!, gate.enter('w2', IP)!]
  refusing = 'BACKEND_UNAVAILABLE'
  t.same(await within(5000, 'the sweep to refuse those waiting', Promise.all(waiting)), ['BACKEND_UNAVAILABLE', 'BACKEND_UNAVAILABLE'], 'refused, the one in flight still in flight')
  t.equal(gate.inFlight, 1, 'they took no place')
  gate.end('held')
  t.equal(gate.inFlight, 0)
})

t.test('a closed gate refuses those waiting and those to come', async (t) => {
  const gate = gateOf(1, () => null)
  t.equal(gate.enter('held', IP), null)
  const waiting = gate.enter('w', IP)!
  gate.close()
  t.equal(await waiting, 'DRAINING')
  t.equal(await gate.enter('late', IP), 'DRAINING')
})

t.test('10,000 waiting handshakes given their places one after the other, in order', async (t) => {
  const gate = gateOf(1, () => null)
  t.equal(gate.enter('first', IP), null)
  const order: number[] = []
  const all: Array<Promise<unknown>> = []
  for (let i = 0; i < 10_000; i++) {
    all.push(gate.enter(`w${i}`, IP)!.then(() => { order.push(i); gate.end(`w${i}`) }))
  }
  gate.end('first')
  await within(10_000, 'every waiting one to have its place', Promise.all(all))
  t.ok(order.length === 10_000 && order.every((n, i) => n === i), 'each in the order it came')
  t.equal(gate.inFlight, 0)
})

t.test('waiting is bounded: per IP address, per node, and in time', async (t) => {
  const gate = gateOf(1, () => null, { waiting: 3, waitingPerIp: 2, waitMs: 300 })
  t.equal(gate.enter('held', IP), null)
  const a1 = gate.enter('a1', '10.0.0.1')!
  const a2 = gate.enter('a2', '10.0.0.1')!
  t.equal(await gate.enter('a3', '10.0.0.1'), 'ip', 'an IP address waits with as many as its connection limit, no more')
  const b1 = gate.enter('b1', '10.0.0.2')!
  t.equal(await gate.enter('c1', '10.0.0.3'), 'queue', 'nor the node with more than it holds connections')
  gate.end('held')
  t.equal(await a1, null, 'the first waiting has the place')
  const a4 = gate.enter('a4', '10.0.0.1')!
  t.equal(gate.queued, 3, 'and its IP address may wait for one more')
  t.same(await within(5000, 'those waiting to have waited their time', Promise.all([a2, b1, a4])), ['waited', 'waited', 'waited'], 'refused once they have waited their time')
  t.equal(gate.inFlight, 1)
  t.equal(gate.queued, 0)
})

t.test('a waiting client that leaves is dropped: from its turn, and from the counts at the next sweep', async (t) => {
  const gate = gateOf(1, () => null, { waitingPerIp: 2 })
  t.equal(gate.enter('held', IP), null)
  let leftEarly = false
  let leftLate = false
  const early = gate.enter('early', IP, () => leftEarly)!
  const late = gate.enter('late', IP, () => leftLate)!
  t.equal(await gate.enter('third', IP), 'ip', 'two wait from the address, no more')
  leftEarly = true
  t.equal(await within(5000, 'the sweep to drop the one that left', early), 'gone')
  t.equal(gate.queued, 1, 'it counts no more')
  const third = gate.enter('third', IP)!
  t.equal(gate.queued, 2, 'so its address may wait with one more')
  leftLate = true
  gate.end('held')
  t.equal(await late, 'gone', 'one found gone at its turn gets no place')
  t.equal(await third, null, 'the next has it')
  t.equal(gate.inFlight, 1)
})

t.test('an opened connection gives its place back when its welcome\'s reads end, not when its transport closes', async (t) => {
  const gate = gateOf(1, () => null)
  t.equal(gate.enter('not-opened', IP), null)
  gate.transportClosed('not-opened')
  t.equal(gate.inFlight, 0, 'a transport closed before the connection is opened gives it back')
  t.equal(gate.enter('opened', IP), null)
  gate.opened('opened')
  gate.transportClosed('opened')
  t.equal(gate.inFlight, 1, 'once opened, its transport closing does not')
  gate.end('opened')
  t.equal(gate.inFlight, 0, 'the end of its reads does')
})

/** A node with one place, which the test holds: a client on /ws/events waits for it. */
async function oneHeldPlace (t: Test): Promise<{ node: RunningApp, free: () => void }> {
  const node = await startApp({ WEBSOCKET_MAX_HANDSHAKES: '1' })
  t.teardown(async () => await node.close())
  const gate = node.app.herald.handshakes
  t.equal(gate.enter('the-test', IP), null)
  return { node, free: () => { gate.end('the-test') } }
}

t.test('a WebSocket client waits for a place, /ws/admin does not, and a bad token is refused without waiting', async (t) => {
  const { node, free } = await oneHeldPlace(t)
  const gate = node.app.herald.handshakes
  const clients: TestClient[] = []
  t.teardown(async () => { for (const c of clients) await c.close() })
  const user = connect(`${node.ws}/ws/events`, { token: userToken('held-u1') }).then((c) => { clients.push(c); return c })
  await waitFor('the client to wait for a place', () => gate.queued, (n) => n === 1)
  const metrics = await node.api('/metrics', { key: '' })
  t.match(metrics.body, /herald_handshakes\{state="in_flight",server_id="[^"]+"\} 1\n/, 'the metrics count the place held')
  t.match(metrics.body, /herald_handshakes\{state="waiting",server_id="[^"]+"\} 1\n/, 'and the client waiting')
  const admin = await within(10_000, 'the admin to be welcomed meanwhile', connect(`${node.ws}/ws/admin`, { token: adminToken() }))
  clients.push(admin)
  const bad = await within(10_000, 'a bad token to be refused meanwhile', refusal(`${node.ws}/ws/events?token=not-a-jwt`))
  t.equal(bad.status, 401)
  t.equal(gate.queued, 1, 'the client still waits')
  free()
  const welcome = (await within(10_000, 'the client to be welcomed once the place is free', user)).frames[0]
  t.same([welcome?.type, welcome?.payload.userId], ['welcome', 'held-u1'])
  t.equal(gate.inFlight, 0, 'its place is given back at its welcome')
})

t.test('a Socket.IO client waits for a place too', async (t) => {
  const { node, free } = await oneHeldPlace(t)
  const gate = node.app.herald.handshakes
  const attempt = sioAttempt(node.http, { transports: ['websocket'], auth: { token: userToken('held-sio') } }, 20_000)
  await waitFor('the Socket.IO client to wait for a place', () => gate.queued, (n) => n === 1)
  free()
  const a = await attempt
  t.ok(a.ok, 'welcomed once the place is free')
  if (a.ok) { t.equal(a.welcome.userId, 'held-sio'); a.client.close() }
  await waitFor('its place to be given back', () => gate.inFlight, (n) => n === 0)
})

t.test('a node with one place gives it on at every end: welcomes, refusals, clients gone, over both transports', async (t) => {
  const node = await startApp({ WEBSOCKET_MAX_HANDSHAKES: '1', MAX_CONNECTIONS_PER_USER: '1' })
  t.teardown(async () => await node.close())
  const gate = node.app.herald.handshakes
  const url = `${node.ws}/ws/events`
  const clients: TestClient[] = []
  t.teardown(async () => { for (const c of clients) await c.close() })
  // Twenty at once: each waits for the one before it.
  const many = await within(30_000, 'twenty clients at once to be welcomed', Promise.all(Array.from({ length: 20 }, async (_, i) => await connect(url, { token: userToken(`many-${i}`) }))))
  clients.push(...many)
  t.equal(many.length, 20)
  // Refused past the gate (the user's one connection is open): the place is given back.
  const limited = await within(10_000, 'a second connection of one user to be refused', refusal(`${url}?token=${userToken('many-0')}`))
  t.equal(limited.body.error.code, 'CONNECTION_LIMIT')
  const limitedSio = await sioAttempt(node.http, { transports: ['websocket'], auth: { token: userToken('many-1') } })
  t.equal(limitedSio.ok, false, 'the same over Socket.IO')
  // Clients gone once admitted, before their welcome: the node's end of the
  // socket (its Socket.IO session) is closed as their admission returns.
  const h = node.app.herald
  const sockets = new Map<string, Socket>()
  node.app.server.on('upgrade', (req: IncomingMessage, socket: Socket) => { sockets.set(String(req.headers['x-client']), socket) })
  // engine.io's sessions by id (protected in its types, public in its code)
  const engineSessions = (): Record<string, { close: () => void }> => (node.app.io.engine as unknown as { clients: Record<string, { close: () => void }> }).clients
  const acquire = h.connectionLimiter.acquire.bind(h.connectionLimiter)
  h.connectionLimiter.acquire = async (record, who) => {
    const verdict = await acquire(record, who)
    if (record.userId === 'gone-ws') sockets.get('gone-ws')!.destroy()
    if (record.userId === 'gone-sio') for (const session of Object.values(engineSessions())) session.close()
    return verdict
  }
  const gone = new WebSocket(`${url}?token=${userToken('gone-ws')}`, { headers: { 'x-client': 'gone-ws' } })
  gone.on('error', () => {})
  await within(10_000, 'the client gone once admitted to be closed', new Promise((resolve) => gone.once('close', resolve)))
  const goneSio = sio(node.http, { transports: ['websocket'], auth: { token: userToken('gone-sio') } })
  await within(10_000, 'the Socket.IO client gone once admitted to be closed', new Promise((resolve) => goneSio.socket.io.once('close', resolve)))
  t.equal(goneSio.count((r) => r.event === 'welcome'), 0, 'and not welcomed')
  const last = await within(10_000, 'a client to be welcomed after all that', connect(url, { token: userToken('after-all') }))
  clients.push(last)
  await waitFor('every place to be given back', () => gate.inFlight, (n) => n === 0)
  t.equal(gate.queued, 0)
})

/** A node with one place and a private Redis, which the test pauses; `probeMs`: its readiness probe interval. */
async function redisNode (t: Test, probeMs: number): Promise<{ redis: Awaited<ReturnType<typeof startRedis>>, node: RunningApp, gate: HandshakeGate, url: string, clients: TestClient[] }> {
  const redis = await startRedis()
  t.teardown(async () => { redis.resume(); await redis.stop() })
  const node = await startApp({ REDIS_URL: redis.url, WEBSOCKET_MAX_HANDSHAKES: '1', HEALTH_PROBE_INTERVAL: String(probeMs) })
  t.teardown(async () => await node.close())
  const clients: TestClient[] = []
  t.teardown(async () => { for (const c of clients) await c.close() })
  return { redis, node, gate: node.app.herald.handshakes, url: `${node.ws}/ws/events`, clients }
}

t.test('with Redis paused: a token is checked at once, a client that gives up while it waits costs no slot, the rest in order', { timeout: 60_000 }, async (t) => {
  // A probe interval longer than the test: Redis paused, the node still takes handshakes.
  const { redis, gate, url, clients } = await redisNode(t, 60_000)
  // Every command Redis runs, in order: what the node asked for whom.
  const observer = new Redis(redis.url)
  const monitor = await observer.monitor()
  t.teardown(() => { monitor.disconnect(); observer.disconnect() })
  for (const r of [observer, monitor]) r.on('error', () => {})
  const seen: string[] = []
  monitor.on('monitor', (_time: string, args: string[]) => { seen.push(args.join(' ')) })
  const order: string[] = []

  redis.pause()
  // A's admission waits on Redis, and A holds the one place.
  const a = connect(url, { token: userToken('paused-a') }).then((c) => { clients.push(c); order.push('a'); return c })
  await waitFor('A to hold the place', () => gate.inFlight, (n) => n === 1)
  // B's token is bad: refused at once, though A's handshake cannot end.
  const b = await within(10_000, 'B to be refused while Redis is paused', refusal(`${url}?token=not-a-jwt`))
  t.equal(b.status, 401)
  // D gives up while it waits; C comes after it.
  const d = new WebSocket(`${url}?token=${userToken('paused-d')}`)
  d.on('error', () => {})
  await waitFor('D to wait for a place', () => gate.queued, (n) => n === 1)
  d.terminate()
  await new Promise((resolve) => d.once('close', resolve))
  const c = connect(url, { token: userToken('paused-c') }).then((cl) => { clients.push(cl); order.push('c'); return cl })
  await waitFor('C to wait for a place', () => gate.queued, (n) => n === 2)
  t.same(order, [], 'nothing is welcomed while Redis is paused')

  redis.resume()
  await within(20_000, 'A and C to be welcomed', Promise.all([a, c]))
  t.same(order, ['a', 'c'], 'welcomed in the order they came')
  await waitFor('Redis to have run C\'s admission', () => seen.some((cmd) => cmd.includes('paused-c')))
  t.notOk(seen.some((cmd) => cmd.includes('paused-d')), 'D, gone while it waited, asked Redis for nothing')
  t.equal(gate.inFlight, 0)
})

t.test('a node whose Redis stops answering refuses those waiting at once, not after the one in flight', { timeout: 60_000 }, async (t) => {
  const { redis, gate, url, clients } = await redisNode(t, 200)

  redis.pause()
  // A's admission waits on Redis and holds the one place; B waits behind it.
  const a = connect(url, { token: userToken('stop-a') }).then((c) => { clients.push(c); return c })
  a.catch(() => {})
  await waitFor('A to hold the place', () => gate.inFlight, (n) => n === 1)
  const b = refusal(`${url}?token=${userToken('stop-b')}`)
  await waitFor('B to wait for a place', () => gate.queued, (n) => n === 1)
  // The readiness probe finds Redis silent: the node now refuses every handshake.
  const rb = await within(10_000, 'B to be refused while Redis is still paused', b)
  t.same([rb.status, rb.body.error.code], [503, 'BACKEND_UNAVAILABLE'], 'B, which waited, is refused as a newcomer is: another node may take it')
  t.equal(gate.inFlight, 1, 'A is still in flight')
  redis.resume()
  t.equal((await within(20_000, 'A to be answered once Redis is back', a)).frames[0]?.type, 'welcome', 'and A, in flight, is welcomed once Redis answers')
})

t.test('a client that waited while the node came to drain is refused, not admitted', async (t) => {
  const { node, free } = await oneHeldPlace(t)
  const h = node.app.herald
  const waiting = refusal(`${node.ws}/ws/events?token=${userToken('woken-draining')}`)
  await waitFor('the client to wait for a place', () => h.handshakes.queued, (n) => n === 1)
  // Given its place in the same turn as the drain begins: before any sweep.
  h.draining = true
  free()
  const r = await within(10_000, 'the client to be answered', waiting)
  t.same([r.status, r.body.error.code], [503, 'DRAINING'])
  t.equal(h.handshakes.inFlight, 0, 'and its place is given back')
})

t.test('a client waits half of HANDSHAKE_TIMEOUT at most, then is sent to another node', async (t) => {
  const node = await startApp({ WEBSOCKET_MAX_HANDSHAKES: '1', HANDSHAKE_TIMEOUT: '500' })
  t.teardown(async () => await node.close())
  const gate = node.app.herald.handshakes
  t.equal(gate.enter('the-test', IP), null)
  t.teardown(() => { gate.end('the-test') })
  const r = await within(10_000, 'the waiting client to be refused', refusal(`${node.ws}/ws/events?token=${userToken('waited-too-long')}`))
  t.match(r.body.error.message, /within 250 ms/, 'after half of HANDSHAKE_TIMEOUT')
  t.same([r.status, r.body.error.code], [503, 'NODE_FULL'])
  t.match(r.body.error.message, /busy/)
  t.equal(gate.queued, 0)
})

t.test('a node that closes holds nobody waiting: refused DRAINING', async (t) => {
  const node = await startApp({ WEBSOCKET_MAX_HANDSHAKES: '1' })
  let closed: Promise<void> | null = null
  // Closed here should the test fail before it closes the node itself.
  t.teardown(async () => await (closed ?? node.close()))
  const gate = node.app.herald.handshakes
  t.equal(gate.enter('the-test', IP), null)
  const waiting = refusal(`${node.ws}/ws/events?token=${userToken('at-close')}`)
  await waitFor('the client to wait for a place', () => gate.queued, (n) => n === 1)
  closed = node.close()
  const r = await within(10_000, 'the waiting client to be refused as the node closes', waiting)
  t.same([r.status, r.body.error.code], [503, 'DRAINING'])
  await closed
})

t.test('a Socket.IO client that leaves while it waits costs no slot', async (t) => {
  const { node, free } = await oneHeldPlace(t)
  const h = node.app.herald
  const acquired: string[] = []
  const acquire = h.connectionLimiter.acquire.bind(h.connectionLimiter)
  h.connectionLimiter.acquire = async (record, who) => { acquired.push(record.userId); return await acquire(record, who) }
  const leaving = sio(node.http, { transports: ['websocket'], auth: { token: userToken('sio-leaves') } })
  await waitFor('the Socket.IO client to wait for a place', () => h.handshakes.queued, (n) => n === 1)
  leaving.close()
  await waitFor('its session to be closed on the node', () => node.app.io.engine.clientsCount, (n) => n === 0)
  free()
  const next = await sioAttempt(node.http, { transports: ['websocket'], auth: { token: userToken('sio-next') } })
  t.ok(next.ok, 'the next client is welcomed')
  if (next.ok) next.client.close()
  t.same(acquired, ['sio-next'], 'the one that left asked for no slot')
})

t.test('a connection the node closes before its welcome gives its place back then, not when its socket closes', async (t) => {
  const node = await startApp({ WEBSOCKET_MAX_HANDSHAKES: '1' })
  t.teardown(async () => await node.close())
  const gate = node.app.herald.handshakes
  const serverSockets: Socket[] = []
  node.app.server.on('upgrade', (_req: IncomingMessage, socket: Socket) => { serverSockets.push(socket) })
  // A client that sends a binary frame right behind its upgrade request (the
  // node closes it 1003 before its welcome) and never answers the close.
  const port = new URL(node.http).port
  const raw = net.connect(Number(port), '127.0.0.1')
  t.teardown(() => { raw.destroy() })
  raw.on('error', () => {})
  await new Promise((resolve) => raw.once('connect', resolve))
  const frame = Buffer.from([0x82, 0x81, 1, 2, 3, 4, 0x2a ^ 1])
  raw.write(`GET /ws/events?token=${userToken('closed-early')} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
  raw.write(frame)
  await waitFor('the node to read the upgrade', () => serverSockets.length, (n) => n === 1)
  await waitFor('the place to be given back', () => gate.inFlight, (n) => n === 0)
  t.notOk(serverSockets[0]!.destroyed, 'while the node still waits for the client to answer its close')
  const next = await within(10_000, 'the next client to be welcomed', connect(`${node.ws}/ws/events`, { token: userToken('after-closed-early') }))
  await next.close()
})

t.test('with Redis paused mid-welcome: a client that gives up then holds its place until the welcome\'s reads end', { timeout: 60_000 }, async (t) => {
  const { redis, node, gate, url } = await redisNode(t, 60_000)
  const h = node.app.herald
  const serverSockets = new Map<string, Socket>()
  node.app.server.on('upgrade', (req: IncomingMessage, socket: Socket) => { serverSockets.set(String(req.headers['x-client']), socket) })
  // A's slot is taken, then Redis stops answering: its welcome's reads wait.
  const acquire = h.connectionLimiter.acquire.bind(h.connectionLimiter)
  h.connectionLimiter.acquire = async (record, who) => {
    const verdict = await acquire(record, who)
    if (record.userId === 'mid-a') redis.pause()
    return verdict
  }
  const a = new WebSocket(`${url}?token=${userToken('mid-a')}`, { headers: { 'x-client': 'a' } })
  a.on('error', () => {})
  await waitFor('A to be opened', () => h.connections.size, (n) => n === 1)
  const b = connect(url, { token: userToken('mid-b') })
  await waitFor('B to wait for a place', () => gate.queued, (n) => n === 1)
  const aClosed = new Promise((resolve) => serverSockets.get('a')!.once('close', resolve))
  a.terminate()
  await within(10_000, 'A\'s socket to close on the node', aClosed)
  t.equal(gate.inFlight, 1, 'A still holds its place: its reads still wait on Redis')
  t.equal(gate.queued, 1, 'and B waits')
  redis.resume()
  const cb = await within(20_000, 'B to be welcomed once A\'s reads end', b)
  t.equal(cb.frames[0]?.payload.userId, 'mid-b')
  await cb.close()
})
