// Baseline: socket.io with @socket.io/redis-adapter. ROLE=server accepts
// clients into room "bench"; ROLE=publisher holds no clients and emits to the
// room, so every message crosses Redis to the server as the adapter does.
import { createServer } from 'node:http'
import { Redis } from 'ioredis'
import { Server } from 'socket.io'
import { createAdapter } from '@socket.io/redis-adapter'

const port = Number(process.env.PORT ?? 0)
const pub = new Redis(process.env.REDIS_URL!)
const sub = new Redis(process.env.REDIS_URL!)
for (const c of [pub, sub]) c.on('error', (err) => { console.error('redis:', err.message) })
const server = createServer()
const io = new Server(server, { adapter: createAdapter(pub, sub), transports: ['websocket'], perMessageDeflate: false })
io.on('connection', (s) => { void s.join('bench'); s.emit('welcome', {}) })

if (process.env.ROLE === 'publisher') {
  // Same pacing as bench/load/publisher.ts: each 10 ms, that slice's share.
  const pad = 'x'.repeat(60)
  let rate = 0
  let carry = 0
  let sent = 0
  setInterval(() => {
    carry += rate / 100
    const n = Math.floor(carry)
    carry -= n
    for (let i = 0; i < n; i++) { sent++; io.to('bench').emit('event', { t: performance.timeOrigin + performance.now(), pad, type: 'system.bench.tick' }) }
  }, 10)
  process.on('message', (m: { rate?: number, stop?: boolean }) => {
    if (m.stop) { rate = 0; process.send?.({ sent }); return }
    rate = m.rate ?? 0
    process.send?.({ ok: true })
  })
}
server.listen(port, '127.0.0.1', () => {
  process.send?.({ ready: true, port: (server.address() as { port: number }).port })
})
process.on('SIGTERM', () => process.exit(0))
