// Baseline: the least a Node fan-out server does. One Redis channel, every
// connected client gets every message. CORK=1 corks each client's socket on
// its first write in an event-loop turn and uncorks in setImmediate. RTT=1
// makes one Redis round trip (an INCR) before accepting each connection: the
// least a server keeping cluster-wide state per connection does.
import { createServer } from 'node:http'
import type { Socket } from 'node:net'
import { Redis } from 'ioredis'
import { WebSocketServer, type WebSocket } from 'ws'

const port = Number(process.env.PORT ?? 0)
const cork = process.env.CORK === '1'
const server = createServer((_req, res) => { res.writeHead(200); res.end('ok') })
const rtt = process.env.RTT === '1' ? new Redis(process.env.REDIS_URL!) : null
rtt?.on('error', (err) => { console.error('redis:', err.message) })
const wss = new WebSocketServer({
  server,
  perMessageDeflate: false,
  ...(rtt !== null ? { verifyClient: (_info: unknown, done: (ok: boolean) => void) => { rtt.incr('bench:connections').then(() => done(true), () => done(false)) } } : {}),
})
const clients = new Set<WebSocket>()
wss.on('connection', (ws) => {
  clients.add(ws)
  ws.on('close', () => clients.delete(ws))
  ws.on('error', () => {})
  ws.send('{"type":"welcome"}')
})

const corked: Socket[] = []
let scheduled = false
const uncorkAll = (): void => {
  scheduled = false
  for (const s of corked) s.uncork()
  corked.length = 0
}

const sub = new Redis(process.env.REDIS_URL!)
sub.on('error', (err) => { console.error('redis:', err.message) })
sub.subscribe('bench').catch((err) => { console.error(err); process.exit(1) })
sub.on('message', (_ch: string, msg: string) => {
  for (const ws of clients) {
    if (cork) {
      const s = (ws as unknown as { _socket: Socket })._socket
      if (s.writableCorked === 0) { s.cork(); corked.push(s) }
      if (!scheduled) { scheduled = true; setImmediate(uncorkAll) }
    }
    ws.send(msg)
  }
})

server.listen(port, '127.0.0.1', () => {
  process.send?.({ ready: true, port: (server.address() as { port: number }).port })
})
process.on('SIGTERM', () => process.exit(0))
