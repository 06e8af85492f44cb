// CPU profile of a Herald node under fan-out: `node --import tsx bench/profile.ts`
// One node with its inspector on loopback, N subscribers in a load-generator
// process, events published straight onto Redis at a fixed rate; the profile
// covers only the window under load (not boot or the connection storm). The
// hottest functions by self time are printed, then the same time grouped by
// what it is spent on. Bounded: every process is stopped at the end.
//
//   SUBSCRIBERS=1000 RATE=1500 SECONDS=6 node --import tsx bench/profile.ts
//   SCENARIO=connect SUBSCRIBERS=6000 WARM=2000 node --import tsx bench/profile.ts
//
// SCENARIO=connect profiles the handshakes instead: the window is the
// SUBSCRIBERS connections opening (200 at a time, each until its welcome).
// SCENARIO=storm profiles a reconnect storm: SUBSCRIBERS clients (each
// subscribed) on a second node that is killed; the window is from the kill
// until all of them are subscribed again on the profiled node
// (bench/load/storm.ts, as `npm run bench -- --only=storm`).
// MAIN=<checkout>/dist/main.js profiles another build; NODE_FLAGS='--max-semi-space-size=64'
// passes V8 or Node flags to the profiled node (on its command line, so any V8 flag);
// NODE_CONFIG='WEBSOCKET_MAX_HANDSHAKES=64' adds to its environment (docs/configuration.md).
// HEAP=1|survived|live samples the heap in the window instead (below).
// TOP=N prints the N first functions (20 by CPU, 30 by heap otherwise).
//
// Besides the profile it prints the node's CPU time in the window by thread
// (/proc): the main thread, and the helpers (V8's parallel and concurrent
// GC and optimizing compiler, the inspector), which a CPU profile does not
// see. A profile's
// samples count wall time: a thread taken off the CPU inside a system call
// (a write that wakes Redis on a busy machine) counts as busy in that call,
// so socket writes look dearer there than they are. And the Redis commands
// of the window, by name.
import { fork, spawn } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Redis } from 'ioredis'
import { inspectorUrl, selfTime, session, type CpuProfile } from './inspector.js'
import { cpuOf, freePort, killChildren, sleep, startRedis, track } from './procs.js'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const SUBSCRIBERS = Number(process.env.SUBSCRIBERS ?? 1000)
const RATE = Number(process.env.RATE ?? 1500) // events/s, each to every subscriber
const SECONDS = Number(process.env.SECONDS ?? 6)
const WARM = Number(process.env.WARM ?? 0)
const TOP = process.env.TOP !== undefined ? Number(process.env.TOP) : null
if (TOP !== null && !(Number.isInteger(TOP) && TOP > 0)) throw new Error('TOP=N: a whole number of functions, 1 or more')
const SECRET = 'bench-secret-that-is-at-least-32-characters'
const CONNECT = process.env.SCENARIO === 'connect'
const STORM = process.env.SCENARIO === 'storm'
/**
 * With SCENARIO=connect or storm, HEAP=1 samples where the window allocates,
 * not where the CPU goes (garbage included: what the collector then works
 * through); HEAP=survived only what lived through a young-generation
 * collection (what the scavenger copies, most of a storm's GC: a handshake
 * waiting on Redis holds its objects that long); HEAP=live only what is held
 * once the connections are open (after a full collection): what each keeps.
 */
const HEAP = ({ 1: 'allocated', survived: 'survived', live: 'held' } as Record<string, 'allocated' | 'survived' | 'held'>)[process.env.HEAP ?? ''] ?? null
if (process.env.HEAP !== undefined && (HEAP === null || !(CONNECT || STORM))) throw new Error('HEAP=1, survived or live, with SCENARIO=connect or storm')
interface HeapNode { callFrame: { functionName: string, url: string, lineNumber: number }, selfSize: number, children: HeapNode[] }
const MAIN = process.env.MAIN ?? join(ROOT, 'dist/main.js')
// A Redis of its own (in its own directory, ready before the node starts); every child is killed when this exits.
const redis = await startRedis()
const redisUrl = redis.url
/** Redis's command counts start at the profile's window (the figures printed are the window's). */
const resetRedisStats = async (): Promise<void> => {
  const c = new Redis(redisUrl)
  try { await c.config('RESETSTAT') } finally { c.disconnect() }
}
const port = await freePort()
const nodeConfig = Object.fromEntries((process.env.NODE_CONFIG ?? '').split(' ').filter((kv) => kv !== '').map((kv) => {
  const i = kv.indexOf('=')
  if (i < 1) throw new Error(`NODE_CONFIG: ${kv} is not NAME=value`)
  return [kv.slice(0, i), kv.slice(i + 1)]
}))
const nodeEnv = (p: number): NodeJS.ProcessEnv => ({ PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(p), REDIS_URL: redisUrl, JWT_SECRET: SECRET, API_KEYS: 'bench-api-key-0123456789', LOG_LEVEL: 'warn', MAX_CONNECTIONS_PER_IP: '1000000', MAX_CONNECTIONS_PER_USER: '100000', MAX_MESSAGES_PER_MINUTE: '1000000', WEBSOCKET_MAX_CONNECTIONS: '1000000', ...nodeConfig })
const node = track(spawn(process.execPath, ['--inspect=127.0.0.1:0', ...(process.env.NODE_FLAGS?.split(' ').filter((f) => f !== '') ?? []), MAIN], { env: nodeEnv(port), stdio: ['ignore', 'inherit', 'pipe'] }))
const inspector = inspectorUrl(node)
const ready200 = async (p: number): Promise<void> => { for (let i = 0; i < 400; i++) { if (await fetch(`http://127.0.0.1:${p}/ws/health`).then((r) => r.status === 200, () => false)) break; await sleep(25) } }
await ready200(port)

// WARM=N: N connections opened and closed first, so the profile shows a node
// that has run (its code compiled), as `npm run bench` measures connects.
if (WARM > 0) {
  const warm = track(fork(join(ROOT, 'bench/load/subscribers.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  await new Promise<void>((resolve) => {
    warm.on('message', (m: { ready?: number }) => { if (m.ready !== undefined) resolve() })
    warm.send({ job: { kind: 'herald', url: `ws://127.0.0.1:${port}/ws/events`, count: WARM, offset: 1_000_000, concurrency: 200, secret: SECRET, sampleEvery: 1000, pattern: 'system.*', untilWelcome: true } })
  })
  warm.kill('SIGKILL')
  await sleep(2000) // their closes handled
}

const load = track(fork(join(ROOT, STORM ? 'bench/load/storm.ts' : 'bench/load/subscribers.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
const ready = new Promise<{ ready: number, connectMs: number }>((resolve) => load.on('message', (m: { ready?: number, connectMs: number }) => { if (m.ready !== undefined) resolve(m as { ready: number, connectMs: number }) }))
const s = await session(await inspector)
await s.send('Profiler.enable')
await s.send('Profiler.setSamplingInterval', { interval: 200 })
// The node's CPU time over the window, beside the profile's busy time.
// By thread: the main thread; the others named `node` are V8's helpers (GC,
// the optimizing compiler) and the inspector's (which the profiling itself
// keeps busy); libuv's pool is `libuv-worker`.
const threadCpu = (): Map<string, number> => {
  const by = new Map<string, number>()
  for (const tid of readdirSync(`/proc/${node.pid!}/task`)) {
    try {
      const comm = readFileSync(`/proc/${node.pid!}/task/${tid}/comm`, 'utf8').trim()
      const name = Number(tid) === node.pid ? 'main thread' : comm === 'node' ? 'helper threads (V8 GC and compiler, inspector)' : comm
      by.set(name, (by.get(name) ?? 0) + cpuOf(node.pid!, Number(tid)))
    } catch {} // a thread that ended
  }
  return by
}
let cpuFrom = new Map<string, number>()
let cpuInWindow = new Map<string, number>()
async function startProfile (): Promise<void> {
  await resetRedisStats()
  cpuFrom = threadCpu()
  await s.send('Profiler.start')
}
async function stopProfile (): Promise<CpuProfile> {
  const { profile } = await s.send<{ profile: CpuProfile }>('Profiler.stop')
  cpuInWindow = new Map([...threadCpu()].map(([k, c]) => [k, c - (cpuFrom.get(k) ?? 0)]))
  return profile
}
// The window of SCENARIO=connect or storm: the CPU profile, or with HEAP the heap's sampling.
async function startWindow (): Promise<void> {
  if (HEAP === null) return await startProfile()
  await s.send('HeapProfiler.enable')
  await s.send('HeapProfiler.startSampling', { samplingInterval: 1024, includeObjectsCollectedByMajorGC: HEAP !== 'held', includeObjectsCollectedByMinorGC: HEAP === 'allocated' })
}
/** The window's CPU profile; with HEAP, the heap's report per connection instead, and the end. */
async function stopWindow (connections: number, line: string): Promise<CpuProfile> {
  if (HEAP === null) {
    const profile = await stopProfile()
    process.stdout.write(line)
    return profile
  }
  if (HEAP === 'held') await s.send('HeapProfiler.collectGarbage')
  const heap = (await s.send<{ profile: { head: HeapNode } }>('HeapProfiler.stopSampling')).profile
  const bySite = new Map<string, number>()
  let total = 0
  const walk = (n: HeapNode): void => {
    const where = `${n.callFrame.functionName || '(anonymous)'} ${n.callFrame.url.replace(/.*node_modules\//, '').replace(/.*\/dist\//, 'dist/')}:${n.callFrame.lineNumber + 1}`
    total += n.selfSize
    if (n.selfSize > 0) bySite.set(where, (bySite.get(where) ?? 0) + n.selfSize)
    for (const c of n.children) walk(c)
  }
  walk(heap.head)
  const what = { allocated: 'allocated', survived: 'survived a young-generation collection', held: 'held once open' }[HEAP]
  process.stdout.write(`${line}${(total / connections / 1024).toFixed(1)} KiB ${what} per connection (sampled)\n\nby function:\n`)
  for (const [k, b] of [...bySite].sort((a, b) => b[1] - a[1]).slice(0, TOP ?? 30)) process.stdout.write(`${(b / connections).toFixed(0).padStart(7)} B/conn  ${k}\n`)
  killChildren()
  process.exit(0)
}
const job = { kind: 'herald', url: `ws://127.0.0.1:${port}/ws/events`, count: SUBSCRIBERS, offset: 0, concurrency: 200, secret: SECRET, sampleEvery: 1000, pattern: 'system.*', untilWelcome: CONNECT }
let profile: CpuProfile
if (STORM) {
  const doomedPort = await freePort()
  const doomed = track(spawn(process.execPath, [MAIN], { env: nodeEnv(doomedPort), stdio: ['ignore', 'ignore', 'inherit'] }))
  await ready200(doomedPort)
  const back = new Promise<{ resubscribed: number, retries: number, lastAt: number, why: unknown }>((resolve) => load.on('message', (m: { resubscribed?: number }) => { if (m.resubscribed !== undefined) resolve(m as never) }))
  load.send({ job: { url: `ws://127.0.0.1:${doomedPort}/ws/events`, then: [`ws://127.0.0.1:${port}/ws/events`], count: SUBSCRIBERS, offset: 0, concurrency: 200, secret: SECRET } })
  await ready
  await startWindow()
  const killedAt = performance.timeOrigin + performance.now()
  doomed.kill('SIGKILL')
  const r = await back
  profile = await stopWindow(r.resubscribed, `${r.resubscribed} clients subscribed again ${((r.lastAt - killedAt) / 1000).toFixed(2)} s after the kill; ${r.retries} retries ${JSON.stringify(r.why)}\n`)
} else if (CONNECT) {
  await startWindow()
  load.send({ job })
  const r = await ready
  profile = await stopWindow(r.ready, `${r.ready} connections in ${(r.connectMs / 1000).toFixed(2)} s: ${Math.round(r.ready / (r.connectMs / 1000))} connects/s while profiled\n`)
} else {
  load.send({ job })
  await ready
  interface Report { total: number, at: number }
  const window: { first?: Report, last?: Report } = {}
  let profiling = false
  load.on('message', (m: Report & { tick?: boolean }) => {
    if (m.tick !== true || !profiling) return
    if (window.first === undefined) window.first = m
    else window.last = m
  })
  const pub = track(fork(join(ROOT, 'bench/load/publisher.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  // As the node keeps history or not (NODE_CONFIG='HISTORY_SIZE=0'): appends, or plain publishes.
  pub.send({ kind: 'herald', redisUrl, rate: RATE, history: nodeConfig.HISTORY_SIZE !== '0' })
  await sleep(1500) // past the first events' compilation
  await startProfile()
  profiling = true
  await sleep(SECONDS * 1000)
  profiling = false
  profile = await stopProfile()
  pub.send({ kind: 'herald', redisUrl, rate: 0 })
  const { first, last } = window
  const rate = first !== undefined && last !== undefined ? (last.total - first.total) / ((last.at - first.at) / 1000) : NaN
  process.stdout.write(`${SUBSCRIBERS} subscribers, ${RATE} events/s offered (${Math.round(RATE * SUBSCRIBERS)} deliveries/s): ${Math.round(rate)} deliveries/s received while profiled\n`)
}
s.close()

// What Redis was asked in the window: the calls per command.
const statsClient = new Redis(redisUrl)
const stats = await statsClient.info('commandstats').finally(() => statsClient.disconnect())
process.stdout.write('Redis calls in the window, by command:' + stats.split('\n').filter((l) => l.startsWith('cmdstat_')).map((l) => ` ${l.slice(8, l.indexOf(':'))} ${/calls=(\d+)/.exec(l)?.[1] ?? '?'}`).join(',') + '\n')

const file = join(mkdtempSync(join(tmpdir(), 'herald-prof-')), 'herald.cpuprofile')
writeFileSync(file, JSON.stringify(profile))
const { byFn, byWhat } = selfTime(profile, (fn, url) => fn === '(idle)' ? 'idle'
  : fn === '(garbage collector)' ? 'garbage collection'
    : ['writeBuffer', 'writev', 'writeUtf8String', 'writeLatin1String'].includes(fn) ? 'socket writes (the syscall)'
      : url.includes('/dist/') ? 'Herald (dist/)'
        : url.includes('node_modules/ioredis') || url.includes('node_modules/redis-parser') ? 'ioredis (receiving from Redis)'
          : url.includes('node_modules/ws/') ? 'ws'
            : url.startsWith('node:') || url === '' ? 'Node internals (streams, buffers, timers)'
              : 'other libraries')
const total = profile.samples.length
const idle = new Set(profile.nodes.filter((n) => n.callFrame.functionName === '(idle)').map((n) => n.id))
const busy = profile.samples.reduce((n, id, i) => idle.has(id) ? n : n + (profile.timeDeltas[i] ?? 0), 0) / 1e6
process.stdout.write(`profile: ${file} (${total} samples)\n`)
const threads = [...cpuInWindow].filter(([, c]) => c >= 0.01).sort((a, b) => b[1] - a[1])
process.stdout.write(`node CPU in the window: ${threads.reduce((n, [, c]) => n + c, 0).toFixed(2)} s (${threads.map(([k, c]) => `${k} ${c.toFixed(2)}`).join(', ')}); the profile's busy samples span ${busy.toFixed(2)} s\n\nself time by function:\n`)
for (const [k, c] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, TOP ?? 20)) process.stdout.write(`${(100 * c / total).toFixed(1).padStart(5)}%  ${k}\n`)
process.stdout.write('\nself time by what it is spent on:\n')
for (const [k, c] of [...byWhat].sort((a, b) => b[1] - a[1])) process.stdout.write(`${(100 * c / total).toFixed(1).padStart(5)}%  ${k}\n`)
killChildren()
process.exit(0)
