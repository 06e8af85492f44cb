// The upgrades of /ws/events and /ws/admin are taken before Fastify
// (src/endpoints/upgrade.ts): what that path answers on the wire, which
// upgrades it leaves to Fastify, and what it logs.
import net from 'node:net'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { startApp } from '../helpers/app.js'
import { connect, refusal } from '../helpers/client.js'
import { startRedis } from '../helpers/redis.js'
import { corkBriefly } from '../../src/endpoints/upgrade.js'
import { WsConnection } from '../../src/endpoints/ws-connection.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

/** The bytes a server answers a raw request with, until it closes the connection. */
async function raw (port: number, request: string): Promise<{ text: string, closedByServer: boolean }> {
  return await within(5000, 'the answer and the close', new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(request))
    let text = ''
    sock.setEncoding('latin1').on('data', (c: string) => { text += c })
    sock.on('error', reject).on('close', () => resolve({ text, closedByServer: true }))
  }))
}

const upgradeRequest = (method: string, path: string, extra = ''): string =>
  `${method} ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n${extra}\r\n`

function parse (text: string): { status: number, headers: Record<string, string>, body: any } {
  const [head, body] = [text.slice(0, text.indexOf('\r\n\r\n')), text.slice(text.indexOf('\r\n\r\n') + 4)]
  const [statusLine, ...lines] = head.split('\r\n')
  const headers: Record<string, string> = {}
  for (const l of lines) headers[l.slice(0, l.indexOf(':')).toLowerCase()] = l.slice(l.indexOf(':') + 1).trim()
  let parsed: unknown = body
  try { parsed = JSON.parse(body) } catch {}
  return { status: Number(statusLine!.split(' ')[1]), headers, body: parsed }
}

class Capture extends Writable {
  readonly records: Array<Record<string, any>> = []
  override _write (chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    for (const l of chunk.toString().split('\n')) if (l !== '') this.records.push(JSON.parse(l) as Record<string, any>)
    cb()
  }
}

t.test('a refusal is a whole HTTP response with its length, then the node closes the socket', async (t) => {
  const node = await startApp({ MAX_CONNECTIONS_PER_USER: '1' })
  t.teardown(() => node.close())
  const port = Number(new URL(node.http).port)

  const missing = await raw(port, upgradeRequest('GET', '/ws/events'))
  const r = parse(missing.text)
  t.equal(r.status, 401)
  t.equal(r.body.error.code, 'TOKEN_MISSING')
  t.equal(Number(r.headers['content-length']), Buffer.byteLength(JSON.stringify(r.body)), 'Content-Length is the body\'s')
  t.match(r.headers['content-type'], /^application\/json/)
  t.equal(r.headers.connection, 'close')
  t.ok(missing.closedByServer, 'closed by the node, the client never closed it')

  // A limit refusal carries Retry-After, as the API's do.
  const held = await connect(`${node.ws}/ws/events?token=${encodeURIComponent(userToken('una'))}`)
  t.teardown(() => held.close())
  const limited = parse((await raw(port, upgradeRequest('GET', `/ws/events?token=${encodeURIComponent(userToken('una'))}`))).text)
  t.equal(limited.status, 429)
  t.equal(limited.body.error.code, 'CONNECTION_LIMIT')
  t.equal(limited.headers['retry-after'], '5')
})

t.test('upgrades this path does not take go on to Fastify: another path, the health stream', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const port = Number(new URL(node.http).port)
  const tok = encodeURIComponent(userToken('vic'))

  const slash = parse((await raw(port, upgradeRequest('GET', `/ws/events/?token=${tok}`))).text)
  t.equal(slash.status, 404, 'a trailing slash is another path')

  // The health stream still upgrades through Fastify.
  const health = new WebSocket(`${node.ws}/ws/health`)
  t.teardown(() => health.terminate())
  const first = await within(5000, 'the health frame', new Promise<{ type: string }>((resolve, reject) => {
    health.once('message', (d) => resolve(JSON.parse(d.toString()) as { type: string }))
    health.once('error', reject)
  }))
  t.equal(first.type, 'health')

  const viaQuery = await connect(`${node.ws}/ws/events?token=${tok}`, { waitWelcome: false })
  t.teardown(() => viaQuery.close())
  t.equal((await viaQuery.nextOfType('welcome')).payload.userId, 'vic', 'and /ws/events upgrades as ever')
})

t.test('spellings of the path the router reads alike, a HEAD, an upgrade on an HTTP route: refused, never a 101, the token logged nowhere', async (t) => {
  const capture = new Capture()
  const node = await startApp({ LOG_LEVEL: 'trace' }, { logStream: capture })
  t.teardown(() => node.close())
  const port = Number(new URL(node.http).port)
  const secret = userToken('yuri')
  for (const [method, path] of [['GET', '/ws/%65vents'], ['GET', '/ws/%61dmin'], ['HEAD', '/ws/events']] as const) {
    const r = await raw(port, upgradeRequest(method, `${path}?token=${encodeURIComponent(secret)}`))
    t.notMatch(r.text, /^HTTP\/1\.1 101/, `${method} ${path}: no 101`)
    t.match(r.text, /^HTTP\/1\.1 (4\d\d) /, `${method} ${path}: refused (${r.text.split('\r\n')[0]})`)
  }
  // Pages, the API's documentation, a path with no route: @fastify/websocket
  // would complete an upgrade there (101) and close it at once.
  for (const path of ['/admin', '/docs', '/api/stats', '/nowhere']) {
    const r = await raw(port, upgradeRequest('GET', `${path}?token=${encodeURIComponent(secret)}`))
    t.match(r.text, /^HTTP\/1\.1 404 /, `an upgrade on ${path}: 404 (${r.text.split('\r\n')[0]})`)
    t.match(r.text, /"code":"NOT_FOUND"/, 'in the API\'s error shape')
    t.match(r.text, /no WebSocket endpoint at this path/, 'saying there is no WebSocket endpoint there')
  }
  await waitFor('the refused upgrades logged', () => capture.records.some((r) => r.req?.url === '/nowhere'))
  t.notOk(capture.records.some((r) => JSON.stringify(r).includes(secret)), 'the token is nowhere in the logs')
})

t.test('an upgrade the router refuses (a path it cannot decode, a parameter too long) is answered, then its socket closed', async (t) => {
  // These never reach the hooks that close refused upgrades: each used to
  // hold a socket (and a file descriptor) on the node for good.
  const node = await startApp()
  t.teardown(() => node.close())
  const port = Number(new URL(node.http).port)
  for (const [path, code] of [['/ws/%E0%A4%A', 'MALFORMED_REQUEST'], ['/api/%', 'MALFORMED_REQUEST'], [`/api/streams/${'s'.repeat(600)}/events`, 'VALIDATION']] as const) {
    const r = await raw(port, upgradeRequest('GET', path))
    t.match(r.text, /^HTTP\/1\.1 400 /, `${path.slice(0, 40)}: 400`)
    t.equal(parse(r.text).body?.error?.code, code, `in the error shape: ${code}`)
    t.ok(r.closedByServer, 'and the node closed the socket')
  }
  t.equal((await fetch(`${node.http}/ws/health`)).status, 200, 'the node serves on')
})

t.test('each upgrade is logged as a request, without its query, and its connection\'s lines carry the request id', async (t) => {
  const capture = new Capture()
  const node = await startApp({ LOG_LEVEL: 'debug' }, { logStream: capture })
  t.teardown(() => node.close())
  const secret = userToken('wren', 'sess-wren')
  const c = await connect(`${node.ws}/ws/events?token=${encodeURIComponent(secret)}`, { headers: { 'x-forwarded-for': '203.0.113.9' } })
  await c.close()
  await waitFor('the close logged', () => capture.records.some((r) => r.msg === 'connection closed' && r.userId === 'wren'))

  const incoming = capture.records.find((r) => r.msg === 'incoming request' && r.req?.url === '/ws/events')
  t.ok(incoming, 'the upgrade is logged with its path only')
  t.match(incoming, { req: { method: 'GET', remoteAddress: '127.0.0.1', upgrade: 'websocket' } }, 'X-Forwarded-For from an untrusted peer is not the address')
  const closed = capture.records.find((r) => r.msg === 'connection closed' && r.userId === 'wren')
  t.equal(closed?.reqId, incoming?.reqId, 'the connection\'s lines carry the request\'s id')
  t.notOk(capture.records.some((r) => JSON.stringify(r).includes(secret)), 'the token is nowhere')

  // A refusal's line carries its request's id too.
  await raw(Number(new URL(node.http).port), upgradeRequest('GET', '/ws/admin'))
  const refused = capture.records.find((r) => r.msg === 'upgrade refused' && r.endpoint === 'admin')
  const asked = capture.records.find((r) => r.msg === 'incoming request' && r.req?.url === '/ws/admin')
  t.ok(refused?.reqId !== undefined && refused.reqId === asked?.reqId, 'the refusal is logged under the request\'s id')
})

t.test('the 101 leaves with the welcome, in one write, though the welcome waits for Redis', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startApp({ REDIS_URL: redis.url })
  t.teardown(() => node.close())
  const port = Number(new URL(node.http).port)
  const firstRead = async (user: string): Promise<string> => await within(5000, 'the first bytes', new Promise<string>((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(upgradeRequest('GET', `/ws/events?token=${encodeURIComponent(userToken(user))}`)))
    t.teardown(() => sock.destroy())
    sock.once('data', (d: Buffer) => resolve(d.toString('latin1')))
    sock.on('error', reject)
  }))
  // The 101 waits 400-800 ms at most: on a machine busy enough to keep the
  // welcome longer it leaves alone. Of five handshakes, one in one read is the claim.
  const reads: string[] = []
  for (let i = 0; i < 5 && !reads.some((r) => r.includes('"type":"welcome"')); i++) reads.push(await firstRead(`xena${i}`))
  t.ok(reads.every((r) => r.startsWith('HTTP/1.1 101 Switching Protocols\r\n')), 'each read starts with the 101')
  const together = reads.find((r) => r.slice(r.indexOf('\r\n\r\n') + 4).includes('"type":"welcome"'))
  t.ok(together, `the welcome frame in the 101's read (${reads.length} handshake(s))`)
})

/** A TCP connection on loopback, its server side corked as an upgrade leaves it (corkBriefly). */
async function corkedPair (t: Test): Promise<{ socket: net.Socket, client: net.Socket }> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => server.close())
  const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve))
  const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1')
  t.teardown(() => client.destroy())
  const socket = await accepted
  t.teardown(() => socket.destroy())
  corkBriefly(socket)
  return { socket, client }
}

t.test('a corked 101 leaves within a sweep or two, welcome or not', async (t) => {
  const { socket, client } = await corkedPair(t)
  socket.write('HTTP/1.1 101 Switching Protocols\r\n\r\n')
  const got = new Promise<string>((resolve) => client.once('data', (d: Buffer) => resolve(d.toString())))
  t.equal(socket.writableCorked, 1, 'held back at first')
  t.match(await within(2000, 'the 101 without a welcome', got), /^HTTP\/1\.1 101/, 'and sent with nobody uncorking it')
  t.equal(socket.writableCorked, 0)
})

t.test("a heartbeat ping on a connection whose 101 waits corked sends the 101 first (the client could answer nothing before it)", async (t) => {
  const { socket, client } = await corkedPair(t)
  const head = 'HTTP/1.1 101 Switching Protocols\r\n\r\n'
  socket.write(head)
  let received = ''
  client.on('data', (d: Buffer) => { received += d.toString('latin1') })
  // The connection as the heartbeat sees it: its ws (a ping frame written to the same socket) over that socket.
  const ws = { _socket: socket, ping: () => { socket.write(Buffer.from([0x89, 0x00])) } }
  const conn = Object.assign(Object.create(WsConnection.prototype) as WsConnection, { ws })
  conn.ping()
  // Uncorked at once: a sweep (400-800 ms away) would have found it corked.
  t.equal(socket.writableCorked, 0, 'uncorked by the ping, not by the sweep')
  await waitFor('the 101 and the ping at the client', () => received, (r) => r.length >= head.length + 2)
  t.equal(received, head + '\x89\x00', 'the 101, then the ping')
})

t.test('a handshake WebSocket cannot complete is refused 400 in the error shape on every path, before any token check', async (t) => {
  const capture = new Capture()
  const node = await startApp({ LOG_LEVEL: 'info' }, { logStream: capture })
  t.teardown(() => node.close())
  const port = Number(new URL(node.http).port)
  const tok = encodeURIComponent(userToken('zed'))
  const good = 'Host: 127.0.0.1\r\nConnection: Upgrade\r\n'
  const cases: Array<[string, (path: string) => string, RegExp]> = [
    ['no key', (p) => `GET ${p} HTTP/1.1\r\n${good}Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n`, /Sec-WebSocket-Key/],
    ['a key of the wrong length', (p) => `GET ${p} HTTP/1.1\r\n${good}Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: c2hvcnQ=\r\n\r\n`, /Sec-WebSocket-Key/],
    ['version 7', (p) => `GET ${p} HTTP/1.1\r\n${good}Upgrade: websocket\r\nSec-WebSocket-Version: 7\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, /Sec-WebSocket-Version/],
    ['Upgrade: h2c', (p) => `GET ${p} HTTP/1.1\r\n${good}Upgrade: h2c\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`, /Upgrade: websocket/],
    ['a POST', (p) => upgradeRequest('POST', p, 'Content-Length: 0\r\n'), /GET/],
  ]
  for (const path of [`/ws/events?token=${tok}`, `/ws/admin?token=${tok}`, '/ws/health', '/socket.io/?EIO=4&transport=websocket', '/nowhere']) {
    for (const [what, request, says] of cases) {
      const r = await raw(port, request(path))
      const answer = parse(r.text)
      t.equal(answer.status, 400, `${path.split('?')[0]}, ${what}: 400`)
      t.equal(answer.body?.error?.code, 'MALFORMED_REQUEST', 'MALFORMED_REQUEST')
      t.match(answer.body?.error?.message, says, `saying what is wrong: ${answer.body?.error?.message}`)
      t.match(answer.headers['content-type'], /^application\/json/, 'as JSON')
      t.ok(r.closedByServer, 'and the node closed the socket')
      if (what === 'version 7') t.equal(answer.headers['sec-websocket-version'], '13, 8', 'naming the versions it speaks')
    }
  }
  // No token was checked, no admission taken: the WebSocket endpoints log each upgrade they take.
  t.notOk(capture.records.some((r) => r.msg === 'incoming request' && /^\/ws\/(events|admin)/.test(String(r.req?.url))), 'no upgrade reached the WebSocket endpoints')
  const ws = await connect(`${node.ws}/ws/events?token=${tok}`, { waitWelcome: false })
  t.teardown(() => ws.close())
  t.equal((await ws.nextOfType('welcome')).payload.userId, 'zed', 'a well-formed handshake upgrades as ever')
})

t.test('a token given twice in the query is refused TOKEN_INVALID, saying so, on both transports', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const [a, b] = [encodeURIComponent(userToken('twice-a')), encodeURIComponent(userToken('twice-b'))]
  const r = await refusal(`${node.ws}/ws/events?token=${a}&token=${b}`)
  t.equal(r.status, 401)
  t.match(r.body.error, { code: 'TOKEN_INVALID', message: /more than once/ }, '/ws/events: not TOKEN_MISSING')
  // Socket.IO reads the query of the engine.io request: raw, as no client library writes it twice.
  const sio = new WebSocket(`${node.ws}/socket.io/?EIO=4&transport=websocket&token=${a}&token=${b}`)
  t.teardown(() => sio.terminate())
  const refused = await within(5000, 'the CONNECT refused', new Promise<string>((resolve) => {
    sio.on('message', (m) => {
      const p = String(m)
      if (p.startsWith('0{')) sio.send('40')
      if (p.startsWith('44')) resolve(p)
    })
  }))
  t.match(JSON.parse(refused.slice(2)), { data: { code: 'TOKEN_INVALID', status: 401 }, message: /more than once/ }, 'Socket.IO: the same')
  t.equal((await fetch(`${node.http}/ws/health`)).status, 200, 'the node serves on')
})
