// The server's one upgrade listener (src/http/upgrades.ts): takers asked in
// turn, Fastify (@fastify/websocket) given what none took, and a taker that
// throws costing its client the socket, never the node.
import websocket from '@fastify/websocket'
import Fastify from 'fastify'
import net from 'node:net'
import t from 'tap'
import WebSocket from 'ws'
import upgradeRouter from '../../src/http/upgrades.js'
import { within } from '../helpers/wait.js'

const app = Fastify()
await app.register(websocket)
await app.register(upgradeRouter)
const asked: string[] = []
app.upgrades.take((req, socket) => {
  asked.push(`first ${req.url}`)
  if (req.url !== '/first') return false
  socket.end('HTTP/1.1 418 I\'m a teapot\r\nContent-Length: 0\r\nConnection: close\r\n\r\n')
  return true
})
const forwardedFor: Array<string | undefined> = []
app.upgrades.take((req) => {
  asked.push(`second ${req.url}`)
  forwardedFor.push(req.headers['x-forwarded-for'] as string | undefined)
  if (req.url === '/throws') throw new Error('a taker that breaks')
  return false
})
app.get('/routed', { websocket: true }, (socket) => { socket.send('from fastify'); socket.close() })
await app.listen({ host: '127.0.0.1', port: 0 })
t.teardown(() => app.close())
const port = (app.server.address() as net.AddressInfo).port

/** An upgrade request on a raw socket: what came back, once the server closed it. */
async function raw (path: string, extra = ''): Promise<string> {
  return await within(5000, `the answer to an upgrade on ${path}`, new Promise<string>((resolve) => {
    const chunks: Buffer[] = []
    const sock = net.connect(port, '127.0.0.1', () => sock.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n${extra}Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`))
    sock.on('data', (b) => chunks.push(b))
    sock.on('error', () => {})
    sock.on('close', () => resolve(Buffer.concat(chunks).toString()))
  }))
}

t.test('the first taker that says so takes it; the ones after are not asked', async (t) => {
  asked.length = 0
  t.match(await raw('/first'), /^HTTP\/1\.1 418 /)
  t.same(asked, ['first /first'])
})

t.test('what no taker takes goes to Fastify, after every taker was asked', async (t) => {
  asked.length = 0
  const ws = new WebSocket(`ws://127.0.0.1:${port}/routed`)
  const [data] = await within(5000, 'the routed socket\'s message', new Promise<[Buffer]>((resolve, reject) => { ws.once('message', (d: Buffer) => resolve([d])); ws.once('error', reject) }))
  t.equal(data.toString(), 'from fastify')
  t.same(asked, ['first /routed', 'second /routed'])
})

t.test('a taker that throws costs its client the socket; the server goes on', async (t) => {
  t.equal(await raw('/throws'), '', 'closed with no answer')
  t.match(await raw('/first'), /^HTTP\/1\.1 418 /, 'the next upgrade is answered')
  const res = await fetch(`http://127.0.0.1:${port}/nowhere`)
  t.equal(res.status, 404, 'and plain requests too')
})

t.test('X-Forwarded-For is cut to its valid entries before any taker reads it', async (t) => {
  forwardedFor.length = 0
  await raw('/throws', 'X-Forwarded-For: <script>, 203.0.113.9, not-an-ip, 198.51.100.7\r\n')
  t.same(forwardedFor.map((h) => h?.trim()), ['198.51.100.7'], 'the nearest hop\'s valid entries only')
})
