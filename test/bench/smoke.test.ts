import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { reaped } from '../helpers/children.js'

// The benchmark harness must start, measure and print: a tiny run of every
// scenario. No speed is asserted here; figures come from `npm run bench`.
const ROOT = fileURLToPath(new URL('../..', import.meta.url))
// Alone the smoke run takes about three minutes; beside the rest of the suite
// on two cores it has taken over seven. The bench gets a deadline of its own,
// inside tap's, so a run that is late reports the scenario it was in (its
// progress lines) instead of tap's bare "timeout!".
const DEADLINE_MS = 780_000
t.setTimeout(DEADLINE_MS + 60_000)

/** The bench's progress lines (rewritten in place with \r on a terminal), the last `n` of them. */
function lastProgress (stderr: string, n: number): string {
  return stderr.replace(/\x1b\[K/g, '').split(/[\r\n]+/).filter((l) => l.trim() !== '').slice(-n).join('\n')
}

t.test('npm run bench -- --smoke measures every server and writes its table', { timeout: DEADLINE_MS + 30_000 }, async (t) => {
  // Its own process group: the bench starts servers, Redis and load generators, all killed with it.
  const proc = reaped(spawn(process.execPath, ['--import', 'tsx', 'bench/run.ts', '--smoke'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'], detached: true }), { group: true })
  let out = ''
  proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
  let err = ''
  proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
  // The whole group, whether or not its leader is still there: what it started may outlive it.
  t.teardown(() => { try { process.kill(-proc.pid!, 'SIGKILL') } catch {} })
  let timer: NodeJS.Timeout | undefined
  const code = await Promise.race([
    new Promise<number | null>((resolve) => proc.once('exit', resolve)),
    new Promise<'late'>((resolve) => { timer = setTimeout(() => resolve('late'), DEADLINE_MS) })
  ])
  clearTimeout(timer)
  if (code === 'late') {
    t.fail(`the bench did not finish in ${DEADLINE_MS / 1000} s; its last progress lines:\n${lastProgress(err, 12)}`)
    return
  }
  t.equal(code, 0, `bench exits 0 (its last lines:\n${lastProgress(err, 12)})`)
  for (const heading of ['Connect rate', 'Reconnect storm', 'Deliveries/s sustained within a p99 latency bound', 'Idle memory', 'Fan-out saturation', 'Past saturation', 'Latency at a fixed', 'Targeted events', 'Connections across a local cluster', 'Message limiter cost', 'History: publishes through one Redis', '## Resume', 'Client publish and groups', 'HTTP publish: node CPU per request']) {
    t.match(out, heading, `prints the ${heading} table`)
  }
  for (const server of ['Herald', 'ws + ioredis, corked', 'socket.io + redis-adapter']) t.match(out, `| ${server} |`, `measures ${server}`)
  t.match(out, /History on vs off, \d+ subscribers: [\d.]+×/, 'fan-out measured with history on and off')
  const json = JSON.parse(readFileSync(`${ROOT}/bench/results/smoke.json`, 'utf8')) as { idle: Array<{ connections: number, rssPerConn: number, heapPerConn: number }>, fanout: Array<{ saturation: number }>, overload: Array<{ kind: string, peakRssMB: number }>, big: { reached: number, connections: number } }
  t.ok(json.idle.every((r) => r.connections > 0), 'every idle row connected clients')
  t.ok(json.fanout.every((r) => r.saturation > 0), 'every fan-out row delivered events')
  t.same(json.overload.map((r) => r.kind).sort(), ['herald', 'herald-nohistory', 'sio', 'ws', 'ws-cork'], 'every server of the fan-out (Herald with history off too) was driven past saturation')
  t.ok(json.overload.every((r) => r.peakRssMB > 0), 'and its memory read')
  t.ok(json.idle.every((r) => Number.isFinite(r.heapPerConn)), 'heap per connection read through the inspector')
  t.equal(json.big.reached, json.big.connections, 'the cluster broadcast reached every connection')
  // Each storm round waits for every client back (storm.ts, raw-ws.ts): a round recorded is a storm completed.
  const storm = (json as unknown as { storm: Array<{ warm: boolean, seconds: number[] }> }).storm
  t.same(storm.map((r) => [r.warm, r.seconds.length]), [[true, 1], [false, 1]], 'the reconnect storm ran to the last client, on warm nodes and on fresh ones')
  const streams = (json as unknown as { streams: { summary: { onPerSec: number, offPerSec: number, onCpuUs: number }, oneStream: { bytesPerEvent: number }, users: { bytesPerUser: number } } }).streams
  t.ok(streams.summary.onPerSec > 0 && streams.summary.offPerSec > 0 && streams.summary.onCpuUs > 0, 'publishes with history on and off were measured, with Redis CPU')
  t.ok(streams.oneStream.bytesPerEvent > 0 && streams.users.bytesPerUser > 0, 'and the memory history takes')
  const resume = (json as unknown as { resume: { storm: { clients: number, complete: number }, losses: Array<{ mode: string, clientsLosing: number }> } }).resume
  t.equal(resume.storm.complete, resume.storm.clients, 'every client of the resume storm recovered all it missed')
  t.same(resume.losses.filter((x) => x.mode === 'after').map((x) => x.clientsLosing), [0, 0], 'with resume, no client lost an event to a kill -9 or a rolling restart')
  const pub = (json as unknown as { clientPublish: { accept: { wsPerSec: number, httpPerSec: number, rounds: Array<{ errors: number }> }, fanout: { groupPerSec: number, broadcastPerSec: number } } }).clientPublish
  t.ok(pub.accept.wsPerSec > 0 && pub.accept.httpPerSec > 0, 'client publishes and API publishes were measured')
  t.ok(pub.accept.rounds.every((r) => r.errors === 0), 'none refused (the rate limit raised out of the way)')
  t.ok(pub.fanout.groupPerSec > 0 && pub.fanout.broadcastPerSec > 0, 'group and broadcast fan-out were measured')
  const publish = (json as unknown as { publish: { bare: { cpuUsPerRequest: number }, redisRoute: { cpuUsPerRequest: number, requestsPerSec: number }, single: { cpuUsPerRequest: number }, batch: { eventsPerSec: number, cpuUsPerEvent: number } } }).publish
  t.ok(publish.bare.cpuUsPerRequest > 0 && publish.single.cpuUsPerRequest > 0, 'HTTP publish CPU measured beside the bare route')
  t.ok(publish.redisRoute.cpuUsPerRequest > 0 && publish.redisRoute.requestsPerSec > 0, 'and beside the Fastify route that appends to Redis (each answer waits for its entry)')
  t.ok(publish.batch.eventsPerSec > 0 && publish.batch.cpuUsPerEvent > 0, 'and the batch endpoint')
})
