// HTTP publish (a scenario of `npm run bench`; alone:
// `node --import tsx bench/publish.ts [--smoke] [--profile]`). In one run, on
// one machine, each server its own process, the load from another, all on
// 127.0.0.1, in alternating rounds (the order flips each round; medians
// reported):
//
//   - a bare Fastify route (bench/servers/bare-fastify.ts) that parses the
//     same JSON body and answers 202: the floor any JSON endpoint pays;
//   - a Fastify route that takes the event to Redis
//     (bench/servers/fastify-redis.ts): Herald's schemas and logger settings,
//     the API key checked as a node checks it, each body appended to a
//     stream, one script call per event-loop turn: what any service pays to
//     put the event in Redis;
//   - Herald's POST /api/events, a user event (its user stream plus the
//     admin copy), history on, on its own Redis;
//   - Herald's POST /api/events/batch, BATCH such events per request;
//   - with --herald-before=<path to dist/main.js>, another build's POST
//     /api/events in the same rounds: the figures before a change.
//
// CPU is the server process's own (user + system, what process.cpuUsage()
// reads, here from /proc/<pid>/stat so the server runs unmodified) over the
// window, divided by the requests (or events) answered 202 in it.
// `--profile` adds a CPU profile of the node over one single-publish window,
// printed as self time by function and by what it is spent on.
//
// Knobs while developing (environment): PUBLISH_TARGETS=bare,single (a
// subset), PROFILE_TARGET=batch (what --profile covers), HEAP_PROFILE=1
// (allocations sampled too), BATCH_SIZE, BATCH_IN_FLIGHT (100 and 4), ROUNDS (5),
// HERALD_LOG_LEVEL=info (the nodes' default; the bench runs them at warn),
// SERVER_FLAGS='--perf-basic-prof' (Node flags for every server measured:
// with it, `perf record -g -p <pid>` of two servers over the same rounds,
// compared symbol by symbol per request, counts CPU time only, where the
// inspector's profile counts a thread taken off the CPU inside a system
// call as busy there).
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { inspectorUrl, selfTime, session, type CpuProfile } from './inspector.js'
import { cpuOf, freePort, next, sleep, startRedis, stop, track } from './procs.js'

const cpuMsOf = (pid: number): number => 1000 * cpuOf(pid)

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const SECRET = 'bench-secret-that-is-at-least-32-characters'
const API_KEY = 'bench-api-key-0123456789'
const TSX = ['--import', 'tsx']
const SERVER_FLAGS = process.env.SERVER_FLAGS?.split(' ').filter((f) => f !== '') ?? []
// As the other scenarios run nodes; HERALD_LOG_LEVEL=info measures the default (two log lines a request).
const LOG_LEVEL = process.env.HERALD_LOG_LEVEL ?? 'warn'

export interface PublishRound { target: Target, requests: number, events: number, seconds: number, cpuMs: number, redisCpuMs: number, loadCpuMs: number, failed: number }
export interface PublishResult {
  rounds: PublishRound[]
  /** rounds per target */
  roundsEach: number
  batchSize: number
  inFlight: number
  batchInFlight: number
  logLevel: string
  /** medians over the rounds */
  bare: { cpuUsPerRequest: number, requestsPerSec: number }
  /** the Fastify route that appends the body to Redis */
  redisRoute: { cpuUsPerRequest: number, requestsPerSec: number, redisUsPerEvent: number }
  single: { cpuUsPerRequest: number, requestsPerSec: number, redisUsPerEvent: number }
  batch: { cpuUsPerEvent: number, eventsPerSec: number, requestsPerSec: number, redisUsPerEvent: number }
  /** the --herald-before node's POST /api/events, when measured */
  before?: { cpuUsPerRequest: number, requestsPerSec: number, redisUsPerEvent: number, cpuRatio: number }
  /** Herald single publish CPU ÷ bare route CPU (goal ≤ 1.5) */
  cpuRatio: number
  /** Herald single publish CPU ÷ the Fastify + Redis route's */
  cpuRatioVsRedisRoute: number
  /** batch events/s ÷ single publishes/s (goal ≥ 20) */
  batchRatio: number
  /** node CPU per event, single ÷ batch */
  batchCpuRatio: number
  profile?: string[]
}

type Target = 'bare' | 'redisRoute' | 'single' | 'batch' | 'before'
// --herald-before=<another checkout>/dist/main.js: its POST /api/events
// measured in the same rounds (the figures before a change), on the same
// Redis under another key prefix.
const BEFORE = process.argv.find((a) => a.startsWith('--herald-before='))?.slice(16)
// PUBLISH_TARGETS=bare,single: a subset while developing.
const TARGETS = (process.env.PUBLISH_TARGETS?.split(',') ?? ['bare', 'redisRoute', 'single', 'batch', ...(BEFORE !== undefined ? ['before'] : [])]) as Target[]

async function startHerald (redisUrl: string, inspect: boolean, main = join(ROOT, 'dist/main.js'), keyPrefix = 'herald:'): Promise<{ proc: ChildProcess, http: string, inspector: Promise<string> | null }> {
  for (let attempt = 1; ; attempt++) {
    const port = await freePort()
    const proc = track(spawn(process.execPath, [...SERVER_FLAGS, ...(inspect ? ['--inspect=127.0.0.1:0'] : []), main], {
      env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), REDIS_URL: redisUrl, REDIS_KEY_PREFIX: keyPrefix, JWT_SECRET: SECRET, API_KEYS: API_KEY, LOG_LEVEL },
      stdio: ['ignore', 'ignore', inspect ? 'pipe' : 'inherit'],
    }))
    const inspector = inspect ? inspectorUrl(proc) : null
    let exited = false
    proc.once('exit', () => { exited = true })
    const http = `http://127.0.0.1:${port}`
    for (let i = 0; i < 800 && !exited; i++) {
      if (await fetch(`${http}/ws/health`).then((r) => r.status === 200, () => false)) return { proc, http, inspector }
      await sleep(25)
    }
    await stop(proc)
    // A port found free can be taken before the node binds it: another port.
    if (!exited || attempt >= 3) throw new Error('herald did not become ready')
  }
}

const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2 }

/** A login event of about 150 bytes, as services publish them. */
const event = (i: number): object => ({ type: 'authentication.login.success', userId: `user-${i % 500}`, sessionId: `sess-${i % 500}`, data: { ip: '203.0.113.7', agent: 'Mozilla/5.0 (X11; Linux x86_64)', method: 'password' } })

export async function publishBench (o: { smoke: boolean, profile?: boolean, progress?: (s: string) => void }): Promise<PublishResult> {
  const say = o.progress ?? (() => {})
  const rounds = o.smoke ? 1 : Number(process.env.ROUNDS ?? 5)
  if (!(Number.isInteger(rounds) && rounds > 0)) throw new Error('ROUNDS=N: a whole number of rounds, 1 or more')
  const windowMs = o.smoke ? 500 : 3000
  const inFlight = 16
  const batchInFlight = Number(process.env.BATCH_IN_FLIGHT ?? 4)
  const batchSize = Number(process.env.BATCH_SIZE ?? (o.smoke ? 20 : 100))
  const redis = await startRedis()
  const herald = await startHerald(redis.url, o.profile === true)
  const before = BEFORE !== undefined ? await startHerald(redis.url, false, BEFORE, 'before:') : null
  const bare = track(fork(join(ROOT, 'bench/servers/bare-fastify.ts'), [], { execArgv: [...TSX, ...SERVER_FLAGS], env: { PATH: process.env.PATH ?? '', PORT: '0' }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
  const bareUrl = `http://127.0.0.1:${(await next<{ ready: number }>(bare, (m) => m.ready !== undefined, 'bare Fastify start')).ready}`
  // Started only when measured (PUBLISH_TARGETS may leave it out).
  const redisRoute = TARGETS.includes('redisRoute') ? track(fork(join(ROOT, 'bench/servers/fastify-redis.ts'), [], { execArgv: [...TSX, ...SERVER_FLAGS], env: { PATH: process.env.PATH ?? '', PORT: '0', REDIS_URL: redis.url, API_KEY, LOG_LEVEL }, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] })) : null
  const redisRouteUrl = redisRoute === null ? '' : `http://127.0.0.1:${(await next<{ ready: number }>(redisRoute, (m) => m.ready !== undefined, 'Fastify + Redis start')).ready}`
  const load = track(fork(join(ROOT, 'bench/load/http-publish.ts'), [], { execArgv: TSX, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
  const auth = { authorization: `Bearer ${API_KEY}` }
  const single = JSON.stringify(event(1))
  const batch = JSON.stringify({ events: Array.from({ length: batchSize }, (_, i) => event(i)) })
  const jobs: Record<Target, { url: string, path: string, body: string, pid: number, events: number }> = {
    bare: { url: bareUrl, path: '/api/events', body: single, pid: bare.pid!, events: 1 },
    redisRoute: { url: redisRouteUrl, path: '/api/events', body: single, pid: redisRoute?.pid ?? 0, events: 1 },
    single: { url: herald.http, path: '/api/events', body: single, pid: herald.proc.pid!, events: 1 },
    batch: { url: herald.http, path: '/api/events/batch', body: batch, pid: herald.proc.pid!, events: batchSize },
    before: { url: before?.http ?? '', path: '/api/events', body: single, pid: before?.proc.pid ?? 0, events: 1 },
  }
  const measure = async (t: Target, ms: number): Promise<PublishRound> => {
    const j = jobs[t]
    const before = cpuMsOf(j.pid)
    const redisBefore = cpuMsOf(redis.proc.pid!)
    const loadBefore = cpuMsOf(load.pid!)
    load.send({ url: j.url, path: j.path, body: j.body, headers: auth, inFlight: t === 'batch' ? batchInFlight : inFlight, ms, status: t === 'batch' ? 200 : 202 })
    const { done } = await next<{ done: { ok: number, failed: number, firstError?: string, ms: number } }>(load, (m) => m.done !== undefined, `${t} load`, ms + 60_000)
    const cpuMs = cpuMsOf(j.pid) - before
    const redisCpuMs = cpuMsOf(redis.proc.pid!) - redisBefore
    const loadCpuMs = cpuMsOf(load.pid!) - loadBefore
    if (done.failed > 0 && done.ok === 0) throw new Error(`${t}: every request failed: ${done.firstError ?? '?'}`)
    return { target: t, requests: done.ok, events: done.ok * j.events, seconds: done.ms / 1000, cpuMs, redisCpuMs, loadCpuMs, failed: done.failed }
  }
  try {
    // Warm-up: JIT, connections, Redis scripts loaded.
    for (const t of TARGETS) await measure(t, o.smoke ? 300 : 1500)
    let profile: string[] | undefined
    if (o.profile === true) profile = await profiled(herald.inspector!, async () => { await measure((process.env.PROFILE_TARGET ?? 'single') as Target, windowMs) })
    const out: PublishRound[] = []
    const order = TARGETS
    for (let r = 0; r < rounds; r++) {
      for (const t of r % 2 === 0 ? order : [...order].reverse()) {
        const m = await measure(t, windowMs)
        say(`publish round ${r + 1}/${rounds}: ${t} ${Math.round(m.requests / m.seconds)} req/s, ${(1000 * m.cpuMs / m.requests).toFixed(0)} µs CPU/req; per event: Redis ${(1000 * m.redisCpuMs / m.events).toFixed(1)} µs, load generator ${(1000 * m.loadCpuMs / m.events).toFixed(1)} µs; machine busy ${(100 * (m.cpuMs + m.redisCpuMs + m.loadCpuMs) / (m.seconds * 1000)).toFixed(0)}% of a core by these three`)
        out.push(m)
      }
    }
    const of = (t: Target): PublishRound[] => out.filter((m) => m.target === t)
    const cpuPerReq = (t: Target): number => median(of(t).map((m) => 1000 * m.cpuMs / m.requests))
    const reqPerSec = (t: Target): number => median(of(t).map((m) => m.requests / m.seconds))
    const redisPerEvent = (t: Target): number => median(of(t).map((m) => 1000 * m.redisCpuMs / m.events))
    const res: PublishResult = {
      rounds: out,
      roundsEach: rounds,
      batchSize,
      inFlight,
      batchInFlight,
      logLevel: LOG_LEVEL,
      bare: { cpuUsPerRequest: cpuPerReq('bare'), requestsPerSec: reqPerSec('bare') },
      redisRoute: { cpuUsPerRequest: cpuPerReq('redisRoute'), requestsPerSec: reqPerSec('redisRoute'), redisUsPerEvent: redisPerEvent('redisRoute') },
      single: { cpuUsPerRequest: cpuPerReq('single'), requestsPerSec: reqPerSec('single'), redisUsPerEvent: redisPerEvent('single') },
      batch: { cpuUsPerEvent: median(of('batch').map((m) => 1000 * m.cpuMs / m.events)), eventsPerSec: median(of('batch').map((m) => m.events / m.seconds)), requestsPerSec: reqPerSec('batch'), redisUsPerEvent: redisPerEvent('batch') },
      cpuRatio: 0,
      cpuRatioVsRedisRoute: 0,
      batchRatio: 0,
      batchCpuRatio: 0,
      ...(profile !== undefined ? { profile } : {}),
    }
    res.cpuRatio = res.single.cpuUsPerRequest / res.bare.cpuUsPerRequest
    res.cpuRatioVsRedisRoute = res.single.cpuUsPerRequest / res.redisRoute.cpuUsPerRequest
    if (before !== null) res.before = { cpuUsPerRequest: cpuPerReq('before'), requestsPerSec: reqPerSec('before'), redisUsPerEvent: redisPerEvent('before'), cpuRatio: cpuPerReq('before') / res.bare.cpuUsPerRequest }
    res.batchRatio = res.batch.eventsPerSec / res.single.requestsPerSec
    res.batchCpuRatio = res.single.cpuUsPerRequest / res.batch.cpuUsPerEvent
    return res
  } finally {
    await Promise.all([stop(load), stop(bare), ...(redisRoute !== null ? [stop(redisRoute)] : []), stop(herald.proc), ...(before !== null ? [stop(before.proc)] : [])])
    await stop(redis.proc)
  }
}

/** The node's CPU profile over `work`: self time by function (top 25), then by where it is spent. */
async function profiled (inspector: Promise<string>, work: () => Promise<void>): Promise<string[]> {
  const s = await session(await inspector)
  await s.send('Profiler.enable')
  await s.send('Profiler.setSamplingInterval', { interval: 100 })
  await s.send('Profiler.start')
  // HEAP_PROFILE=1: allocations sampled over the same window, written beside the CPU profile.
  const heap = process.env.HEAP_PROFILE === '1'
  if (heap) { await s.send('HeapProfiler.enable'); await s.send('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true }) }
  await work()
  const dir = mkdtempSync(join(tmpdir(), 'herald-publish-prof-'))
  if (heap) writeFileSync(join(dir, 'herald.heapprofile'), JSON.stringify((await s.send<{ profile: unknown }>('HeapProfiler.stopSampling')).profile))
  const { profile } = await s.send<{ profile: CpuProfile }>('Profiler.stop')
  s.close()
  const file = join(dir, 'herald.cpuprofile')
  writeFileSync(file, JSON.stringify(profile))
  // By package, and Herald by source file: where a publish's time goes.
  const { byFn, byWhat } = selfTime(profile, (fn, url, where) => {
    const lib = /node_modules\/(@[^/]+\/[^/]+|[^/]+)\//.exec(url)?.[1]
    return fn === '(idle)' || fn === '(program)' || fn === '(garbage collector)' ? fn
      : url.includes('/dist/') ? `Herald ${where.replace(/^dist\//, '').replace(/\.js$/, '')}`
        : lib ?? 'Node internals (http, streams, buffers, timers)'
  })
  const busy = profile.samples.length - (byWhat.get('(idle)') ?? 0)
  const lines = [`profile: ${file} (${profile.samples.length} samples, ${busy} busy)`, '', 'self time by function (share of busy samples):']
  for (const [k, c] of [...byFn].filter(([k]) => !k.startsWith('(idle)')).sort((a, b) => b[1] - a[1]).slice(0, 25)) lines.push(`${(100 * c / busy).toFixed(1).padStart(5)}%  ${k}`)
  lines.push('', 'self time by where it is spent:')
  for (const [k, c] of [...byWhat].filter(([k]) => k !== '(idle)').sort((a, b) => b[1] - a[1])) lines.push(`${(100 * c / busy).toFixed(1).padStart(5)}%  ${k}`)
  return lines
}

export function publishMarkdown (r: PublishResult): string[] {
  const us = (x: number): string => `${x.toFixed(x < 10 ? 1 : 0)} µs`
  const k = (x: number): string => x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1000 ? `${(x / 1000).toFixed(x >= 1e4 ? 0 : 1)}k` : x.toFixed(0)
  return ['## HTTP publish: node CPU per request, and the batch endpoint', '',
    `Keep-alive connections on 127.0.0.1 (${r.inFlight} requests in flight for single events and the two Fastify routes, ${r.batchInFlight} for batches), each server in its own process, in alternating rounds of equal length; medians of ${r.roundsEach} rounds. CPU is a process's user + system time over the window, per request or per event answered. Herald: a user event of ~150 B (its stream and the admin copy), history on, standalone Redis, LOG_LEVEL ${r.logLevel}; a batch carries ${r.batchSize} such events.`, '',
    '| what | requests/s | events/s | node CPU / request | node CPU / event | Redis CPU / event | ratio |', '|---|---|---|---|---|---|---|',
    `| bare Fastify route (JSON parse, 202) | ${k(r.bare.requestsPerSec)} | ${k(r.bare.requestsPerSec)} | ${us(r.bare.cpuUsPerRequest)} | ${us(r.bare.cpuUsPerRequest)} | – | 1.00× CPU |`,
    `| Fastify route + Redis (Herald's schemas and logger settings, the API key checked as a node checks it, the body appended to a Redis stream, one script call per event-loop turn) | ${k(r.redisRoute.requestsPerSec)} | ${k(r.redisRoute.requestsPerSec)} | ${us(r.redisRoute.cpuUsPerRequest)} | ${us(r.redisRoute.cpuUsPerRequest)} | ${us(r.redisRoute.redisUsPerEvent)} | ${(r.redisRoute.cpuUsPerRequest / r.bare.cpuUsPerRequest).toFixed(2)}× the bare route's CPU |`,
    `| Herald POST /api/events | ${k(r.single.requestsPerSec)} | ${k(r.single.requestsPerSec)} | ${us(r.single.cpuUsPerRequest)} | ${us(r.single.cpuUsPerRequest)} | ${us(r.single.redisUsPerEvent)} | ${r.cpuRatio.toFixed(2)}× the bare route's CPU; ${r.cpuRatioVsRedisRoute.toFixed(2)}× the Fastify + Redis route's |`,
    ...(r.before !== undefined ? [`| before (--herald-before) POST /api/events | ${k(r.before.requestsPerSec)} | ${k(r.before.requestsPerSec)} | ${us(r.before.cpuUsPerRequest)} | ${us(r.before.cpuUsPerRequest)} | ${us(r.before.redisUsPerEvent)} | ${r.before.cpuRatio.toFixed(2)}× the bare route's CPU |`] : []),
    `| Herald POST /api/events/batch (${r.batchSize}) | ${k(r.batch.requestsPerSec)} | ${k(r.batch.eventsPerSec)} | ${us(r.batch.cpuUsPerEvent * r.batchSize)} | ${us(r.batch.cpuUsPerEvent)} | ${us(r.batch.redisUsPerEvent)} | ${r.batchRatio.toFixed(1)}× the events/s of single publishes; ${r.batchCpuRatio.toFixed(1)}× less node CPU per event |`,
    '']
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await publishBench({ smoke: process.argv.includes('--smoke'), profile: process.argv.includes('--profile'), progress: (s) => process.stderr.write(s + '\n') })
  if (r.profile !== undefined) process.stdout.write(r.profile.join('\n') + '\n\n')
  process.stdout.write(publishMarkdown(r).join('\n') + '\n')
  process.exit(0)
}
