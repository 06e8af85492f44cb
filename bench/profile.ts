// CPU profile of a Herald node under fan-out: `node --import tsx bench/profile.ts`
// One node with --cpu-prof, N subscribers in a load-generator process, events
// published straight onto Redis at a fixed rate for a few seconds; then the
// node drains and exits, writing its profile, and the hottest functions (self
// time) are printed. Bounded: every process is stopped at the end.
import { fork, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const SUBSCRIBERS = Number(process.env.SUBSCRIBERS ?? 1000)
const RATE = Number(process.env.RATE ?? 300) // events/s, each to every subscriber
const SECONDS = Number(process.env.SECONDS ?? 6)
const SECRET = 'bench-secret-that-is-at-least-32-characters'
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))
const procs: ChildProcess[] = []
process.on('exit', () => { for (const p of procs) try { p.kill('SIGKILL') } catch {} })

async function freePort (): Promise<number> {
  const net = await import('node:net')
  return await new Promise((resolve) => { const s = net.createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)) }) })
}

const redisPort = await freePort()
procs.push(spawn('redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' }))
await sleep(300)
const redisUrl = `redis://127.0.0.1:${redisPort}`
const dir = mkdtempSync(join(tmpdir(), 'herald-prof-'))
const port = await freePort()
const node = spawn(process.execPath, ['--cpu-prof', '--cpu-prof-dir', dir, join(ROOT, 'dist/main.js')], {
  env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', HOST: '127.0.0.1', PORT: String(port), REDIS_URL: redisUrl, JWT_SECRET: SECRET, LOG_LEVEL: 'warn', DRAIN_TIMEOUT: '0', MAX_CONNECTIONS_PER_IP: '1000000', MAX_CONNECTIONS_PER_USER: '100000', MAX_MESSAGES_PER_MINUTE: '1000000', WEBSOCKET_MAX_CONNECTIONS: '1000000', MAX_SEND_BUFFER_BYTES: String(8 * 1024 * 1024) },
  stdio: 'inherit',
})
procs.push(node)
for (let i = 0; i < 400; i++) { if (await fetch(`http://127.0.0.1:${port}/ws/health`).then((r) => r.status === 200, () => false)) break; await sleep(25) }

const load = fork(join(ROOT, 'bench/load/subscribers.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
procs.push(load)
const ready = new Promise((resolve) => load.on('message', (m: { ready?: number }) => { if (m.ready !== undefined) resolve(m) }))
load.send({ job: { kind: 'herald', url: `ws://127.0.0.1:${port}/ws/events`, count: SUBSCRIBERS, offset: 0, concurrency: 200, secret: SECRET, sampleEvery: 1000, pattern: 'system.*' } })
await ready
let delivered = 0
load.on('message', (m: { tick?: boolean, delivered?: number }) => { if (m.tick === true) delivered += m.delivered ?? 0 })

const pub = fork(join(ROOT, 'bench/load/publisher.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
procs.push(pub)
pub.send({ kind: 'herald', redisUrl, rate: RATE })
await sleep(SECONDS * 1000)
pub.send({ kind: 'herald', redisUrl, rate: 0 })
process.stdout.write(`${SUBSCRIBERS} subscribers, ${RATE} events/s for ${SECONDS} s: ${Math.round(delivered / SECONDS)} deliveries/s received\n`)

const exited = new Promise((resolve) => node.once('exit', resolve))
node.kill('SIGTERM')
await exited
const file = readdirSync(dir).find((f) => f.endsWith('.cpuprofile'))!
const profile = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { nodes: Array<{ id: number, callFrame: { functionName: string, url: string, lineNumber: number } }>, samples: number[] }
const counts = new Map<number, number>()
for (const id of profile.samples) counts.set(id, (counts.get(id) ?? 0) + 1)
const byFn = new Map<string, number>()
for (const n of profile.nodes) {
  const c = counts.get(n.id) ?? 0
  if (c === 0) continue
  const where = n.callFrame.url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/').replace(/^node:/, 'node:')
  const key = `${n.callFrame.functionName || '(anonymous)'} ${where}${where ? ':' + (n.callFrame.lineNumber + 1) : ''}`
  byFn.set(key, (byFn.get(key) ?? 0) + c)
}
const total = profile.samples.length
process.stdout.write(`profile: ${join(dir, file)} (${total} samples)\n`)
for (const [k, c] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, 25)) process.stdout.write(`${(100 * c / total).toFixed(1).padStart(5)}%  ${k}\n`)
for (const p of procs) try { p.kill('SIGKILL') } catch {}
process.exit(0)
