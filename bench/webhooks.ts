// Outbound webhooks (a scenario of `npm run bench`; alone:
// `node --import tsx bench/webhooks.ts [--smoke]`). In one run, on one
// machine, every part its own process, a fast local receiver (204 at once):
//
//   - a bare HTTP client loop (node:http, keep-alive) POSTing the bodies and
//     headers Herald sends, as many in flight as the cluster may have (3
//     nodes × WEBHOOK_CONCURRENCY): requests/s;
//   - a three-node cluster delivering a backlog of N webhooks queued while no
//     node ran (the publisher library enqueued them with the events):
//     deliveries/s from the first receipt to the Nth;
//   - publish → receipt latency (p50/p99) at half that rate, user events
//     published through the library at a steady rate, each carrying its send
//     time;
//   - WebSocket fan-out: broadcast events to subscribers spread over the
//     three nodes, offered past what they can deliver, with an endpoint for
//     every event enabled and disabled in turn: deliveries/s on against off.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { HeraldPublisher } from '../src/client/publisher.js'
import { freePort, next, runAlone, sleep, startRedis as startBenchRedis, stop, track } from './procs.js'

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
export const SECRET = 'bench-secret-that-is-at-least-32-characters'
export const API_KEY = 'bench-api-key-0123456789'
const CONCURRENCY = 16
const NODES = 3
export const TSX = ['--import', 'tsx']

export interface WebhooksResult {
  bare: { requests: number, seconds: number, perSec: number, concurrency: number, rounds?: number[] }
  cluster: { deliveries: number, seconds: number, perSec: number, nodes: number, concurrencyPerNode: number, rounds?: number[] }
  ratio: number
  latency: { rate: number, received: number, p50: number, p99: number }
  fanout: { subscribers: number, rows: Array<{ webhooks: boolean, perSec: number, webhooksPerSec: number }>, offPerSec: number, onPerSec: number, ratio: number }
}

/** The bench's private redis-server (procs.ts), with a client on it. */
export async function startRedis (): Promise<{ url: string, client: Redis, proc: ChildProcess }> {
  const { url, proc } = await startBenchRedis()
  const client = new Redis(url, { maxRetriesPerRequest: null })
  client.on('error', () => {})
  await client.ping()
  return { url, client, proc }
}

export interface Node { proc: ChildProcess, http: string, ws: string }

/** A node on `redisUrl` with the rate limits raised out of the way (MAX_MESSAGES_PER_MINUTE 1,000,000), ready. */
export async function startNode (redisUrl: string): Promise<Node> {
  const port = await freePort()
  const proc = track(spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
    env: {
      PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), REDIS_URL: redisUrl, JWT_SECRET: SECRET, API_KEYS: API_KEY,
      LOG_LEVEL: 'warn', MAX_CONNECTIONS_PER_IP: '1000000', MAX_CONNECTIONS_PER_USER: '100000', MAX_MESSAGES_PER_MINUTE: '1000000',
      WEBHOOK_ALLOW_PRIVATE: '127.0.0.0/8', WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_CONCURRENCY: String(CONCURRENCY),
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  }))
  const http = `http://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    if (proc.exitCode !== null) throw new Error('herald exited during start')
    if (await fetch(`${http}/ws/health`).then((r) => r.status === 200, () => false)) break
    if (i > 800) throw new Error('herald did not become ready')
    await sleep(25)
  }
  return { proc, http, ws: `ws://127.0.0.1:${port}/ws/events` }
}

export async function api (n: Node, path: string, method: string, body?: unknown): Promise<any> {
  const res = await fetch(n.http + path, { method, headers: { authorization: `Bearer ${API_KEY}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) }, body: body === undefined ? undefined : JSON.stringify(body) })
  if (res.status >= 300) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`)
  return res.status === 204 ? null : await res.json()
}

const quantile = (xs: number[], q: number): number => {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!
}

interface Stats { count: number, firstAt: number, lastAt: number, latencies: number[], marks: number[] }
const stats = async (rx: ChildProcess): Promise<Stats> => {
  const r = next<{ stats: Stats }>(rx, (m) => m.stats !== undefined, 'receiver stats')
  rx.send({ stats: true })
  return (await r).stats
}
const reset = async (rx: ChildProcess): Promise<void> => {
  const r = next(rx, (m) => m.reset === true, 'receiver reset')
  rx.send({ reset: true })
  await r
}

/** Subscribers (bench/load/subscribers.ts) on each node; their running totals of deliveries. */
async function subscribers (nodes: Node[], each: number): Promise<{ total: () => number, stop: () => Promise<void> }> {
  const totals = new Map<ChildProcess, number>()
  const procs = await Promise.all(nodes.map(async (n, i) => {
    const p = track(fork(join(ROOT, 'bench/load/subscribers.ts'), [], { execArgv: TSX, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
    const ready = next<{ ready: number }>(p, (m) => m.ready !== undefined, 'subscribers ready', 120_000)
    p.send({ job: { kind: 'herald', url: n.ws, count: each, offset: i * each, concurrency: 100, secret: SECRET, sampleEvery: 1000, pattern: 'system.*' } })
    await ready
    p.on('message', (m: any) => { if (m.tick === true) totals.set(p, m.total) })
    return p
  }))
  return { total: () => [...totals.values()].reduce((a, b) => a + b, 0), stop: async () => { await Promise.all(procs.map(stop)) } }
}

export async function webhooksBench (o: { smoke: boolean, progress?: (s: string) => void }): Promise<WebhooksResult> {
  const progress = o.progress ?? (() => {})
  const backlog = o.smoke ? 5000 : 100_000
  const windowMs = o.smoke ? 1000 : 5000
  const redis = await startRedis()
  const rx = track(fork(join(ROOT, 'bench/load/webhook-http.ts'), [], { execArgv: TSX, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
  const nodes: Node[] = []
  const extra: ChildProcess[] = []
  try {
    const rxReady = next<{ port: number }>(rx, (m) => m.ready === true, 'receiver')
    rx.send({ role: 'receiver' })
    const url = `http://127.0.0.1:${(await rxReady).port}/hook`

    // The endpoint, made through a node that then goes away: each backlog is queued with no node to deliver it.
    const first = await startNode(redis.url)
    const { id } = await api(first, '/api/webhooks', 'POST', { url, eventTypes: ['*'] })
    await stop(first.proc)
    const library = new HeraldPublisher({ redis: redis.client, keyPrefix: 'herald:' })
    const pad = 'x'.repeat(60)

    const queue = async (): Promise<void> => {
      progress(`webhooks: queueing ${backlog} deliveries`)
      let k = 0
      await Promise.all(Array.from({ length: 64 }, async () => {
        while (k < backlog) { const i = k++; await library.publish('authentication.login.success', { userId: `bench-u${i % 1000}`, data: { i, pad } }) }
      }))
      const queued = await redis.client.zcard(`herald:{wh}:age:${id}`)
      if (queued !== backlog) throw new Error(`${queued} of ${backlog} deliveries queued`)
    }
    await queue()
    // The bare loop's body: one of those events as a node POSTs it, with its headers.
    const entries = await redis.client.xrange(`herald:{wh}:q:${id}`, '-', '+', 'COUNT', 1)
    const sample = JSON.parse(entries[0]![1][1]!) as { webhookId: string, body: string }
    const headers = { 'webhook-id': sample.webhookId, 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,' + 'A'.repeat(43) + '=', 'user-agent': 'Herald-Webhooks/0.1.0' }

    const bareRound = async (): Promise<WebhooksResult['bare']> => {
      progress('webhooks: bare HTTP client loop')
      const client = track(fork(join(ROOT, 'bench/load/webhook-http.ts'), [], { execArgv: TSX, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
      const bareDone = next<{ done: { requests: number, seconds: number } }>(client, (m) => m.done !== undefined, 'bare loop')
      client.send({ role: 'client', url, body: sample.body, headers, concurrency: CONCURRENCY * NODES, ms: windowMs })
      const b = (await bareDone).done
      await stop(client)
      return { ...b, perSec: b.requests / b.seconds, concurrency: CONCURRENCY * NODES }
    }
    const heraldRound = async (): Promise<WebhooksResult['cluster']> => {
      progress(`webhooks: ${NODES} nodes delivering the backlog`)
      await reset(rx)
      nodes.push(...await Promise.all(Array.from({ length: NODES }, async () => await startNode(redis.url))))
      const deadline = Date.now() + 300_000
      let s = await stats(rx)
      while (s.count < backlog && Date.now() < deadline) { await sleep(100); s = await stats(rx) }
      if (s.count < backlog) throw new Error(`${s.count} of ${backlog} webhooks delivered`)
      // Steady state: from the tenth of the backlog to the ninth tenth, once
      // every node has started and warmed up, and before the last stragglers.
      const from = Math.floor(s.marks.length / 10)
      const to = Math.max(from + 1, Math.floor(s.marks.length * 9 / 10))
      const seconds = (s.marks[to - 1]! - s.marks[from - 1 < 0 ? 0 : from - 1]!) / 1000
      const deliveries = (to - Math.max(from, 1)) * 1000
      return { deliveries, seconds, perSec: deliveries / seconds, nodes: NODES, concurrencyPerNode: CONCURRENCY }
    }
    // Alternating (bare, Herald, then Herald, bare), so drift on a shared machine falls on both alike.
    const bares = [await bareRound()]
    const heralds = [await heraldRound()]
    if (!o.smoke) {
      for (const n of nodes.splice(0)) await stop(n.proc)
      await queue()
      heralds.push(await heraldRound())
      bares.push(await bareRound())
    }
    const mean = (xs: number[]): number => xs.reduce((a, x) => a + x, 0) / xs.length
    const bare = { ...bares[0]!, perSec: mean(bares.map((x) => x.perSec)), rounds: bares.map((x) => x.perSec) }
    const cluster = { ...heralds[0]!, perSec: mean(heralds.map((x) => x.perSec)), rounds: heralds.map((x) => x.perSec) }

    progress('webhooks: publish → receipt latency at half that rate')
    await reset(rx)
    // --webhook-latency-rate=N measures at N events/s instead (development).
    const asked = process.argv.find((a) => a.startsWith('--webhook-latency-rate='))
    const rate = asked !== undefined ? Number(asked.slice(23)) : Math.max(10, Math.round(cluster.perSec / 2))
    const pub = track(fork(join(ROOT, 'bench/load/publisher.ts'), [], { execArgv: TSX, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
    extra.push(pub)
    const started = next(pub, (m) => m.ok === true, 'publisher')
    // User events (no node holds their users: webhook work alone, as in the backlog rounds).
    pub.send({ kind: 'herald', redisUrl: redis.url, rate, users: 1000 })
    await started
    await sleep(o.smoke ? 2000 : 8000)
    const stopped = next(pub, (m) => m.sent !== undefined, 'publisher stop')
    pub.send({ stop: true })
    await stopped
    await sleep(1000)
    const lat = await stats(rx)
    // The first second is warm-up (connections, JIT).
    const steady = lat.latencies.slice(Math.min(lat.latencies.length - 1, rate))
    const latency = { rate, received: lat.count, p50: quantile(steady, 0.5), p99: quantile(steady, 0.99) }
    await stop(pub)

    if (process.argv.includes('--no-fanout')) return { bare, cluster, ratio: cluster.perSec / bare.perSec, latency, fanout: { subscribers: 0, rows: [], offPerSec: NaN, onPerSec: NaN, ratio: NaN } }
    progress('webhooks: WebSocket fan-out with webhooks on and off')
    const each = o.smoke ? 50 : 400
    const subs = await subscribers(nodes, each)
    const fan = track(fork(join(ROOT, 'bench/load/publisher.ts'), [], { execArgv: TSX, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
    extra.push(fan)
    const rows: WebhooksResult['fanout']['rows'] = []
    const offered = o.smoke ? 200 : 2000
    for (const on of o.smoke ? [false, true] : [false, true, true, false]) {
      await api(nodes[0]!, `/api/webhooks/${id}`, 'PATCH', { enabled: on })
      await sleep(1000) // every publisher follows the change
      await reset(rx)
      const go = next(fan, (m) => m.ok === true, 'fan-out publisher')
      fan.send({ kind: 'herald', redisUrl: redis.url, rate: offered })
      await go
      await sleep(1000)
      const d0 = subs.total()
      const w0 = (await stats(rx)).count
      const t0 = performance.now()
      await sleep(windowMs)
      const secs = (performance.now() - t0) / 1000
      rows.push({ webhooks: on, perSec: (subs.total() - d0) / secs, webhooksPerSec: ((await stats(rx)).count - w0) / secs })
      const idle = next(fan, (m) => m.ok === true, 'fan-out pause')
      fan.send({ kind: 'herald', redisUrl: redis.url, rate: 0 })
      await idle
      await sleep(1500) // the backlog drains before the next round
    }
    await subs.stop()
    const offPerSec = mean(rows.filter((r) => !r.webhooks).map((r) => r.perSec))
    const onPerSec = mean(rows.filter((r) => r.webhooks).map((r) => r.perSec))
    await library.close()
    return { bare, cluster, ratio: cluster.perSec / bare.perSec, latency, fanout: { subscribers: each * NODES, rows, offPerSec, onPerSec, ratio: onPerSec / offPerSec } }
  } finally {
    for (const c of [...extra, ...nodes.map((n) => n.proc), rx]) await stop(c)
    redis.client.disconnect()
    await stop(redis.proc)
  }
}

export function webhooksMarkdown (r: WebhooksResult): string[] {
  const k = (n: number): string => n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : `${Math.round(n)}`
  const ms = (n: number): string => Number.isNaN(n) ? 'n/a' : `${n.toFixed(1)} ms`
  return [
    '## Webhooks: deliveries from a three-node cluster, latency, and WebSocket fan-out beside them', '',
    `A fast local receiver (node:http, 204). The bare loop: node:http with keep-alive, ${r.bare.concurrency} in flight, the same body and headers, for a few seconds. Herald: a backlog of webhooks queued while no node ran, delivered by ${r.cluster.nodes} nodes (WEBHOOK_CONCURRENCY ${r.cluster.concurrencyPerNode} each); the rate from its tenth to its ninth tenth (steady state: every node started). Alternating rounds; means, each round in brackets.`, '',
    '| | requests/s | vs bare loop |', '|---|---|---|',
    `| bare HTTP client loop | ${k(r.bare.perSec)}${r.bare.rounds !== undefined && r.bare.rounds.length > 1 ? ` (${r.bare.rounds.map(k).join(', ')})` : ''} | 1.00× |`,
    `| Herald, ${r.cluster.nodes} nodes | ${k(r.cluster.perSec)}${r.cluster.rounds !== undefined && r.cluster.rounds.length > 1 ? ` (${r.cluster.rounds.map(k).join(', ')})` : ''} | **${r.ratio.toFixed(2)}×** |`, '',
    `Publish → receipt at ${k(r.latency.rate)} user events/s (half of Herald's rate), published through the publisher library (the publish, its stream append and its enqueue included): p50 ${ms(r.latency.p50)}, p99 ${ms(r.latency.p99)} (${k(r.latency.received)} received).`, '',
    `WebSocket fan-out: broadcast events offered past saturation to ${r.fanout.subscribers} subscribers over the ${r.cluster.nodes} nodes, an endpoint for every event enabled or disabled in turn.`, '',
    '| webhooks | WebSocket deliveries/s | webhooks/s |', '|---|---|---|',
    ...r.fanout.rows.map((x) => `| ${x.webhooks ? 'on' : 'off'} | ${k(x.perSec)} | ${k(x.webhooksPerSec)} |`),
    `| **on vs off** | **${r.fanout.ratio.toFixed(2)}×** (${k(r.fanout.onPerSec)} / ${k(r.fanout.offPerSec)}) | |`, '',
  ]
}

if (process.argv[1] === fileURLToPath(import.meta.url)) runAlone('webhooks', webhooksBench, webhooksMarkdown)
