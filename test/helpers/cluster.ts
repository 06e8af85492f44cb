// Shared by the limits, revocation and hostile-input suites: a cluster of node
// processes on one private Redis, and a connect attempt that may be refused.
import type { Test } from 'tap'
import WebSocket from 'ws'
import type { Redis } from 'ioredis'
import { TestClient, type Refusal } from './client.js'
import { startNode, type NodeProc } from './node.js'
import { startRedis, type RedisServer } from './redis.js'

export interface Cluster {
  redis: RedisServer
  /** a plain client on the private Redis */
  rc: Redis
  nodes: NodeProc[]
}

/**
 * `count` nodes sharing one fresh private Redis, torn down with `t`. Each node is
 * recorded as soon as it runs, so a failed start still tears the others down.
 */
export async function startCluster (t: Test, env: Record<string, string> = {}, count = 3): Promise<Cluster> {
  const redis = await startRedis()
  const nodes: NodeProc[] = []
  t.teardown(async () => {
    await Promise.all(nodes.map(async (n) => await n.stop()))
    await redis.stop()
  })
  await Promise.all(Array.from({ length: count }, async () => {
    const n = await startNode({ REDIS_URL: redis.url, NODE_TTL: '3000', ...env })
    nodes.push(n)
  }))
  return { redis, rc: redis.client(), nodes }
}

export type Attempt =
  | { ok: true, client: TestClient }
  | { ok: false, refusal: Refusal }

/**
 * One upgrade that may be accepted (resolves once `welcome` arrived) or refused
 * before the 101 (resolves with status, headers and JSON body). Anything else
 * (a dropped socket, a timeout) rejects.
 */
export async function attempt (url: string, opts: { token?: string, headers?: Record<string, string>, timeoutMs?: number } = {}): Promise<Attempt> {
  const u = opts.token !== undefined ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(opts.token)}` : url
  const ws = new WebSocket(u, { headers: opts.headers })
  const client = new TestClient(ws)
  const timeoutMs = opts.timeoutMs ?? 10_000
  let timer: NodeJS.Timeout | undefined
  try {
    return await new Promise<Attempt>((resolve, reject) => {
      timer = setTimeout(() => { ws.terminate(); reject(new Error(`no answer to the upgrade within ${timeoutMs} ms`)) }, timeoutMs)
      ws.once('open', () => {
        client.nextOfType('welcome', timeoutMs).then(() => resolve({ ok: true, client }), (err: Error) => { ws.terminate(); reject(err) })
      })
      ws.once('unexpected-response', (_req, res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => { body += c })
        res.on('end', () => {
          let parsed: unknown = body
          try { parsed = JSON.parse(body) } catch {}
          ws.terminate()
          resolve({ ok: false, refusal: { status: res.statusCode ?? 0, headers: res.headers, body: parsed } })
        })
      })
      ws.once('error', (err) => reject(err))
    })
  } finally {
    clearTimeout(timer)
  }
}

export const accepted = (xs: Attempt[]): TestClient[] => xs.flatMap((a) => a.ok ? [a.client] : [])
export const refused = (xs: Attempt[]): Refusal[] => xs.flatMap((a) => a.ok ? [] : [a.refusal])

/** Closes every client; for teardown. */
export async function closeAll (clients: Iterable<TestClient>): Promise<void> {
  await Promise.all([...clients].map(async (c) => await c.close()))
}
