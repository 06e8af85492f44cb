// What Herald relies on inside its dependencies beyond their public API, each
// kept because it measurably pays, each checked here against the real
// package (pinned exactly in package.json) or the running Node, so that an
// upgrade that breaks one fails this test rather than production:
//   - ws: a server socket's `_socket` is its net.Socket, to which the write
//     path (src/endpoints/ws-connection.ts flush) writes complete frames, in
//     order with ws's own sends, counted in `bufferedAmount`; `Sender.frame`
//     (src/protocol/ws-frame.ts) makes those frames.
//   - engine.io: `clients` maps session ids to sockets (src/endpoints/socketio.ts,
//     oversized polling POSTs); the WebSocket transport's `socket` is the ws
//     socket (bufferedAmount, readyState, terminate: the Socket.IO send bound);
//     what waits for a client sits in `writeBuffer`, passing `packetCreate` in
//     and `flush` out (src/endpoints/socketio-sessions.ts;
//     test/endpoints/socketio-sessions.test.ts checks the count byte for byte).
//   - ioredis: what it sends by itself on a reconnect (resubscribe, SELECT)
//     has a rejection handler, reported as an 'error' event (from 6.1; before,
//     a refused resubscribe ended the process: test/backend/redis-clients.test.ts);
//     with autoResendUnfulfilledCommands off, commands in flight at a drop are
//     settled only once the connection is ready again, which the broker does
//     not wait for (test/backend/broker-redis.test.ts); a connection
//     disconnected while reconnecting rejects what waits on it, which the
//     connections lent to the Socket.IO adapter catch (redis-clients.test.ts).
import { existsSync, readFileSync } from 'node:fs'
import http from 'node:http'
import { createRequire } from 'node:module'
import net from 'node:net'
import { dirname, join } from 'node:path'
import websocket from '@fastify/websocket'
import { Server as EngineServer, type Socket as EngineSocket } from 'engine.io'
import Fastify from 'fastify'
import t from 'tap'
import WebSocket, { type RawData } from 'ws'
import { textFrame } from '../../src/protocol/ws-frame.js'
import { handshake } from '../helpers/polling.js'
import { within } from '../helpers/wait.js'

/** The package.json of `name` as resolved from `from` (a file path). */
function packageOf (name: string, from: string = import.meta.filename): { dir: string, version: string } {
  let dir = dirname(createRequire(from).resolve(name))
  for (;;) {
    const file = join(dir, 'package.json')
    if (existsSync(file)) {
      const p = JSON.parse(readFileSync(file, 'utf8')) as { name?: string, version: string }
      if (p.name === name) return { dir, version: p.version }
    }
    if (dirname(dir) === dir) throw new Error(`no package.json for ${name}`)
    dir = dirname(dir)
  }
}

t.test('the packages whose internals are used are pinned exactly, and are the copies the node loads', async (t) => {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as { dependencies: Record<string, string> }
  for (const name of ['ws', 'engine.io', 'socket.io', 'ioredis']) {
    const range = pkg.dependencies[name]
    t.match(range, /^\d+\.\d+\.\d+$/, `${name} is pinned to one version (${range})`)
    t.equal(packageOf(name).version, range, `${name} ${range} is installed`)
  }
  // The sockets ws-connection.ts writes to are made by @fastify/websocket's ws,
  // and Socket.IO's transports by socket.io's engine.io: the pinned copies.
  const fastifyWebsocket = createRequire(import.meta.filename).resolve('@fastify/websocket')
  t.equal(packageOf('ws', fastifyWebsocket).dir, packageOf('ws').dir, '@fastify/websocket loads the pinned ws')
  const socketIo = createRequire(import.meta.filename).resolve('socket.io')
  t.equal(packageOf('engine.io', socketIo).dir, packageOf('engine.io').dir, 'socket.io loads the pinned engine.io')
})

t.test('ws Sender.frame: one complete unmasked text frame, whatever the payload length', async (t) => {
  for (const size of [0, 1, 125, 126, 65_535, 65_536, 200_000]) {
    const payload = Buffer.alloc(size, 0x61)
    const f = textFrame(payload)
    t.equal(f[0], 0x81, `${size} bytes: FIN and the text opcode, no RSV bits`)
    const len7 = f[1]! & 0x7f
    t.equal(f[1]! & 0x80, 0, `${size} bytes: not masked`)
    const header = len7 < 126 ? 2 : len7 === 126 ? 4 : 10
    const declared = len7 < 126 ? len7 : len7 === 126 ? f.readUInt16BE(2) : Number(f.readBigUInt64BE(2))
    t.equal(declared, size, `${size} bytes: the length is encoded (${header}-byte header)`)
    t.equal(f.length, header + size, `${size} bytes: header and payload in one buffer`)
    t.ok(f.subarray(header).equals(payload), `${size} bytes: the payload as given`)
  }
})

t.test('ws: _socket takes whole frames in order with ws.send and counts in bufferedAmount', async (t) => {
  const app = Fastify()
  t.teardown(() => app.close())
  // As src/app.ts registers it.
  await app.register(websocket, { options: { perMessageDeflate: false, clientTracking: false } })
  const accepted: Array<{ ws: WebSocket, socket: net.Socket }> = []
  // As src/endpoints/upgrade.ts takes an upgrade: before Fastify, straight to the server's handleUpgrade.
  app.server.removeAllListeners('upgrade')
  app.server.on('upgrade', (req, socket: net.Socket, head) => {
    app.websocketServer.handleUpgrade(req, socket, head, (ws) => accepted.push({ ws, socket }))
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as net.AddressInfo

  const client = new WebSocket(`ws://127.0.0.1:${port}/ws`, { perMessageDeflate: false })
  t.teardown(() => client.terminate())
  const got: Array<{ text: string, binary: boolean }> = []
  client.on('message', (data: RawData, binary: boolean) => got.push({ text: data.toString(), binary }))
  await within(5000, 'the upgrade', new Promise<void>((resolve, reject) => { client.once('open', () => resolve()); client.once('error', reject) }))
  await within(5000, 'the server side', new Promise<void>((resolve) => { const check = (): void => { accepted.length > 0 ? resolve() : setTimeout(check, 5) }; check() }))
  const { ws, socket } = accepted[0]!

  const raw = (ws as unknown as { _socket: unknown })._socket
  t.ok(raw instanceof net.Socket, 'ws keeps the TCP socket as _socket')
  t.equal(raw, socket, 'the very socket of the upgrade')
  ws.send('first', { binary: false })
  socket.write(Buffer.concat([textFrame(Buffer.from('second')), textFrame(Buffer.from('third'))]))
  ws.send('fourth', { binary: false })
  await within(5000, 'four messages', new Promise<void>((resolve) => { const check = (): void => { got.length >= 4 ? resolve() : setTimeout(check, 5) }; check() }))
  t.same(got, ['first', 'second', 'third', 'fourth'].map((text) => ({ text, binary: false })), 'frames written to _socket arrive as text messages, in order with ws.send')

  // A client that stops reading: what _socket has not sent counts in
  // bufferedAmount, which the slow-consumer bound (congested()) reads.
  ;(client as unknown as { _socket: net.Socket })._socket.pause()
  const chunk = textFrame(Buffer.alloc(1024 * 1024, 0x62))
  for (let i = 0; i < 64 && socket.writableLength === 0; i++) socket.write(chunk)
  t.ok(socket.writableLength > 0, `the socket holds ${socket.writableLength} bytes unsent`)
  t.equal(ws.bufferedAmount, socket.writableLength, 'ws.bufferedAmount counts what was written to _socket and not sent')
})

t.test('engine.io: clients by session id, the WebSocket transport\'s ws socket, writeBuffer between packetCreate and flush', async (t) => {
  const server = http.createServer()
  const engine = new EngineServer({ pingInterval: 60_000, pingTimeout: 60_000 })
  engine.attach(server, { path: '/socket.io/' })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    engine.close()
    await new Promise((resolve) => server.close(resolve))
  })
  const { port } = server.address() as net.AddressInfo
  const base = `http://127.0.0.1:${port}`
  const sockets: EngineSocket[] = []
  engine.on('connection', (s: EngineSocket) => sockets.push(s))
  const clients = (engine as unknown as { clients: Record<string, EngineSocket | undefined> }).clients

  // Polling: the session is in `clients` under its id; packets wait in writeBuffer.
  const hs = await handshake(base)
  t.ok(hs.session !== null, 'a polling handshake')
  const polled = sockets.at(-1)!
  t.equal(clients[hs.session!.sid], polled, 'clients[sid] is the session\'s socket')
  const created: unknown[] = []
  let flushed = 0
  polled.on('packetCreate', (p: { data?: unknown }) => created.push(p.data))
  polled.on('flush', () => { flushed++ })
  polled.send('one')
  polled.send('two')
  const writeBuffer = (): Array<{ data?: unknown }> => (polled as unknown as { writeBuffer: Array<{ data?: unknown }> }).writeBuffer
  t.ok(Array.isArray(writeBuffer()), 'the queue is socket.writeBuffer')
  t.same(writeBuffer().map((p) => p.data), ['one', 'two'], 'holding what was sent, in order')
  t.same(created, ['one', 'two'], 'each passed packetCreate on its way in')
  const r = await hs.session!.poll()
  t.equal(r.status, 200)
  t.same(r.body.split('\x1e'), ['4one', '4two'], 'a poll takes them')
  t.equal(flushed, 1, 'flush when the transport took them')
  t.equal(writeBuffer().length, 0, 'leaving writeBuffer empty')
  polled.close(true)
  await within(5000, 'the session to leave clients', new Promise<void>((resolve) => { const check = (): void => { clients[hs.session!.sid] === undefined ? resolve() : setTimeout(check, 5) }; check() }))
  t.pass('a closed session leaves clients')

  // WebSocket transport: its `socket` is the ws socket the bound reads.
  const ws = new WebSocket(`ws://127.0.0.1:${port}/socket.io/?EIO=4&transport=websocket`)
  t.teardown(() => ws.terminate())
  await within(5000, 'the WebSocket session', new Promise<void>((resolve, reject) => { ws.once('message', () => resolve()); ws.once('error', reject) }))
  const viaWs = sockets.at(-1)!
  t.equal(viaWs.transport.name, 'websocket')
  const inner = (viaWs.transport as unknown as { socket?: { bufferedAmount: unknown, readyState: unknown, terminate: unknown } }).socket
  t.ok(inner !== undefined && inner.constructor.name === 'WebSocket', 'the transport keeps its ws socket as `socket`')
  t.type(inner!.bufferedAmount, 'number', 'with bufferedAmount')
  t.equal(inner!.readyState, 1, 'and readyState (1: open)')
  t.type(inner!.terminate, 'function', 'and terminate()')
  const closed = new Promise<void>((resolve) => ws.once('close', () => resolve()))
  ;(inner!.terminate as () => void).call(inner)
  await within(5000, 'terminate() to cut the client off', closed)
  t.pass('terminate() cuts the connection')
})
