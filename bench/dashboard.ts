// The admin dashboard's responsiveness under load: three node processes on a
// private Redis holding 10,000 subscribed connections (opened by helper
// processes), 2,000 events a second published through the nodes' HTTP API,
// and the dashboard open in headless Chromium with a live tail of every
// event. Measured in the browser: frame intervals (requestAnimationFrame),
// long tasks (PerformanceObserver), and the time the page spends handling
// each WebSocket message (the `metrics` pushes and `tail` batches), first
// on the overview, then on the tail view. Not part of `npm run bench`:
//
//   npm run build && node --import tsx bench/dashboard.ts [--connections=10000] [--rate=2000] [--seconds=30]
//
// All traffic on 127.0.0.0/8; every loop bounded in time; every process killed at exit.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { loadavg } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createSigner } from 'fast-jwt'
import { Redis } from 'ioredis'
import WebSocket from 'ws'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const SELF = fileURLToPath(import.meta.url)
const arg = (name: string, def: number): number => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? def)
const SECRET = 'bench-secret-that-is-at-least-32-characters'
const API_KEY = 'bench-api-key-0123456789abcdef'
const sign = createSigner({ key: SECRET, algorithm: 'HS256', expiresIn: 3600_000 })
const sleep = async (ms: number): Promise<void> => await new Promise((resolve) => setTimeout(resolve, ms))

// ---------- helper processes ----------

interface OpenJob { role: 'open', urls: string[], from: number, count: number }
interface PublishJob { role: 'publish', urls: string[], rate: number, users: number, seconds: number }

async function openConnections (job: OpenJob): Promise<void> {
  let open = 0
  let failed = 0
  const one = async (i: number): Promise<void> => {
    const userId = `u${job.from + i}`
    const ws = new WebSocket(`${job.urls[i % job.urls.length]}/ws/events?token=${sign({ sub: userId, roles: ['user'] })}`, { perMessageDeflate: false })
    await new Promise<void>((resolve) => {
      ws.once('message', () => { ws.send(JSON.stringify({ type: 'subscribe', payload: { eventTypes: ['*'] } })); open++; resolve() })
      ws.once('error', () => { failed++; resolve() })
      ws.once('unexpected-response', () => { failed++; resolve() })
    })
    ws.on('error', () => {})
  }
  for (let i = 0; i < job.count; i += 100) await Promise.all(Array.from({ length: Math.min(100, job.count - i) }, async (_v, j) => await one(i + j)))
  process.send!({ ready: true, open, failed })
}

async function publishEvents (job: PublishJob): Promise<void> {
  let sent = 0
  let refused = 0
  let n = 0
  const start = Date.now()
  const tickMs = 20
  const perTick = job.rate * tickMs / 1000
  const inflight = new Set<Promise<void>>()
  process.send!({ started: true })
  for (let tick = 0; Date.now() - start < job.seconds * 1000; tick++) {
    const due = start + tick * tickMs
    if (due > Date.now()) await sleep(due - Date.now())
    // Bounded: past 2,000 requests in flight the rate is what the nodes take.
    for (let i = 0; i < perTick && inflight.size < 2000; i++) {
      const k = n++
      const p = fetch(`${job.urls[k % job.urls.length]}/api/events`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ type: k % 10 === 0 ? 'orders.created' : k % 3 === 0 ? 'users.login.success' : 'bench.tick', userId: `u${k % job.users}`, data: { k, at: Date.now() } }),
      }).then(async (r) => { await r.arrayBuffer(); if (r.status === 202) sent++; else refused++ }, () => { refused++ })
        .finally(() => { inflight.delete(p) })
      inflight.add(p)
    }
  }
  await Promise.allSettled([...inflight])
  process.send!({ done: true, sent, refused, seconds: (Date.now() - start) / 1000 })
}


// ---------- the run ----------

/** Frame intervals, long tasks, and the time each WebSocket message handler takes, by message type. */
const INSTRUMENT = `(() => {
  const b = window.__bench = { frames: [], longtasks: [], handle: { metrics: [], tail: [], other: [] } }
  new PerformanceObserver((list) => { for (const e of list.getEntries()) b.longtasks.push(e.duration) }).observe({ type: 'longtask', buffered: true })
  let last = 0
  const frame = (t) => { if (last !== 0) b.frames.push(t - last); last = t; requestAnimationFrame(frame) }
  requestAnimationFrame(frame)
  const desc = Object.getOwnPropertyDescriptor(WebSocket.prototype, 'onmessage')
  Object.defineProperty(WebSocket.prototype, 'onmessage', {
    configurable: true,
    get () { return desc.get.call(this) },
    set (fn) {
      desc.set.call(this, fn === null ? null : function (ev) {
        const t0 = performance.now()
        try { return fn.call(this, ev) } finally {
          const d = performance.now() - t0
          const s = typeof ev.data === 'string' ? ev.data.slice(0, 24) : ''
          ;(s.includes('"metrics"') ? b.handle.metrics : s.includes('"tail"') ? b.handle.tail : b.handle.other).push(d)
        }
      })
    },
  })
})()`

async function main (): Promise<void> {
  const CONNECTIONS = arg('connections', 10_000)
  const RATE = arg('rate', 2000)
  const SECONDS = arg('seconds', 30)
  const HELPERS = Math.max(1, Math.ceil(CONNECTIONS / 5000))
  const children = new Set<ChildProcess>()
  const track = <T extends ChildProcess>(c: T): T => { children.add(c); c.once('exit', () => children.delete(c)); return c }
  const cleanup = (): void => { for (const c of children) { try { c.kill('SIGKILL') } catch {} } }
  process.on('exit', cleanup)
  process.on('SIGINT', () => { cleanup(); process.exit(130) })

  const port = async (): Promise<number> => {
    const net = await import('node:net')
    return await new Promise((resolve) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)) }) })
  }
  const redisPort = await port()
  track(spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'], { stdio: 'ignore' }))
  const redisUrl = `redis://127.0.0.1:${redisPort}`
  for (let i = 0; ; i++) {
    const r = new Redis(redisUrl, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    r.on('error', () => {})
    try { await r.connect(); await r.ping(); r.disconnect(); break } catch { r.disconnect(); if (i > 200) throw new Error('redis-server did not start'); await sleep(25) }
  }

  const nodes: string[] = []
  for (let i = 0; i < 3; i++) {
    const p = await port()
    const proc = track(spawn(process.execPath, [join(ROOT, 'dist/main.js')], {
      env: {
        PATH: process.env.PATH ?? '', NODE_ENV: 'test', HOST: '127.0.0.1', PORT: String(p), SERVER_ID: `bench-node-${i + 1}`, REDIS_URL: redisUrl,
        JWT_SECRET: SECRET, API_KEYS: API_KEY, LOG_LEVEL: 'warn', ADMIN_METRICS_INTERVAL: '1000',
        MAX_CONNECTIONS_PER_IP: '1000000', MAX_CONNECTIONS_PER_USER: '100000', MAX_MESSAGES_PER_MINUTE: '1000000', WEBSOCKET_MAX_CONNECTIONS: '20000',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    }))
    const url = `http://127.0.0.1:${p}`
    for (let j = 0; ; j++) {
      if (proc.exitCode !== null) throw new Error('a node exited at boot')
      try { if ((await fetch(`${url}/ws/health`)).status === 200) break } catch {}
      if (j > 400) throw new Error('a node did not become ready')
      await sleep(50)
    }
    nodes.push(url)
  }
  const wsUrls = nodes.map((u) => u.replace('http:', 'ws:'))
  console.log(`3 nodes: ${nodes.join(' ')}`)

  const helper = (): ChildProcess => track(fork(SELF, ['--child'], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  const message = async <T>(c: ChildProcess, pred: (m: any) => boolean, timeoutMs: number): Promise<T> => await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('a helper did not answer in time')), timeoutMs)
    c.on('message', (m) => { if (pred(m)) { clearTimeout(t); resolve(m as T) } })
  })
  const openedAt = Date.now()
  const openers = Array.from({ length: HELPERS }, (_v, i) => {
    const c = helper()
    const count = Math.floor(CONNECTIONS / HELPERS) + (i < CONNECTIONS % HELPERS ? 1 : 0)
    c.send({ role: 'open', urls: wsUrls, from: i * Math.ceil(CONNECTIONS / HELPERS), count } satisfies OpenJob)
    return c
  })
  const opened = await Promise.all(openers.map(async (c) => await message<{ open: number, failed: number }>(c, (m) => m.ready === true, 300_000)))
  const open = opened.reduce((n, o) => n + o.open, 0)
  console.log(`${open} connections open (${opened.reduce((n, o) => n + o.failed, 0)} failed) in ${((Date.now() - openedAt) / 1000).toFixed(1)} s, over ${HELPERS} helper processes`)

  const { chromium } = await import('playwright-core')
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] })
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 } })
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(e.message))
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()) })
  // Instruments the page from outside: its own code carries no measuring. A
  // string, not a function: tsx would wrap named functions in a helper the page lacks.
  await page.addInitScript({ content: INSTRUMENT })
  await page.goto(`${nodes[0]}/admin`)
  await page.fill('#token', sign({ sub: 'bench-ops', roles: ['admin'] }))
  await page.keyboard.press('Enter')
  await page.waitForSelector('#nodes tbody tr[data-state="ready"]:nth-child(3)', { timeout: 30_000 })
  await page.click('#tab-tail')
  await page.click('#tail-start')
  await page.waitForFunction(() => /Tailing/.test((globalThis as any).document.getElementById('tail-status').textContent))
  await page.click('#tab-overview')

  const publisher = helper()
  publisher.send({ role: 'publish', urls: nodes, rate: RATE, users: CONNECTIONS, seconds: 2 * SECONDS + 10 } satisfies PublishJob)
  await message(publisher, (m) => m.started === true, 10_000)
  await sleep(5000) // warm up: the rate settles, the charts fill

  const phase = async (name: string): Promise<Record<string, unknown>> => {
    await page.evaluate(() => { const b = (globalThis as any).__bench; b.frames.length = 0; b.longtasks.length = 0; for (const k of Object.keys(b.handle)) b.handle[k].length = 0 })
    await sleep(SECONDS * 1000)
    const b = await page.evaluate(() => (globalThis as any).__bench) as { frames: number[], longtasks: number[], handle: Record<string, number[]> }
    const q = (xs: number[], p: number): number => { const s = [...xs].sort((x, y) => x - y); return s.length === 0 ? 0 : s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]! }
    const stats = (xs: number[]): Record<string, number> => ({ n: xs.length, p50: +q(xs, 0.5).toFixed(2), p95: +q(xs, 0.95).toFixed(2), p99: +q(xs, 0.99).toFixed(2), max: +Math.max(0, ...xs).toFixed(2) })
    const rows = await page.$$eval('#nodes tbody tr[data-node]', (trs) => trs.map((tr) => `${(tr as any).dataset.node} ${tr.querySelector('[data-field="connections"]')?.textContent}`))
    const shown = await page.textContent('#tail-counts')
    return {
      phase: name,
      frames: { ...stats(b.frames), over50ms: b.frames.filter((f) => f > 50).length },
      longtasks: { n: b.longtasks.length, totalMs: Math.round(b.longtasks.reduce((a, x) => a + x, 0)), max: Math.round(Math.max(0, ...b.longtasks)) },
      handleMs: { metrics: stats(b.handle.metrics!), tail: stats(b.handle.tail!), other: stats(b.handle.other!) },
      nodes: rows,
      published: await page.textContent('#c-pub'),
      delivered: await page.textContent('#c-del'),
      tail: shown,
    }
  }
  // The machine is shared: its load says how much of a result is the page's own.
  const loadBefore = loadavg()
  const results = [await phase('overview (tail running in the background)')]
  await page.click('#tab-tail')
  results.push(await phase('live tail view (every event, capped at 50/s)'))
  const pub = await message<{ sent: number, refused: number, seconds: number }>(publisher, (m) => m.done === true, 120_000)
  const out = { connections: open, ratePerSecond: Math.round(pub.sent / pub.seconds), refused: pub.refused, pageErrors: errors, loadavg: { before: loadBefore, after: loadavg() }, results }
  console.log(JSON.stringify(out, null, 2))
  mkdirSync(join(ROOT, 'test-output'), { recursive: true })
  writeFileSync(join(ROOT, 'test-output/dashboard-bench.json'), JSON.stringify(out, null, 2))
  await page.screenshot({ path: join(ROOT, 'test-output/dashboard-bench.png'), fullPage: true })
  await page.click('#tab-overview')
  await page.screenshot({ path: join(ROOT, 'test-output/dashboard-bench-overview.png'), fullPage: true })
  await browser.close()
  cleanup()
  process.exit(0)
}

if (process.argv.includes('--child')) {
  process.once('message', (job: OpenJob | PublishJob) => {
    const run = job.role === 'open' ? openConnections(job) : publishEvents(job)
    run.catch((err) => { console.error(err); process.exit(1) })
  })
} else {
  await main()
}
