// `npm run bench`: Herald side by side with baselines, in one run, on one
// machine, reported as ratios. Every server and load generator is its own
// process; all traffic stays on 127.0.0.0/8; every loop is bounded in time.
//
//   node --import tsx bench/run.ts            full run (~10 min)
//   node --import tsx bench/run.ts --smoke    tiny sizes, seconds (CI)
//   --herald-before=<checkout>/dist/main.js   another build of Herald side by side ("Herald before")
//   --uws-node=<node binary>                  the Node that runs uWebSockets.js (its binaries stop at Node 20's ABI)
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { inspectorUrl, session } from './inspector.js'
import { resumeBench, resumeMarkdown } from './resume.js'
import { cpuOf, startRedis as startBenchRedis } from './procs.js'
import { publishBench, publishMarkdown } from './publish.js'
import { streamsBench, streamsMarkdown } from './streams.js'
import { webhooksBench, webhooksMarkdown } from './webhooks.js'
import { clientPublishBench, clientPublishMarkdown } from './client-publish.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const SMOKE = process.argv.includes('--smoke')
const ONLY = process.argv.find((a) => a.startsWith('--only='))?.slice(7).split(',')
const SECRET = 'bench-secret-that-is-at-least-32-characters'
const TSX = ['--import', 'tsx']
const PER_LOADGEN = 9000 // connections per load-generator process (open files are capped at 20k)

type Kind = 'herald' | 'herald-before' | 'herald-nohistory' | 'ws' | 'ws-cork' | 'ws-rtt' | 'sio' | 'uws'
const BEFORE = process.argv.find((a) => a.startsWith('--herald-before='))?.slice(16)
const UWS_NODE = process.argv.find((a) => a.startsWith('--uws-node='))?.slice(11) ?? '/usr/bin/node'
const GIVEN_KINDS = process.argv.find((a) => a.startsWith('--kinds='))?.slice(8).split(',') as Kind[] | undefined
const KINDS: Kind[] = GIVEN_KINDS ?? ['herald', ...(BEFORE !== undefined ? ['herald-before' as const] : []), 'ws-cork', 'ws', 'sio']
// Fan-out also measures Herald with history off (HISTORY_SIZE=0, the publisher not appending): what keeping history costs delivery.
const FANOUT_KINDS: Kind[] = GIVEN_KINDS ?? [KINDS[0]!, 'herald-nohistory', ...KINDS.slice(1)]
const LABEL: Record<Kind, string> = { herald: 'Herald', 'herald-before': 'Herald before', 'herald-nohistory': 'Herald, history off', ws: 'ws + ioredis', 'ws-cork': 'ws + ioredis, corked', 'ws-rtt': 'ws, corked, 1 Redis round trip / connection', sio: 'socket.io + redis-adapter', uws: 'uWebSockets.js' }
const isHerald = (k: Kind): boolean => k === 'herald' || k === 'herald-before' || k === 'herald-nohistory'

const cfg = SMOKE
  ? { idle: [200], fanout: [100], stepMs: 2000, settleMs: 300, warmupMs: 300, maxSteps: 2, startRate: 2000, latencyMs: 2000, latencyRounds: 1, overloadMs: 2000, targetedUsers: 50, bigNodes: 2, big: 400 }
  : process.argv.includes('--quick')
    ? { idle: [10_000], fanout: [1000], stepMs: 2000, settleMs: 1000, warmupMs: 2000, maxSteps: 12, startRate: 20_000, latencyMs: 4000, latencyRounds: 1, overloadMs: 4000, targetedUsers: 1000, bigNodes: 3, big: 20_000 }
    : { idle: [10_000, 19_000], fanout: [1000, 10_000], stepMs: 3000, settleMs: 700, warmupMs: 2000, maxSteps: 16, startRate: 50_000, latencyMs: 8000, latencyRounds: 2, overloadMs: 10_000, targetedUsers: 2000, bigNodes: 6, big: 100_000 }

// Connect rate, reconnect storm and latency-bounded throughput (rounds alternate the servers' order; medians are reported).
const cfg2 = SMOKE
  ? { connect: 300, connectWarm: 100, connectRounds: 1, storm: 200, stormRounds: 1, bounded: [100], boundedStart: 20, boundedSteps: 3, boundedRounds: 1 }
  : { connect: 6000, connectWarm: 2000, connectRounds: 3, storm: 10_000, stormRounds: 3, bounded: [1000, 10_000], boundedStart: 2, boundedSteps: 16, boundedRounds: 2 }
const BOUNDS = [250, 50] as const
// --rounds=N: fewer (or more) rounds of the connect and storm scenarios (development).
const ROUNDS = process.argv.find((a) => a.startsWith('--rounds='))
if (ROUNDS !== undefined) { cfg2.connectRounds = Number(ROUNDS.slice(9)); cfg2.stormRounds = Number(ROUNDS.slice(9)); cfg2.boundedRounds = Number(ROUNDS.slice(9)) }

// --subscribers=1000,… runs the fan-out and p99-bounded scenarios at those sizes only (development).
const SIZES = process.argv.find((a) => a.startsWith('--subscribers='))?.slice(14).split(',').map(Number)
if (SIZES !== undefined) { cfg.fanout = SIZES; cfg2.bounded = SIZES }

const children = new Set<ChildProcess>()
const cleanup = (): void => { for (const c of children) { try { c.kill('SIGKILL') } catch {} } }
process.on('exit', cleanup)
process.on('SIGINT', () => { cleanup(); process.exit(130) })

// ---------- process helpers ----------

function track<T extends ChildProcess> (c: T): T {
  children.add(c)
  c.once('exit', () => children.delete(c))
  return c
}

async function stop (c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return
  const done = new Promise((resolve) => c.once('exit', resolve))
  c.kill('SIGKILL')
  await done
}

function nextMessage<T> (c: ChildProcess, pred: (m: any) => boolean, timeoutMs: number, what: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => { c.off('message', on); reject(new Error(`timed out: ${what}`)) }, timeoutMs)
    const on = (m: any): void => { if (pred(m)) { clearTimeout(t); c.off('message', on); resolve(m as T) } }
    c.on('message', on)
  })
}

async function freePort (): Promise<number> {
  const net = await import('node:net')
  return await new Promise((resolve) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)) }) })
}

/** A redis-server of the bench's own (bench/procs.ts), tracked with this file's children too. */
async function startRedis (): Promise<{ url: string, proc: ChildProcess }> {
  const r = await startBenchRedis()
  track(r.proc)
  return r
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const rssOf = (pid: number): number => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024

interface Server { kind: Kind, proc: ChildProcess, url: string, http: string, pid: number, inspector: Promise<string> | null }

/**
 * Full GC in the server (run with `inspect`), then its RSS and V8 heap in
 * use: what connections hold, not the garbage their handshakes left, which
 * V8 collects whenever it likes and which made per-connection figures swing
 * by a third between runs.
 */
async function memoryOf (s: Server): Promise<{ rss: number, heap: number }> {
  const c = await session(await s.inspector!)
  try {
    await c.send('HeapProfiler.collectGarbage')
    const { usedSize } = await c.send<{ usedSize: number }>('Runtime.getHeapUsage')
    return { rss: rssOf(s.pid), heap: usedSize }
  } finally { c.close() }
}

/** The node exited before it was ready: most likely the port found free was taken meanwhile. */
class ExitedAtStart extends Error {}

async function startHerald (kind: Kind, redisUrl: string, env: Record<string, string>, inspect: string[]): Promise<Server> {
  const port = await freePort()
  const main = kind === 'herald-before' ? BEFORE! : join(ROOT, 'dist/main.js')
  const proc = track(spawn(process.execPath, ['--max-old-space-size=4096', ...inspect, main], {
    env: {
      PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), REDIS_URL: redisUrl, JWT_SECRET: SECRET,
      API_KEYS: 'bench-api-key-0123456789', LOG_LEVEL: 'warn', MAX_CONNECTIONS_PER_IP: '1000000', MAX_CONNECTIONS_PER_USER: '100000',
      MAX_MESSAGES_PER_MINUTE: '1000000', WEBSOCKET_MAX_CONNECTIONS: '1000000', ...(kind === 'herald-nohistory' ? { HISTORY_SIZE: '0' } : {}), ...env,
    },
    stdio: ['ignore', 'ignore', inspect.length > 0 ? 'pipe' : 'inherit'],
  }))
  const inspector = inspect.length > 0 ? inspectorUrl(proc) : null
  let exited = false
  proc.once('exit', () => { exited = true })
  // Wait for readiness (the Redis probe) before load.
  for (let i = 0; ; i++) {
    if (exited) throw new ExitedAtStart('herald exited during start')
    if (i > 800) throw new Error('herald did not become ready')
    const ok = await fetch(`http://127.0.0.1:${port}/ws/health`).then((r) => r.status === 200, () => false)
    if (ok) break
    await sleep(25)
  }
  return { kind, proc, url: `ws://127.0.0.1:${port}/ws/events`, http: `http://127.0.0.1:${port}`, pid: proc.pid!, inspector }
}

async function startServer (kind: Kind, redisUrl: string, env: Record<string, string> = {}, opts: { inspect?: boolean } = {}): Promise<Server> {
  const inspect = opts.inspect === true ? ['--inspect=127.0.0.1:0'] : []
  if (isHerald(kind)) {
    // A port found free can be taken by another process before the node binds
    // it (a busy machine); the node then exits at once, and another port is tried.
    for (let attempt = 1; ; attempt++) {
      try {
        return await startHerald(kind, redisUrl, env, inspect)
      } catch (err) {
        if (attempt >= 3 || !(err instanceof ExitedAtStart)) throw err
      }
    }
  }
  const file = kind === 'sio' ? 'bench/servers/socketio-baseline.ts' : kind === 'uws' ? 'bench/servers/uws-baseline.ts' : 'bench/servers/ws-baseline.ts'
  const proc = track(fork(join(ROOT, file), [], {
    execArgv: [...TSX, ...inspect],
    ...(kind === 'uws' ? { execPath: UWS_NODE } : {}),
    env: { ...process.env, REDIS_URL: redisUrl, PORT: '0', CORK: kind === 'ws-cork' || kind === 'ws-rtt' ? '1' : '0', RTT: kind === 'ws-rtt' ? '1' : '0', ROLE: 'server', ...env },
    stdio: ['ignore', 'ignore', inspect.length > 0 ? 'pipe' : 'inherit', 'ipc'],
  }))
  const inspector = inspect.length > 0 ? inspectorUrl(proc) : null
  const { port } = await nextMessage<{ port: number }>(proc, (m) => m.ready === true, 20_000, `${kind} start`)
  return { kind, proc, url: kind === 'sio' ? `http://127.0.0.1:${port}` : `ws://127.0.0.1:${port}/`, http: `http://127.0.0.1:${port}`, pid: proc.pid!, inspector }
}

interface Loadgen { procs: ChildProcess[], ready: number, connectMs: number }

async function startLoad (server: Server, count: number, opts: { pattern?: string, sampleEvery?: number, offset?: number, addressBase?: number, untilWelcome?: boolean, procs?: number, countRaw?: boolean } = {}): Promise<Loadgen> {
  const procs: ChildProcess[] = []
  const n = Math.max(opts.procs ?? 1, Math.ceil(count / PER_LOADGEN))
  const waits: Array<Promise<{ ready: number, failed: number, connectMs: number, reasons?: unknown }>> = []
  // Even shares: 10k as 9000 + 1000 left one generator the bottleneck.
  const each = Math.ceil(count / n)
  for (let i = 0; i < n; i++) {
    const share = Math.min(each, count - i * each)
    const p = track(fork(join(ROOT, 'bench/load/subscribers.ts'), [], { execArgv: TSX, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
    procs.push(p)
    waits.push(nextMessage(p, (m) => m.ready !== undefined, 180_000, 'subscribers ready'))
    p.send({
      job: {
        kind: isHerald(server.kind) ? 'herald' : server.kind === 'sio' ? 'sio' : 'ws',
        untilWelcome: opts.untilWelcome === true,
        countRaw: opts.countRaw === true,
        url: server.url,
        count: share,
        offset: (opts.offset ?? 0) + i * each,
        // Bound source addresses only where one address would run out of ports
        // (the 100k run): bound sockets hold their port exclusively, TIME_WAIT too.
        ...(opts.addressBase !== undefined ? { localAddress: `127.0.0.${opts.addressBase + i}` } : {}),
        concurrency: 200,
        secret: SECRET,
        sampleEvery: opts.sampleEvery ?? 50,
        pattern: opts.pattern ?? 'system.*',
      },
    })
  }
  const done = await Promise.all(waits)
  const failed = done.reduce((a, d) => a + d.failed, 0)
  if (failed > 0) process.stderr.write(`\n  ${failed} of ${count} connections failed: ${JSON.stringify(done.map((d) => (d as { reasons?: unknown }).reasons))}\n`)
  return { procs, ready: done.reduce((a, d) => a + d.ready, 0), connectMs: Math.max(...done.map((d) => d.connectMs)) }
}

async function stopLoad (l: Loadgen): Promise<void> { await Promise.all(l.procs.map(stop)) }

interface Measured {
  perSec: number
  p50: number
  p99: number
  /** p50 of the first and the second half of the window: a queue building up shows as growth */
  p50First: number
  p50Second: number
  /** connections the server closed, by code, since the load started */
  closes: Record<string, number>
}

/**
 * Deliveries and latency samples from every load generator over `ms`. The
 * rate is taken between each generator's first and last report in the
 * window, from its running total: counting whole one-second reports over a
 * window that holds a partial second overstated every rate by up to a third.
 */
async function measure (l: Loadgen, ms: number): Promise<Measured> {
  const first = new Map<ChildProcess, { total: number, at: number }>()
  const last = new Map<ChildProcess, { total: number, at: number }>()
  const early: number[] = []
  const late: number[] = []
  const closes: Record<string, number> = {}
  const t0 = performance.timeOrigin + performance.now()
  const half = t0 + ms / 2
  const listeners = l.procs.map((p) => {
    const on = (m: any): void => {
      if (m.tick !== true) return
      if (!first.has(p)) { first.set(p, { total: m.total, at: m.at }); return }
      last.set(p, { total: m.total, at: m.at })
      for (const x of m.samples) (m.at < half ? early : late).push(x)
      for (const [code, n] of Object.entries(m.closes as Record<string, number>)) closes[code] = n
    }
    p.on('message', on)
    return () => p.off('message', on)
  })
  await sleep(ms)
  // A generator flooded past what it can read reports late: wait for two
  // reports from each (bounded) rather than call the window empty.
  const until = Date.now() + 2 * ms
  while (l.procs.some((p) => !last.has(p)) && Date.now() < until) await sleep(100)
  for (const off of listeners) off()
  let perSec = 0
  for (const [p, a] of first) {
    const b = last.get(p)
    if (b !== undefined && b.at > a.at) perSec += (b.total - a.total) / ((b.at - a.at) / 1000)
  }
  const all = early.concat(late)
  return { perSec, p50: quantile(all, 0.5), p99: quantile(all, 0.99), p50First: quantile(early, 0.5), p50Second: quantile(late, 0.5), closes }
}

function quantile (xs: number[], q: number): number {
  if (xs.length === 0) return NaN
  const sorted = [...xs].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
}

interface Publisher { setRate (eventsPerSec: number, users?: number): Promise<void>, burst?: (n: number) => Promise<void>, stop (): Promise<void> }

async function startPublisher (kind: Kind, redisUrl: string): Promise<Publisher> {
  if (kind === 'sio') {
    const proc = track(fork(join(ROOT, 'bench/servers/socketio-baseline.ts'), [], { execArgv: TSX, env: { ...process.env, REDIS_URL: redisUrl, PORT: '0', ROLE: 'publisher' }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
    await nextMessage(proc, (m) => m.ready === true, 20_000, 'sio publisher')
    return {
      async setRate (rate) { proc.send({ rate }); await nextMessage(proc, (m) => m.ok === true, 5000, 'rate') },
      async stop () { await stop(proc) },
    }
  }
  const proc = track(fork(join(ROOT, 'bench/load/publisher.ts'), [], { execArgv: TSX, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
  return {
    async setRate (rate, users) { proc.send({ kind: isHerald(kind) ? 'herald' : 'ws', history: kind !== 'herald-nohistory', redisUrl, rate, users }); await nextMessage(proc, (m) => m.ok === true, 10_000, 'rate') },
    async burst (n) { proc.send({ kind: isHerald(kind) ? 'herald' : 'ws', history: kind !== 'herald-nohistory', redisUrl, rate: 0, burst: n }); await nextMessage(proc, (m) => m.ok === true, 10_000, 'burst') },
    async stop () { await stop(proc) },
  }
}

// ---------- progress ----------

let status = ''
const progress = (s: string): void => { status = s; process.stderr.write(`\r\x1b[K${s}`) }
const t00 = Date.now()
const elapsed = (): string => `${Math.round((Date.now() - t00) / 1000)}s`

// ---------- scenarios ----------

interface IdleRow { kind: Kind, connections: number, rssPerConn: number, heapPerConn: number, connectPerSec: number }
interface FanoutRow { kind: Kind, subscribers: number, saturation: number, p50AtSat: number, p99AtSat: number, steps: Array<{ offered: number, achieved: number, p50: number, p99: number, p50First: number, p50Second: number, rssMB: number, sustained: boolean }> }
interface OverloadRow { kind: Kind, subscribers: number, offered: number, achieved: number, peakRssMB: number, capped: boolean, closed: number, closes: Record<string, number> }
/** a server past this RSS is stopped: unbounded buffering is the finding, not a reason to swap */
const RSS_CAP = 3 * 2 ** 30
interface LatencyRow { kind: Kind, rate: number, achieved: number, p50: number, p99: number }

async function idleMemory (redisUrl: string): Promise<IdleRow[]> {
  const rows: IdleRow[] = []
  for (const kind of KINDS) {
    for (const n of cfg.idle) {
      progress(`[${elapsed()}] idle memory: ${LABEL[kind]} × ${n}`)
      // No settling time: readings follow a full GC, and the generators report
      // ready only when every connection has been answered `subscribed`.
      const s = await startServer(kind, redisUrl, {}, { inspect: true })
      const before = await memoryOf(s)
      const l = await startLoad(s, n)
      const after = await memoryOf(s)
      rows.push({ kind, connections: l.ready, rssPerConn: (after.rss - before.rss) / l.ready, heapPerConn: (after.heap - before.heap) / l.ready, connectPerSec: l.ready / (l.connectMs / 1000) })
      await stopAll(s, l)
    }
  }
  return rows
}

/**
 * Server first: the side that closes first keeps TIME_WAIT, and on the
 * server's side it holds no ephemeral port the next scenario needs.
 */
async function stopAll (s: Server, ...loads: Loadgen[]): Promise<void> {
  await stop(s.proc)
  for (const l of loads) await stopLoad(l)
}

/**
 * A step is sustained when delivery keeps up with the offer and latency is
 * not growing: past saturation a queue builds up, so the second half of the
 * window is slower than the first. The margin absorbs noise at 10k
 * subscribers, where one broadcast alone spreads deliveries over ~100 ms.
 */
const sustained = (m: Measured, offered: number): boolean =>
  m.perSec >= 0.9 * offered && m.p99 <= 1000 && !(m.p50Second > 1.5 * m.p50First + 20)

/**
 * Stops publishing until the subscribers stop receiving: a failed step leaves
 * a backlog, and measuring the next step on top of it would fail that step
 * too (seen: plain ws at 10k subscribers stepping down to 9k while seconds of
 * backlog drained). Bounded at 30 s.
 */
async function quiet (l: Loadgen, pub: Publisher): Promise<void> {
  await pub.setRate(0)
  const until = Date.now() + 30_000
  while (Date.now() < until) {
    const m = await measure(l, 2100)
    if (m.perSec === 0) break
  }
}

/** RSS sampled every 200 ms while `work` runs; the peak. */
async function peakRss (pid: number, work: Promise<unknown>, onSample?: (rss: number) => void): Promise<number> {
  let peak = rssOf(pid)
  let done = false
  void work.finally(() => { done = true })
  while (!done) {
    try { peak = Math.max(peak, rssOf(pid)) } catch { break } // exited
    onSample?.(peak)
    await sleep(200)
  }
  await work
  return peak
}

async function fanout (redisUrl: string): Promise<{ rows: FanoutRow[], overload: OverloadRow[] }> {
  const rows: FanoutRow[] = []
  const overload: OverloadRow[] = []
  for (const subscribers of cfg.fanout) {
    for (const kind of FANOUT_KINDS) {
      const s = await startServer(kind, redisUrl)
      // About 20 clients parse and sample every message; the rest count frames (subscribers.ts countRaw).
      const l = await startLoad(s, subscribers, { sampleEvery: Math.max(10, Math.floor(subscribers / 20)), countRaw: true })
      const pub = await startPublisher(kind, redisUrl)
      const steps: FanoutRow['steps'] = []
      // About ten events a second to start: fewer, and one event more or less in a window swings the rate.
      let offered = Math.max(cfg.startRate, 10 * subscribers)
      // Warm-up, not measured: the first events compile the hot path, and
      // that pause alone failed a first step.
      await pub.setRate(offered / subscribers)
      await sleep(cfg.warmupMs)
      // Up by 1.6× while sustained. A failed step is measured once more (a
      // pause on a shared machine is not saturation); a second failure ends
      // the climb, or, with nothing sustained yet, steps down instead.
      let failures = 0
      let down = false
      for (let step = 0; step < cfg.maxSteps; step++) {
        progress(`[${elapsed()}] fan-out ${LABEL[kind]}, ${subscribers} subscribers: offering ${k(offered)} deliveries/s`)
        await pub.setRate(offered / subscribers)
        await sleep(cfg.settleMs)
        let m: Measured | undefined
        const rss = await peakRss(s.pid, measure(l, cfg.stepMs).then((x) => { m = x }))
        const ok = sustained(m!, offered)
        steps.push({ offered, achieved: m!.perSec, p50: m!.p50, p99: m!.p99, p50First: m!.p50First, p50Second: m!.p50Second, rssMB: rss / 2 ** 20, sustained: ok })
        if (rss > RSS_CAP) break
        if (ok) {
          if (down) break // the highest sustained rate under one that failed twice
          failures = 0
          offered *= 1.6
          continue
        }
        if (++failures < 2) { await quiet(l, pub); continue }
        if (steps.some((x) => x.sustained)) break
        failures = 0
        down = true
        offered /= 1.6
        await quiet(l, pub)
      }
      const good = steps.filter((x) => x.sustained)
      const best = good.length > 0 ? good.reduce((a, b) => (b.achieved > a.achieved ? b : a)) : steps[0]!
      rows.push({ kind, subscribers, saturation: best.achieved, p50AtSat: best.p50, p99AtSat: best.p99, steps })

      // Past saturation, at twice what this server sustains: memory must stay
      // bounded (Herald sheds at its input what it cannot deliver within a
      // second, and closes 4008 only consumers that do not read) where a plain
      // server buffers without end. Stopped past RSS_CAP to spare the machine.
      if (subscribers === cfg.fanout[0]) {
        const rate = 2 * best.achieved
        progress(`[${elapsed()}] past saturation: ${LABEL[kind]}, ${subscribers} subscribers, offering ${k(rate)} deliveries/s`)
        await pub.setRate(rate / subscribers)
        let capped = false
        let m: Measured | undefined
        const peak = await peakRss(s.pid, measure(l, cfg.overloadMs).then((x) => { m = x }), (rss) => {
          if (rss > RSS_CAP && !capped) { capped = true; s.proc.kill('SIGKILL') }
        })
        const closed = Object.values(m?.closes ?? {}).reduce((a, b) => a + b, 0)
        overload.push({ kind, subscribers, offered: rate, achieved: m?.perSec ?? 0, peakRssMB: peak / 2 ** 20, capped, closed, closes: m?.closes ?? {} })
      }
      await pub.setRate(0)
      await pub.stop()
      await stopAll(s, l)
    }
  }
  return { rows, overload }
}

async function latency (redisUrl: string, fan: FanoutRow[]): Promise<LatencyRow[]> {
  const subscribers = cfg.fanout[0]!
  const base = fan.find((r) => r.kind === 'ws' && r.subscribers === subscribers)
  const forced = process.argv.find((a) => a.startsWith('--latency-rate='))
  const rate = forced !== undefined ? Number(forced.slice(15)) : base!.saturation / 2
  // Two rounds, the second in reverse order: whoever runs first (right after
  // the fan-out scenario's heavy load) pays for the machine settling, and a
  // tail percentile is sensitive to that. Each server keeps its better round.
  // A moment of calm first: right after the fan-out scenario's overload the
  // machine is still settling (a tail percentile measured then came out 1.4×
  // ws where the same run in isolation gave 0.9×).
  if (!SMOKE) await sleep(5000)
  const best = new Map<Kind, LatencyRow>()
  for (const order of [KINDS, [...KINDS].reverse()].slice(0, cfg.latencyRounds)) {
    for (const kind of order) {
      progress(`[${elapsed()}] latency at ${Math.round(rate)} deliveries/s: ${LABEL[kind]}`)
      const s = await startServer(kind, redisUrl)
      // One client in 5 parses and samples every message, the rest count frames.
      const l = await startLoad(s, subscribers, { sampleEvery: 5, countRaw: true })
      const pub = await startPublisher(kind, redisUrl)
      await pub.setRate(rate / subscribers)
      await sleep(cfg.settleMs)
      const m = await measure(l, cfg.latencyMs)
      const row = { kind, rate, achieved: m.perSec, p50: m.p50, p99: m.p99 }
      const prev = best.get(kind)
      if (prev === undefined || row.p99 < prev.p99) best.set(kind, row)
      await pub.stop()
      await stopAll(s, l)
    }
  }
  return KINDS.map((k) => best.get(k)!)
}

/** Many users, each receiving only their own events: a node's Redis traffic follows its own users. */
async function targeted (redisUrl: string): Promise<{ users: number, published: number, nodeB: { brokerIn: number, delivered: number }, nodeC: { brokerIn: number, delivered: number }, foreign: number }> {
  progress(`[${elapsed()}] targeted events`)
  const users = cfg.targetedUsers
  const b = await startServer('herald', redisUrl)
  const c = await startServer('herald', redisUrl)
  // Users u0..u(n-1) on B, un..u(2n-1) on C; a third of the events go to users connected nowhere.
  const lb = await startLoad(b, users, { pattern: 'authentication.*', offset: 0, sampleEvery: 10 })
  const lc = await startLoad(c, users, { pattern: 'authentication.*', offset: users, sampleEvery: 10 })
  const stat = async (s: Server): Promise<{ brokerMessagesIn: number, eventsDelivered: number }> =>
    ((await (await fetch(`${s.http}/api/stats`, { headers: { authorization: 'Bearer bench-api-key-0123456789' } })).json()) as { server: { brokerMessagesIn: number, eventsDelivered: number } }).server
  const b0 = await stat(b)
  const c0 = await stat(c)
  const pub = await startPublisher('herald', redisUrl)
  const rate = SMOKE ? 300 : 3000
  const seconds = SMOKE ? 2 : 5
  await pub.setRate(rate, users * 3)
  const mb = measure(lb, seconds * 1000)
  const mc = measure(lc, seconds * 1000)
  await Promise.all([mb, mc])
  await pub.setRate(0)
  await sleep(500)
  const b1 = await stat(b)
  const c1 = await stat(c)
  await pub.stop()
  await Promise.all([stop(b.proc), stop(c.proc)])
  await Promise.all([stopLoad(lb), stopLoad(lc)])
  // Probe / registry traffic is tiny but counted; published is what the publisher was asked for.
  const published = rate * (seconds + 0.5)
  return {
    users,
    published,
    nodeB: { brokerIn: b1.brokerMessagesIn - b0.brokerMessagesIn, delivered: b1.eventsDelivered - b0.eventsDelivered },
    nodeC: { brokerIn: c1.brokerMessagesIn - c0.brokerMessagesIn, delivered: c1.eventsDelivered - c0.eventsDelivered },
    foreign: 0,
  }
}

/**
 * What the cluster-wide message limiter costs per client frame: its two
 * Redis-backed counters (user and IP) against a bare Redis round trip on a
 * connection of its own, one at a time and with 64 in flight, in this process.
 */
async function limiterCost (redisUrl: string): Promise<{ ops: number, rows: Array<{ what: string, serialUs: number, concurrentOpsPerSec: number }> }> {
  progress(`[${elapsed()}] message limiter cost`)
  const { createBackend } = await import('../src/backend/backend.js')
  const { createMessageLimiter } = await import('../src/limits/message-limiter.js')
  const backend = createBackend({ redis: { url: redisUrl }, keyPrefix: 'bench-rl:' })
  await backend.connect()
  const limiter = createMessageLimiter(backend.rates, 1_000_000_000)
  const ping = new Redis(redisUrl)
  const ops = SMOKE ? 2000 : 20_000
  const run = async (what: string, one: (i: number) => Promise<unknown>): Promise<{ what: string, serialUs: number, concurrentOpsPerSec: number }> => {
    for (let i = 0; i < 500; i++) await one(i) // warm up
    let t0 = performance.now()
    for (let i = 0; i < ops; i++) await one(i)
    const serialUs = (performance.now() - t0) * 1000 / ops
    t0 = performance.now()
    let next = 0
    await Promise.all(Array.from({ length: 64 }, async () => { while (next < ops) await one(next++) }))
    return { what, serialUs, concurrentOpsPerSec: ops / ((performance.now() - t0) / 1000) }
  }
  const rows = [
    await run('Redis PING (baseline)', async () => await ping.ping()),
    await run('limiter.consume (user + IP counters)', async (i) => await limiter.consume(`u${i % 1000}`, `10.0.${(i >> 8) & 255}.${i & 255}`)),
  ]
  ping.disconnect()
  await backend.close()
  return { ops, rows }
}

/** Many connections across a local cluster, then one broadcast that must reach them all. */
async function bigCluster (redisUrl: string): Promise<{ nodes: number, connections: number, connectSeconds: number, totalRssMB: number, rssPerConn: number, broadcastMs: number, reached: number }> {
  const nodes: Server[] = []
  for (let i = 0; i < cfg.bigNodes; i++) nodes.push(await startServer('herald', redisUrl, {}, { inspect: true }))
  const rssAfterGc = async (): Promise<number> => (await Promise.all(nodes.map(memoryOf))).reduce((a, m) => a + m.rss, 0)
  const before = await rssAfterGc()
  const per = Math.ceil(cfg.big / nodes.length)
  const t0 = performance.now()
  const loads: Loadgen[] = []
  let connected = 0
  for (const [i, s] of nodes.entries()) {
    progress(`[${elapsed()}] ${cfg.big} connections: ${connected} connected, node ${i + 1}/${nodes.length}`)
    const l = await startLoad(s, per, { offset: i * per, addressBase: 2 + i * 3, sampleEvery: 1 })
    loads.push(l)
    connected += l.ready
  }
  const connectSeconds = (performance.now() - t0) / 1000
  await sleep(1000)
  const after = await rssAfterGc()
  progress(`[${elapsed()}] ${connected} connections: broadcasting one event`)
  // One event; every subscriber samples it (sampleEvery 1), so the slowest
  // sample is the time for the broadcast to reach the last connection.
  let reached = 0
  let slowest = 0
  const done = new Promise<void>((resolve) => {
    const stopAt = performance.now() + 30_000
    const on = (m: any): void => {
      if (m.tick !== true) return
      reached += m.delivered
      for (const x of m.samples) slowest = Math.max(slowest, x)
      if (reached >= connected) finish()
    }
    const finish = (): void => { for (const l of loads) for (const p of l.procs) p.off('message', on); clearInterval(iv); resolve() }
    const iv = setInterval(() => { if (performance.now() > stopAt) finish() }, 200)
    for (const l of loads) for (const p of l.procs) p.on('message', on)
  })
  const pub = await startPublisher('herald', redisUrl)
  await pub.burst!(1)
  await done
  const broadcastMs = slowest
  await pub.stop()
  for (const s of nodes) await stop(s.proc)
  for (const l of loads) await stopLoad(l)
  return { nodes: nodes.length, connections: connected, connectSeconds, totalRssMB: after / 2 ** 20, rssPerConn: (after - before) / connected, broadcastMs, reached }
}

const median = (xs: number[]): number => quantile(xs, 0.5)
/** Rounds in alternating order: whoever goes first on a busy machine does not always go first. */
const alternating = <T>(list: T[], round: number): T[] => round % 2 === 0 ? list : [...list].reverse()

interface ConnectRow { kind: Kind, perSec: number[], median: number, cpuUs: number[], cpuMedian: number, coldUs: number[], coldMedian: number }

/** Until a process's CPU stays under 5% of a core for half a second (its closes handled), at most 10 s. */
async function settled (pid: number): Promise<void> {
  const until = Date.now() + 10_000
  while (Date.now() < until) {
    const before = cpuOf(pid)
    await sleep(500)
    if (cpuOf(pid) - before < 0.025) return
  }
}

/**
 * Authenticated connections per second until the server's first frame
 * (Herald's welcome comes after its admission: token, revocation, slots, the
 * user channel subscribed), 2 generator processes of 200 concurrent
 * connects each. Herald against the same load on a corked ws server, on one
 * making a Redis round trip per connection, and on uWebSockets.js.
 */
async function connectRate (redisUrl: string): Promise<ConnectRow[]> {
  const kinds: Kind[] = ['herald', ...(BEFORE !== undefined ? ['herald-before' as const] : []), 'ws-cork', 'ws-rtt', 'uws']
  const got = new Map<Kind, number[]>(kinds.map((k) => [k, []]))
  const cpu = new Map<Kind, number[]>(kinds.map((k) => [k, []]))
  const cold = new Map<Kind, number[]>(kinds.map((k) => [k, []]))
  for (let round = 0; round < cfg2.connectRounds; round++) {
    for (const kind of alternating(kinds, round)) {
      progress(`[${elapsed()}] connect rate, round ${round + 1}: ${LABEL[kind]}`)
      const s = await startServer(kind, redisUrl)
      // A fresh process compiles its code on its first connections (V8's
      // compiler threads count in its CPU): those are measured apart, then
      // closed, and the rate is taken on a server that has run, as the nodes
      // that take a dead node's clients have.
      const fresh = cpuOf(s.pid)
      const w = await startLoad(s, cfg2.connectWarm, { untilWelcome: true, procs: 2, offset: 1_000_000 + round * cfg2.connectWarm })
      cold.get(kind)!.push((cpuOf(s.pid) - fresh) * 1e6 / w.ready)
      await stopLoad(w)
      await settled(s.pid)
      const before = cpuOf(s.pid)
      const l = await startLoad(s, cfg2.connect, { untilWelcome: true, procs: 2, offset: round * cfg2.connect })
      cpu.get(kind)!.push((cpuOf(s.pid) - before) * 1e6 / l.ready)
      got.get(kind)!.push(l.ready / (l.connectMs / 1000))
      await stopAll(s, l)
    }
  }
  return kinds.map((kind) => ({ kind, perSec: got.get(kind)!, median: median(got.get(kind)!), cpuUs: cpu.get(kind)!, cpuMedian: median(cpu.get(kind)!), coldUs: cold.get(kind)!, coldMedian: median(cold.get(kind)!) }))
}

interface StormRow { kind: Kind, /** the two nodes left had run before the storm */ warm: boolean, clients: number, seconds: number[], median: number, retries: number, why: Record<string, number>, cpu: Array<{ nodes: number, loaders: number, redis: number }> }

/**
 * A node holding `clients` connections of distinct users, each subscribed,
 * is killed; its clients reconnect at once to the two nodes left, half to
 * each. Timed from the kill to the last client subscribed again. Clients in
 * generator processes of 5,000 (open files are capped at 20,000 a process).
 * Each server is measured twice a round: with the two nodes left warm (they
 * have run, as in a cluster that loses a node) and fresh (started just
 * before, as nodes a scaler adds during the storm).
 */
async function storm (redisUrl: string, redisPid: number): Promise<StormRow[]> {
  const kinds: Array<[Kind, boolean]> = (['herald', ...(BEFORE !== undefined ? ['herald-before' as const] : [])] as Kind[]).flatMap((k) => [[k, true], [k, false]] as Array<[Kind, boolean]>)
  const rows = new Map<string, StormRow>(kinds.map(([k, warm]) => [`${k}:${warm}`, { kind: k, warm, clients: cfg2.storm, seconds: [], median: NaN, retries: 0, why: {}, cpu: [] }]))
  for (let round = 0; round < cfg2.stormRounds; round++) {
    for (const [kind, warm] of alternating(kinds, round)) {
      progress(`[${elapsed()}] reconnect storm, round ${round + 1}: ${LABEL[kind]}, ${warm ? 'warm' : 'fresh'} nodes, ${cfg2.storm} clients`)
      const [a, b, c] = [await startServer(kind, redisUrl), await startServer(kind, redisUrl), await startServer(kind, redisUrl)]
      const per = 5000
      const gens: ChildProcess[] = []
      for (let off = 0; off < cfg2.storm; off += per) {
        const g = track(fork(join(ROOT, 'bench/load/storm.ts'), [], { execArgv: TSX, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
        gens.push(g)
        // Distinct users in every round: a round's users are not the previous round's.
        g.send({ job: { url: c.url, then: [a.url, b.url], count: Math.min(per, cfg2.storm - off), offset: 1_000_000 * (round + 1) + off, concurrency: 200, secret: SECRET } })
      }
      const ready = await Promise.all(gens.map(async (g) => await nextMessage<{ ready: number, error?: string }>(g, (m) => m.ready !== undefined, 300_000, 'storm clients ready')))
      if (ready.some((r) => r.error !== undefined)) throw new Error(`storm clients: ${ready.map((r) => r.error).join(', ')}`)
      // The nodes that take a dead node's clients have been running: each
      // first takes and closes subscribed connections of other users, so the
      // storm meets compiled code, as the connect rate does (a fresh process
      // spends about as much again in V8's compiler on its first thousands).
      if (warm) {
        for (const [i, s] of [a, b].entries()) await stopLoad(await startLoad(s, cfg2.connectWarm, { offset: 500_000 + (round * 2 + i) * cfg2.connectWarm }))
        await Promise.all([settled(a.pid), settled(b.pid)])
      }
      const done = gens.map(async (g) => await nextMessage<{ resubscribed: number, retries: number, lastAt: number, why: Array<[string, number]> }>(g, (m) => m.resubscribed !== undefined, 120_000, 'storm resubscribed'))
      // CPU seconds of the two nodes left, the load generators and Redis from the kill to the last client back.
      const cpuNow = (): [number, number, number] => [cpuOf(a.pid) + cpuOf(b.pid), gens.reduce((n, g) => n + cpuOf(g.pid!), 0), cpuOf(redisPid)]
      const cpu0 = cpuNow()
      const killedAt = performance.timeOrigin + performance.now()
      await stop(c.proc)
      const results = await Promise.all(done)
      const cpu1 = cpuNow()
      const row = rows.get(`${kind}:${warm}`)!
      row.cpu.push({ nodes: cpu1[0] - cpu0[0], loaders: cpu1[1] - cpu0[1], redis: cpu1[2] - cpu0[2] })
      row.seconds.push((Math.max(...results.map((r) => r.lastAt)) - killedAt) / 1000)
      row.retries += results.reduce((n, r) => n + r.retries, 0)
      for (const r of results) for (const [w, n] of r.why) row.why[w] = (row.why[w] ?? 0) + n
      await Promise.all([stop(a.proc), stop(b.proc)])
      await Promise.all(gens.map(stop))
    }
  }
  return [...rows.values()].map((r) => ({ ...r, median: median(r.seconds) }))
}

interface BoundedRow { kind: Kind, subscribers: number, best: Record<number, number>, rounds: Array<Record<number, number>>, steps: Array<{ round: number, offered: number, achieved: number, p50: number, p99: number }> }

/**
 * The highest deliveries/s each server sustains with p99 latency within
 * each bound: offered rates step up by 1.6× from a few events a second; a
 * step counts for a bound when at least 90% of the offer is delivered with
 * p99 within it. The climb ends at the first step past the widest bound
 * (measured twice: a pause on a shared machine is not saturation). Rounds
 * alternate the servers' order; each server's better round is shown, as a
 * load that comes and goes on a shared machine only ever lowers a round.
 */
async function bounded (redisUrl: string): Promise<BoundedRow[]> {
  const kinds: Kind[] = ['herald', ...(BEFORE !== undefined ? ['herald-before' as const] : []), 'uws']
  const rows: BoundedRow[] = []
  for (const subscribers of cfg2.bounded) {
    const mine = new Map<Kind, BoundedRow>(kinds.map((kind) => [kind, { kind, subscribers, best: Object.fromEntries(BOUNDS.map((b) => [b, 0])), rounds: [], steps: [] }]))
    for (let round = 0; round < cfg2.boundedRounds; round++) {
      for (const kind of alternating(kinds, round)) {
        const row = mine.get(kind)!
        const got: Record<number, number> = Object.fromEntries(BOUNDS.map((b) => [b, 0]))
        const s = await startServer(kind, redisUrl)
        // One client in 50 parses and samples every message; the rest count frames (subscribers.ts countRaw).
        const l = await startLoad(s, subscribers, { sampleEvery: 50, countRaw: true })
        const pub = await startPublisher(kind, redisUrl)
        await pub.setRate(cfg2.boundedStart)
        await sleep(cfg.warmupMs)
        let perSub = cfg2.boundedStart
        let misses = 0
        for (let step = 0; step < cfg2.boundedSteps; step++) {
          const offered = perSub * subscribers
          progress(`[${elapsed()}] p99-bounded, round ${round + 1}, ${LABEL[kind]}, ${subscribers} subscribers: offering ${k(offered)} deliveries/s`)
          await pub.setRate(perSub)
          await sleep(cfg.settleMs)
          const m = await measure(l, cfg.stepMs)
          row.steps.push({ round, offered, achieved: m.perSec, p50: m.p50, p99: m.p99 })
          const kept = m.perSec >= 0.9 * offered
          for (const b of BOUNDS) if (kept && m.p99 <= b) got[b] = Math.max(got[b]!, m.perSec)
          if (kept && m.p99 <= BOUNDS[0]) { misses = 0; perSub *= 1.6; continue }
          if (++misses >= 2) break
          await quiet(l, pub)
        }
        row.rounds.push(got)
        for (const b of BOUNDS) row.best[b] = Math.max(row.best[b]!, got[b]!)
        await pub.setRate(0)
        await pub.stop()
        await stopAll(s, l)
      }
    }
    rows.push(...mine.values())
  }
  return rows
}

// ---------- report ----------

const kb = (b: number): string => `${(b / 1024).toFixed(1)} KiB`
const k = (n: number): string => n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(0)}k` : `${Math.round(n)}`
/** connects/s: a few thousand, where one digit more tells the servers apart */
const k1 = (n: number): string => `${(n / 1e3).toFixed(1)}k`
const ms = (n: number): string => Number.isNaN(n) ? 'n/a' : `${n.toFixed(1)} ms`
const ratio = (a: number, b: number): string => (b > 0 ? `${(a / b).toFixed(2)}×` : 'n/a')

async function main (): Promise<void> {
  const redis = await startRedis()
  const results: Record<string, unknown> = {
    machine: { cpus: cpus().length, model: cpus()[0]?.model, memGiB: Math.round(totalmem() / 2 ** 30), node: process.version },
    smoke: SMOKE,
    date: new Date().toISOString(),
  }
  const want = (s: string): boolean => ONLY === undefined || ONLY.includes(s)
  const conn = want('connect') ? await connectRate(redis.url) : []
  const stm = want('storm') ? await storm(redis.url, redis.proc.pid!) : []
  const bnd = want('bounded') ? await bounded(redis.url) : []
  const idle = want('idle') ? await idleMemory(redis.url) : []
  const { rows: fan, overload } = want('fanout') || (want('latency') && !process.argv.some((a) => a.startsWith('--latency-rate='))) ? await fanout(redis.url) : { rows: [], overload: [] }
  const lat = want('latency') && (fan.length > 0 || process.argv.some((a) => a.startsWith('--latency-rate='))) ? await latency(redis.url, fan) : []
  const tgt = want('targeted') ? await targeted(redis.url) : null
  const big = want('big') ? await bigCluster(redis.url) : null
  const lim = want('limiter') ? await limiterCost(redis.url) : null
  // On Redis servers of its own: its memory figures must start from empty.
  const str = want('streams') ? await streamsBench({ smoke: SMOKE, progress: (s) => progress(`[${elapsed()}] ${s}`) }) : null
  // Its own Redis and nodes too.
  const wh = want('webhooks') ? await webhooksBench({ smoke: SMOKE, progress: (s) => progress(`[${elapsed()}] ${s}`) }) : null
  // HTTP publish against a bare Fastify route: its own Redis and node too.
  const pub = want('publish') ? await publishBench({ smoke: SMOKE, progress: (s) => progress(`[${elapsed()}] ${s}`) }) : null
  // Its own Redis, nodes, balancer and SDK client processes.
  const res = want('resume') ? await resumeBench({ smoke: SMOKE, progress: (s) => progress(`[${elapsed()}] ${s}`) }) : null
  // Its own Redis and node too.
  const cpub = want('client-publish') ? await clientPublishBench({ smoke: SMOKE, progress: (s) => progress(`[${elapsed()}] ${s}`) }) : null
  Object.assign(results, { connect: conn, storm: stm, bounded: bnd, idle, fanout: fan, overload, latency: lat, targeted: tgt, big, limiter: lim, streams: str, webhooks: wh, resume: res, clientPublish: cpub, publish: pub })
  process.stderr.write('\r\x1b[K')

  const md: string[] = []
  md.push(`# Herald benchmark${SMOKE ? ' (smoke run: sizes too small to mean anything)' : ''}`, '',
    `${(results.machine as { cpus: number }).cpus} cores (${(results.machine as { model?: string }).model ?? '?'}), ${(results.machine as { memGiB: number }).memGiB} GiB, Node ${process.version}, ${new Date().toISOString()}. Command: \`npm run bench${SMOKE ? ' -- --smoke' : ''}\`. Events ~150 B; publisher and subscribers in separate processes; ratios compare servers measured in this same run.`, '')
  if (conn.length > 0) {
    const corked = conn.find((r) => r.kind === 'ws-cork')!
    md.push('## Connect rate (authenticated connections/s until the first frame)', '', `${cfg2.connect} connections per round from 2 generator processes, 200 connects in flight each, on a server that has taken and closed ${cfg2.connectWarm} connections first (its code compiled, as on a node that has been running); ${cfg2.connectRounds} rounds in alternating order, the median shown. The server's CPU time per connection (user + system, from /proc) is the figure a busy shared machine does not move: the rate is what the server, its clients and everything else on the cores manage together. The first ${cfg2.connectWarm}, on the fresh process, are the last column.`, '',
      '| server | connects/s (median) | rounds | vs corked ws | server CPU / connection (median) | vs corked ws | fresh process: CPU / connection |', '|---|---|---|---|---|---|---|')
    for (const r of conn) md.push(`| ${LABEL[r.kind]} | ${k1(r.median)} | ${r.perSec.map((x) => k1(x)).join(', ')} | ${ratio(r.median, corked.median)} | ${r.cpuMedian.toFixed(0)} µs | ${ratio(corked.cpuMedian, r.cpuMedian)} | ${r.coldMedian.toFixed(0)} µs (${ratio(corked.coldMedian, r.coldMedian)}) |`)
    md.push('')
  }
  if (stm.length > 0) {
    md.push(`## Reconnect storm: a node with ${stm[0]!.clients} clients of distinct users dies; they reconnect at once to the two nodes left`, '', `Timed from the kill to the last client subscribed again; median of the rounds. Warm: the two nodes left have each taken and closed ${cfg2.connectWarm} subscribed connections first (their code compiled, as in a cluster that loses one of its nodes); fresh: they were started just before (as nodes added during the storm).`, '',
      '| server | the two nodes left | all subscribed again (median) | rounds | reconnects retried | CPU s per round: the two nodes / load generators / Redis |', '|---|---|---|---|---|---|')
    for (const r of stm) md.push(`| ${LABEL[r.kind]} | ${r.warm ? 'warm' : 'fresh'} | ${r.median.toFixed(2)} s | ${r.seconds.map((x) => `${x.toFixed(2)} s`).join(', ')} | ${r.retries}${r.retries > 0 ? ` (${Object.entries(r.why).map(([w, n]) => `${n} × ${w}`).join('; ')})` : ''} | ${r.cpu.map((c) => `${c.nodes.toFixed(1)} / ${c.loaders.toFixed(1)} / ${c.redis.toFixed(1)}`).join(', ')} |`)
    md.push('')
  }
  if (bnd.length > 0) {
    md.push('## Deliveries/s sustained within a p99 latency bound', '', `Offered rates step up by 1.6× from a few events a second; a step counts for a bound when ≥ 90% of the offer is delivered with p99 within it. ${cfg2.boundedRounds} rounds in alternating order; the better round is shown, then each round's.`, '',
      '| server | subscribers | p99 ≤ 250 ms | vs uWS | p99 ≤ 50 ms | vs uWS | rounds (250 / 50 ms) |', '|---|---|---|---|---|---|---|')
    for (const r of bnd) {
      const u = bnd.find((x) => x.kind === 'uws' && x.subscribers === r.subscribers)
      md.push(`| ${LABEL[r.kind]} | ${r.subscribers} | ${k(r.best[250]!)} | ${u ? ratio(r.best[250]!, u.best[250]!) : 'n/a'} | ${k(r.best[50]!)} | ${u ? ratio(r.best[50]!, u.best[50]!) : 'n/a'} | ${r.rounds.map((x) => `${k(x[250]!)} / ${k(x[50]!)}`).join(', ')} |`)
    }
    md.push('')
  }
  if (idle.length > 0) {
    md.push('## Idle memory per authenticated, subscribed connection', '', '| server | connections | RSS / conn | heap / conn | connects/s | RSS vs ws |', '|---|---|---|---|---|---|')
    for (const r of idle) {
      const ws = idle.find((x) => x.kind === 'ws' && x.connections >= r.connections * 0.95 && x.connections <= r.connections * 1.05)
      md.push(`| ${LABEL[r.kind]} | ${r.connections} | ${kb(r.rssPerConn)} | ${kb(r.heapPerConn)} | ${k(r.connectPerSec)} | ${ws ? ratio(r.rssPerConn, ws.rssPerConn) : 'n/a'} |`)
    }
    md.push('')
  }
  if (fan.length > 0) {
    md.push('## Fan-out saturation (deliveries/s sustained, latency not growing)', '',
      `After ${cfg.warmupMs / 1000} s of warm-up, offered rates step up by 1.6× every ${cfg.stepMs / 1000} s (a failed step is measured again; with nothing sustained yet, they step down); a step is sustained when at least 90% of the offer is delivered, p99 stays under 1 s and the median of the window's second half is not above 1.5× its first half (+20 ms). The highest sustained step is shown. About 20 WebSocket clients parse and time every message; the others count frames in the bytes (Socket.IO clients all parse), so the load generators do not set how far a server gets.`, '',
      '| server | subscribers | deliveries/s | p50 | p99 | vs corked | vs socket.io |', '|---|---|---|---|---|---|---|')
    for (const r of fan) {
      const corked = fan.find((x) => x.kind === 'ws-cork' && x.subscribers === r.subscribers)
      const sio = fan.find((x) => x.kind === 'sio' && x.subscribers === r.subscribers)
      md.push(`| ${LABEL[r.kind]} | ${r.subscribers} | ${k(r.saturation)} | ${ms(r.p50AtSat)} | ${ms(r.p99AtSat)} | ${corked ? ratio(r.saturation, corked.saturation) : 'n/a'} | ${sio ? ratio(r.saturation, sio.saturation) : 'n/a'} |`)
    }
    md.push('')
    const onOff = fan.filter((r) => r.kind === 'herald').map((on) => [on, fan.find((x) => x.kind === 'herald-nohistory' && x.subscribers === on.subscribers)] as const)
    for (const [on, off] of onOff) if (off !== undefined) md.push(`History on vs off, ${on.subscribers} subscribers: ${ratio(on.saturation, off.saturation)} (${k(on.saturation)} / ${k(off.saturation)} deliveries/s).`, '')
  }
  if (overload.length > 0) {
    md.push(`## Past saturation: twice each server's sustained rate for ${cfg.overloadMs / 1000} s, ${overload[0]!.subscribers} subscribers`, '',
      `Memory must stay bounded when subscribers cannot keep up. A server past ${RSS_CAP / 2 ** 30} GiB RSS is stopped there.`, '',
      '| server | offered/s | delivered/s | peak RSS | closed by the server |', '|---|---|---|---|---|')
    for (const r of overload) {
      const codes = Object.entries(r.closes).map(([c, n]) => `${n} × ${c}`).join(', ')
      md.push(`| ${LABEL[r.kind]} | ${k(r.offered)} | ${k(r.achieved)} | ${r.capped ? `> ${RSS_CAP / 2 ** 30} GiB (stopped)` : `${r.peakRssMB.toFixed(0)} MiB`} | ${r.closed === 0 ? 'none' : codes} |`)
    }
    md.push('')
  }
  if (lat.length > 0) {
    const base = lat.find((x) => x.kind === 'ws') ?? lat[0]!
    md.push(`## Latency at a fixed ${k(lat[0]!.rate)} deliveries/s (half of plain ws saturation), ${cfg.fanout[0]} subscribers`, '', cfg.latencyRounds > 1 ? 'Each server measured twice, in opposite orders; the better round is shown.' : 'Each server measured once.', '', 'One WebSocket client in 5 parses and times every message; the others count frames.', '', '| server | achieved/s | p50 | p99 | p99 vs ws |', '|---|---|---|---|---|')
    for (const r of lat) md.push(`| ${LABEL[r.kind]} | ${k(r.achieved)} | ${ms(r.p50)} | ${ms(r.p99)} | ${ratio(r.p99, base.p99)} |`)
    md.push('')
  }
  if (tgt !== null) {
    md.push('## Targeted events: a node\'s Redis traffic follows its own users', '',
      `${tgt.users} users on node B and ${tgt.users} other users on node C; ~${k(tgt.published)} events for ${tgt.users * 3} users (a third connected nowhere).`, '',
      '| node | messages from Redis | events delivered |', '|---|---|---|',
      `| B | ${k(tgt.nodeB.brokerIn)} | ${k(tgt.nodeB.delivered)} |`, `| C | ${k(tgt.nodeC.brokerIn)} | ${k(tgt.nodeC.delivered)} |`,
      '', `Each node receives about a third of what is published (its own users' events, plus its probe), not all of it.`, '')
  }
  if (big !== null) {
    md.push('## Connections across a local cluster', '', '| nodes | connections | connect time | total RSS | RSS / conn | broadcast reached | time to reach all |', '|---|---|---|---|---|---|---|',
      `| ${big.nodes} | ${big.connections} | ${big.connectSeconds.toFixed(1)} s | ${big.totalRssMB.toFixed(0)} MiB | ${kb(big.rssPerConn)} | ${big.reached} | ${ms(big.broadcastMs)} |`, '')
  }
  if (lim !== null) {
    const base = lim.rows[0]!
    md.push('## Message limiter cost per client frame', '', `${lim.ops} operations each, in the bench process, on the bench's private Redis.`, '',
      '| operation | one at a time | vs PING | 64 in flight | vs PING |', '|---|---|---|---|---|',
      ...lim.rows.map((r) => `| ${r.what} | ${r.serialUs.toFixed(0)} µs | ${ratio(r.serialUs, base.serialUs)} | ${k(r.concurrentOpsPerSec)}/s | ${ratio(r.concurrentOpsPerSec, base.concurrentOpsPerSec)} |`), '')
  }
  if (str !== null) md.push(...streamsMarkdown(str))
  if (wh !== null) md.push(...webhooksMarkdown(wh))
  if (res !== null) md.push(...resumeMarkdown(res))
  if (cpub !== null) md.push(...clientPublishMarkdown(cpub))
  if (pub !== null) md.push(...publishMarkdown(pub))
  const dir = join(ROOT, 'bench/results')
  mkdirSync(dir, { recursive: true })
  // A partial run (--only=…) must not replace the full results.
  const name = SMOKE ? 'smoke' : ONLY !== undefined ? 'partial' : 'latest'
  writeFileSync(join(dir, `${name}.md`), md.join('\n'))
  writeFileSync(join(dir, `${name}.json`), JSON.stringify(results, null, 2))
  process.stdout.write(md.join('\n') + '\n')
  process.stdout.write(`results: bench/results/${name}.md, bench/results/${name}.json (${elapsed()})\n`)
  await stop(redis.proc)
  void status
}

main().then(() => { cleanup(); process.exit(0) }, (err: unknown) => { process.stderr.write(`\nbench failed: ${(err as Error).stack ?? String(err)}\n`); cleanup(); process.exit(1) })
