// Load generator for bench/client-publish.ts, one role per process, driven over IPC:
//   publish:   `count` WebSocket clients (user p<offset+i>, a publish claim),
//              each keeping `window` publishes in flight for `ms`: counts
//              `published` replies
//   http:      `concurrency` keep-alive loops POSTing /api/events for `ms`:
//              counts 202s
//   subscribe: `count` WebSocket clients, members of `group`, subscribed to
//              bench.* and system.*: counts event frames, reported on request
import { Agent, request } from 'node:http'
import { createSigner } from 'fast-jwt'
import WebSocket from 'ws'

interface Job { role: 'publish' | 'http' | 'subscribe', url: string, count: number, offset: number, window: number, concurrency: number, ms: number, secret: string, apiKey: string, group: string, type: string, body?: string }

let received = 0

async function open (job: Job, sub: string, claims: Record<string, unknown>): Promise<WebSocket> {
  const token = createSigner({ key: job.secret, algorithm: 'HS256', expiresIn: 3_600_000 })({ sub, ...claims })
  const ws = new WebSocket(`${job.url}?token=${token}`, { perMessageDeflate: false })
  await new Promise<void>((resolve, reject) => {
    ws.once('message', () => resolve()) // welcome
    ws.once('error', reject)
    ws.once('unexpected-response', (_q, r) => reject(new Error(`refused ${r.statusCode ?? 0}`)))
  })
  return ws
}

async function connectAll (job: Job, claims: (i: number) => Record<string, unknown>): Promise<WebSocket[]> {
  const out: WebSocket[] = []
  for (let i = 0; i < job.count; i += 50) {
    out.push(...await Promise.all(Array.from({ length: Math.min(50, job.count - i) }, async (_, j) => await open(job, `p${job.offset + i + j}`, claims(i + j)))))
  }
  return out
}

async function publishers (job: Job): Promise<void> {
  const sockets = await connectAll(job, () => ({ publish: ['bench.*'] }))
  process.send!({ ready: true })
  const body = JSON.stringify({ type: 'publish', payload: { type: job.type, data: { pad: 'x'.repeat(100) } } })
  let published = 0
  let errors = 0
  const end = Date.now() + job.ms
  const start = Date.now()
  await Promise.all(sockets.map(async (ws) => await new Promise<void>((resolve) => {
    let inFlight = 0
    const pump = (): void => {
      if (Date.now() >= end) { if (inFlight === 0) resolve(); return }
      while (inFlight < job.window) { inFlight++; ws.send(body) }
    }
    ws.on('message', (data) => {
      const s = data.toString()
      if (s.startsWith('{"type":"published"')) published++
      else if (s.startsWith('{"type":"error"')) errors++
      else return
      inFlight--
      pump()
    })
    pump()
  })))
  process.send!({ done: { count: published, errors, seconds: (Date.now() - start) / 1000 } })
  for (const ws of sockets) ws.terminate()
}

async function http (job: Job): Promise<void> {
  process.send!({ ready: true })
  const body = job.body ?? JSON.stringify({ type: job.type, userId: 'h0', data: { pad: 'x'.repeat(100) } })
  let accepted = 0
  let errors = 0
  const end = Date.now() + job.ms
  const start = Date.now()
  // node:http with keep-alive, one socket per loop: the cheapest client Node has (fetch costs the client more than the server).
  const agent = new Agent({ keepAlive: true, maxSockets: job.concurrency })
  const u = new URL(job.url)
  const headers = { authorization: `Bearer ${job.apiKey}`, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }
  const post = async (): Promise<number> => await new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent, headers }, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end(body)
  })
  await Promise.all(Array.from({ length: job.concurrency }, async () => {
    while (Date.now() < end) {
      if (await post() === 202) accepted++
      else errors++
    }
  }))
  agent.destroy()
  process.send!({ done: { count: accepted, errors, seconds: (Date.now() - start) / 1000 } })
}

async function subscribers (job: Job): Promise<void> {
  const sockets = await connectAll(job, () => ({ groups: [job.group] }))
  await Promise.all(sockets.map(async (ws) => await new Promise<void>((resolve) => {
    ws.once('message', () => resolve())
    ws.send(JSON.stringify({ type: 'subscribe', id: 's', payload: { eventTypes: ['bench.*', 'system.*'] } }))
  })))
  for (const ws of sockets) ws.on('message', () => { received++ })
  process.send!({ ready: true })
  process.on('message', (m: { count?: boolean }) => { if (m.count === true) process.send!({ received }) })
}

process.once('message', (m: { job: Job }) => {
  const run = m.job.role === 'publish' ? publishers : m.job.role === 'http' ? http : subscribers
  run(m.job).catch((err: unknown) => { process.send!({ error: (err as Error).message }); process.exit(1) })
})
