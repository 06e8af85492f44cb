// Load generator for the webhooks scenario (bench/webhooks.ts), one role per
// process, told over IPC:
//   receiver  a fast webhook receiver (node:http, 204 at once) that counts
//             what it gets and, from bodies carrying `data.t` (the publish
//             time), the latency from publish to receipt
//   client    the baseline: a bare HTTP client loop (node:http, keep-alive)
//             POSTing the same bodies with the same headers to the same
//             receiver, `concurrency` in flight, for `ms`
import http from 'node:http'

const now = (): number => performance.timeOrigin + performance.now()

interface Receiver { role: 'receiver' }
interface Client { role: 'client', url: string, body: string, headers: Record<string, string>, concurrency: number, ms: number }

let count = 0
let firstAt = 0
let lastAt = 0
let latencies: number[] = []
/** when each thousandth request arrived: the rate between two of them is a steady rate */
let marks: number[] = []

function receiver (): void {
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const t = now()
      count++
      if (count % 1000 === 0) marks.push(t)
      if (firstAt === 0) firstAt = t
      lastAt = t
      const body = Buffer.concat(chunks).toString()
      const i = body.indexOf('"t":')
      if (i >= 0) latencies.push(t - Number(/^[0-9.]+/.exec(body.slice(i + 4))?.[0] ?? NaN))
      res.writeHead(204).end()
    })
  })
  server.keepAliveTimeout = 60_000
  server.listen(0, '127.0.0.1', () => process.send!({ ready: true, port: (server.address() as { port: number }).port }))
}

async function client (c: Client): Promise<void> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity })
  const u = new URL(c.url)
  const until = performance.now() + c.ms
  let sent = 0
  const t0 = performance.now()
  const one = async (): Promise<void> => await new Promise<void>((resolve, reject) => {
    const req = http.request(u, { method: 'POST', agent, headers: { ...c.headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(c.body)) } }, (res) => {
      res.resume()
      res.on('end', () => resolve())
    })
    req.on('error', reject)
    req.end(c.body)
  })
  await Promise.all(Array.from({ length: c.concurrency }, async () => {
    while (performance.now() < until) { await one(); sent++ }
  }))
  process.send!({ done: { requests: sent, seconds: (performance.now() - t0) / 1000 } })
}

process.on('message', (m: (Receiver | Client) & { reset?: boolean, stats?: boolean }) => {
  if (m.reset === true) { count = 0; firstAt = 0; lastAt = 0; latencies = []; marks = []; process.send!({ reset: true }); return }
  if (m.stats === true) { process.send!({ stats: { count, firstAt, lastAt, latencies, marks } }); return }
  if (m.role === 'receiver') receiver()
  else if (m.role === 'client') client(m).catch((err: Error) => process.send!({ error: err.message }))
})
process.on('disconnect', () => process.exit(0))
