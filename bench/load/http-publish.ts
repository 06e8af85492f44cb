// Load generator for HTTP publish: POSTs one body over and over with a fixed
// number of requests in flight (keep-alive connections on 127.0.0.1), for a
// bounded time, then reports how many were answered with the expected status.
// Commands arrive over IPC; it exits with its parent.
import { Agent, request } from 'node:http'

interface Job { url: string, path: string, body: string, headers: Record<string, string>, inFlight: number, ms: number, status: number }

async function run (job: Job): Promise<{ ok: number, failed: number, firstError?: string, ms: number }> {
  const u = new URL(job.url)
  const agent = new Agent({ keepAlive: true, maxSockets: job.inFlight })
  const body = Buffer.from(job.body)
  const headers = { 'content-type': 'application/json', 'content-length': String(body.length), ...job.headers }
  let ok = 0
  let failed = 0
  let firstError: string | undefined
  const start = performance.now()
  const end = start + job.ms
  const one = (): Promise<void> => new Promise((resolve) => {
    const req = request({ host: u.hostname, port: u.port, path: job.path, method: 'POST', agent, headers }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        if (res.statusCode === job.status) ok++
        else { failed++; firstError ??= `${res.statusCode}: ${Buffer.concat(chunks).toString().slice(0, 300)}` }
        resolve()
      })
    })
    req.on('error', (err) => { failed++; firstError ??= err.message; resolve() })
    req.end(body)
  })
  await Promise.all(Array.from({ length: job.inFlight }, async () => { while (performance.now() < end) await one() }))
  const ms = performance.now() - start
  agent.destroy()
  return { ok, failed, ...(firstError !== undefined ? { firstError } : {}), ms }
}

process.on('message', (job: Job) => {
  run(job).then((r) => process.send!({ done: r }), (err: Error) => process.send!({ error: err.message }))
})
process.on('disconnect', () => process.exit(0))
