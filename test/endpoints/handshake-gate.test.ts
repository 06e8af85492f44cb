// WebSocket handshakes in flight on a node are bounded (WEBSOCKET_MAX_HANDSHAKES,
// src/endpoints/handshake-gate.ts): the rest wait, in order of arrival, and
// each begins when one in flight has its welcome, its refusal or its close.
// First the gate on its own, then a node whose Redis is paused, so that the
// handshake in flight cannot end until the test lets it.
import { EventEmitter } from 'node:events'
import type { IncomingMessage } from 'node:http'
import type { Socket } from 'node:net'
import { Writable } from 'node:stream'
import t from 'tap'
import { WebSocket } from 'ws'
import { HandshakeGate, handshakeEnded } from '../../src/endpoints/handshake-gate.js'
import { startApp } from '../helpers/app.js'
import { connect, refusal, type TestClient } from '../helpers/client.js'
import { startRedis } from '../helpers/redis.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const fakeSocket = (): Socket => new EventEmitter() as unknown as Socket
/** A gate whose slot time is longer than any of these tests. */
const gateOf = (max: number, refusing = (): boolean => false): HandshakeGate => new HandshakeGate(max, 60_000, refusing)

t.test('the gate begins at most its bound, then the next waiting one, in order, as each ends', async (t) => {
  const gate = gateOf(2)
  t.teardown(() => { for (const s of sockets) s.emit('close') })
  const sockets = [fakeSocket(), fakeSocket(), fakeSocket(), fakeSocket()]
  const begun: number[] = []
  sockets.forEach((s, i) => { gate.admit(() => { begun.push(i); gate.enter(s) }) })
  t.same(begun, [0, 1], 'two begin at once, the others wait')
  handshakeEnded(sockets[0]!)
  t.same(begun, [0, 1, 2], 'a welcome (or refusal) lets the first waiting one begin')
  handshakeEnded(sockets[0]!)
  t.same(begun, [0, 1, 2], 'a handshake ends once: its socket closing later begins nobody')
  sockets[0]!.emit('close')
  t.same(begun, [0, 1, 2], 'nor its close')
  sockets[1]!.emit('close')
  t.same(begun, [0, 1, 2, 3], 'a socket closed mid-handshake ends it')
  t.equal(sockets[1]!.listenerCount('close'), 0, 'and the gate no longer listens on it')
})

t.test('a waiting upgrade whose client is gone is skipped, and the next one begins', async (t) => {
  const gate = gateOf(1)
  const first = fakeSocket()
  const next = fakeSocket()
  t.teardown(() => { next.emit('close') })
  const begun: string[] = []
  gate.admit(() => { begun.push('first'); gate.enter(first) })
  // What upgrade.ts does for a client gone while it waited: nothing enters the gate.
  gate.admit(() => { begun.push('gone') })
  gate.admit(() => { begun.push('next'); gate.enter(next) })
  handshakeEnded(first)
  t.same(begun, ['first', 'gone', 'next'])
})

t.test('past the bound, a node that refuses every handshake holds none back', async (t) => {
  let refusing = false
  const gate = gateOf(1, () => refusing)
  const sockets: Socket[] = []
  t.teardown(() => { for (const s of sockets) s.emit('close') })
  const begun: string[] = []
  const admit = (name: string): void => { gate.admit(() => { begun.push(name); const s = fakeSocket(); sockets.push(s); gate.enter(s) }) }
  for (const name of ['first', 'second', 'third']) admit(name)
  t.same(begun, ['first'], 'while the node takes handshakes, the others wait')
  refusing = true
  admit('fourth')
  t.same(begun, ['first', 'second', 'third', 'fourth'], 'once it refuses them all, the waiting ones begin (to be refused), then the new one')
})

t.test('10,000 waiting handshakes refused as they begin, one after the other, in order', async (t) => {
  const gate = gateOf(1)
  const first = fakeSocket()
  gate.admit(() => { gate.enter(first) })
  const refused: number[] = []
  for (let i = 0; i < 10_000; i++) {
    // Refused at once, as upgrade.ts refuses while the node closes: ended inside its own begin.
    gate.admit(() => { const s = fakeSocket(); gate.enter(s); refused.push(i); handshakeEnded(s) })
  }
  handshakeEnded(first)
  t.equal(refused.length, 10_000, 'every one began, without running out of stack')
  t.ok(refused.every((n, i) => n === i), 'in the order they came')
})

t.test('a handshake slower than the slot time stops holding the others back', async (t) => {
  const gate = new HandshakeGate(1, 50, () => false)
  const slow = fakeSocket()
  const next = fakeSocket()
  t.teardown(() => { slow.emit('close'); next.emit('close') })
  const begun: string[] = []
  gate.admit(() => { begun.push('slow'); gate.enter(slow) })
  const nextBegun = new Promise<void>((resolve) => { gate.admit(() => { begun.push('next'); gate.enter(next); resolve() }) })
  t.same(begun, ['slow'])
  await within(5000, 'the waiting one to begin after a slot time or two', nextBegun)
  t.same(begun, ['slow', 'next'], 'it begins while the slow one goes on')
  t.equal(slow.listenerCount('close'), 0, 'and the slow one no longer counts')
})

t.test('a node that comes to refuse every handshake lets all the waiting ones begin at the next sweep', async (t) => {
  let refusing = false
  const gate = new HandshakeGate(1, 50, () => refusing)
  const sockets: Socket[] = []
  t.teardown(() => { for (const s of sockets) s.emit('close') })
  const begun: string[] = []
  const admit = (name: string, then?: () => void): void => { gate.admit(() => { begun.push(name); const s = fakeSocket(); sockets.push(s); gate.enter(s); then?.() }) }
  admit('stuck')
  const second = new Promise<void>((resolve) => { admit('second', resolve) })
  admit('third')
  refusing = true
  await within(5000, 'the sweep to begin the waiting ones', second)
  t.same(begun, ['stuck', 'second', 'third'], 'in one go, not one slot at a time')
})

t.test('a node with one handshake in flight: the others wait for it, in order, and none is lost', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(async () => { redis.resume(); await redis.stop() })
  // The handshakes begun: each logs its request as it begins.
  let begun = 0
  const logStream = new Writable({
    write (chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line.includes('"incoming request"') && line.includes('/ws/events')) begun++
      done()
    },
  })
  // A probe interval and a slot time (a tenth of HANDSHAKE_TIMEOUT) longer than
  // the test: Redis paused, the handshake in flight stays in flight.
  const node = await startApp({ REDIS_URL: redis.url, WEBSOCKET_MAX_HANDSHAKES: '1', HEALTH_PROBE_INTERVAL: '60000', HANDSHAKE_TIMEOUT: '120000', LOG_LEVEL: 'info' }, { logStream })
  t.teardown(async () => await node.close())
  const url = `${node.ws}/ws/events`
  // The upgrades the node has read, by the client's name (its own listener runs first).
  const read: string[] = []
  const readWaiters: Array<() => void> = []
  node.app.server.on('upgrade', (req: IncomingMessage) => { read.push(String(req.headers['x-client'])); for (const w of readWaiters.splice(0)) w() })
  const untilRead = async (name: string): Promise<void> => {
    await within(10_000, `the node to read ${name}'s upgrade`, (async () => { while (!read.includes(name)) await new Promise<void>((resolve) => readWaiters.push(resolve)) })())
  }
  const order: string[] = []
  const clients: TestClient[] = []
  t.teardown(async () => { for (const c of clients) await c.close() })

  // Redis answers nothing: A's admission waits, and A holds the one place.
  redis.pause()
  const a = connect(url, { token: userToken('gate-a'), headers: { 'x-client': 'a' } }).then((c) => { clients.push(c); order.push('a welcome'); return c })
  await untilRead('a')
  // B's token is bad: refused at once by a node not bounded, before Redis is asked.
  const b = refusal(`${url}?token=not-a-jwt`, { 'x-client': 'b' }).then((r) => { order.push(`b ${r.status}`); return r })
  await untilRead('b')
  // D gives up while it waits; C comes after it.
  const d = new WebSocket(`${url}?token=${userToken('gate-d')}`, { headers: { 'x-client': 'd' } })
  d.on('error', () => {})
  await untilRead('d')
  const dClosed = new Promise((resolve) => d.once('close', resolve))
  d.terminate()
  await dClosed
  const c = connect(url, { token: userToken('gate-c'), headers: { 'x-client': 'c' } }).then((cl) => { clients.push(cl); order.push('c welcome'); return cl })
  await untilRead('c')
  // A few of the node's turns: time enough to answer B, were it not waiting.
  for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve))
  t.same(order, [], 'nothing is answered while the handshake in flight waits on Redis')
  t.equal(begun, 1, 'nor begun, but A')

  redis.resume()
  await within(20_000, 'A, B and C to be answered', Promise.all([a, b, c]))
  t.same(order, ['a welcome', 'b 401', 'c welcome'], 'answered in the order they arrived')
  t.equal(begun, 3, 'and the one gone while it waited never begun (no token check, no slot)')
  const ids = await Promise.all([a, c].map(async (p) => (await p).frames.find((f) => f.type === 'welcome')?.payload.userId))
  t.same(ids, ['gate-a', 'gate-c'])
})

t.test('a node whose Redis stops answering refuses the waiting upgrades at once, not after the one in flight', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(async () => { redis.resume(); await redis.stop() })
  // The slot time, a tenth of HANDSHAKE_TIMEOUT, longer than the test: A stays in flight.
  const node = await startApp({ REDIS_URL: redis.url, WEBSOCKET_MAX_HANDSHAKES: '1', HEALTH_PROBE_INTERVAL: '200', HANDSHAKE_TIMEOUT: '120000' })
  t.teardown(async () => await node.close())
  const url = `${node.ws}/ws/events`
  const read: string[] = []
  node.app.server.on('upgrade', (req: IncomingMessage) => { read.push(String(req.headers['x-client'])) })
  const clients: TestClient[] = []
  t.teardown(async () => { for (const c of clients) await c.close() })

  redis.pause()
  // A's admission waits on Redis and holds the one place; B waits behind it.
  const a = connect(url, { token: userToken('gate-a'), headers: { 'x-client': 'a' } }).then((c) => { clients.push(c); return c })
  a.catch(() => {})
  await waitFor('the node to read A', () => read.includes('a'))
  const b = refusal(`${url}?token=${userToken('gate-b')}`, { 'x-client': 'b' })
  await waitFor('the node to read B', () => read.includes('b'))
  // The readiness probe finds Redis silent: the node now refuses every handshake.
  await waitFor('the node to report Redis unavailable', async () => (await fetch(`${node.http}/ws/health`)).status, (s) => s === 503, { timeoutMs: 10_000 })
  const c = refusal(`${url}?token=${userToken('gate-c')}`, { 'x-client': 'c' })
  const [rb, rc] = await within(5000, 'B and C to be refused while Redis is still paused', Promise.all([b, c]))
  t.same([rb.status, rb.body.error.code], [503, 'BACKEND_UNAVAILABLE'], 'B, which waited, is refused as a newcomer is')
  t.same([rc.status, rc.body.error.code], [503, 'BACKEND_UNAVAILABLE'])
  redis.resume()
  t.equal((await within(20_000, 'A to be answered once Redis is back', a)).frames[0]?.type, 'welcome', 'and A, in flight, is welcomed once Redis answers')
})
