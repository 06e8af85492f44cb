// A webhook receiver on loopback (node:http), for the webhook tests: records
// every request with its headers and raw body, and answers as the test says
// (a status and headers, after a delay, or never).
import http from 'node:http'
import type { Socket } from 'node:net'
import type { Test } from 'tap'
import { waitFor } from './wait.js'

export interface Received {
  headers: http.IncomingHttpHeaders
  body: string
  path: string
  at: number
}

/** What to answer: a status (and headers, after delayMs), or 'hang' (read the request, never answer). */
export type Answer = { status: number, headers?: Record<string, string>, delayMs?: number } | 'hang'

export interface Receiver {
  url: string
  port: number
  received: Received[]
  /** decides each answer; 200 by default */
  answer: (r: Received, n: number) => Answer
  /** requests whose webhook-id is `id` */
  of (id: string): Received[]
  /** resolves once `n` requests (matching `pred`) arrived */
  count (n: number, pred?: (r: Received) => boolean, timeoutMs?: number): Promise<Received[]>
  close (): Promise<void>
}

export async function startReceiver (t: Test, host = '127.0.0.1'): Promise<Receiver> {
  const sockets = new Set<Socket>()
  const r: Receiver = {
    url: '',
    port: 0,
    received: [],
    answer: () => ({ status: 200 }),
    of: (id) => r.received.filter((x) => x.headers['webhook-id'] === id),
    async count (n, pred = () => true, timeoutMs = 10_000) {
      await waitFor(`${n} webhook requests`, () => r.received.filter(pred).length, (k) => k >= n, { timeoutMs, intervalMs: 10 })
      return r.received.filter(pred)
    },
    async close () {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => server.close(resolve))
    },
  }
  const server = http.createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => { body += c })
    req.on('end', () => {
      const got: Received = { headers: req.headers, body, path: req.url ?? '', at: Date.now() }
      r.received.push(got)
      const a = r.answer(got, r.received.length)
      if (a === 'hang') return
      const send = (): void => { if (!res.destroyed) res.writeHead(a.status, a.headers).end() }
      if (a.delayMs !== undefined) setTimeout(send, a.delayMs)
      else send()
    })
  })
  server.on('connection', (s: Socket) => { sockets.add(s); s.on('close', () => sockets.delete(s)) })
  await new Promise<void>((resolve) => server.listen(0, host, resolve))
  r.port = (server.address() as { port: number }).port
  r.url = `http://${host.includes(':') ? `[${host}]` : host}:${r.port}/hook`
  t.teardown(() => r.close())
  return r
}
