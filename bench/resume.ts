// Resume (a scenario of `npm run bench`; alone: `node --import tsx
// bench/resume.ts [--smoke] [--storm-clients=N] [--loss-clients=N]`). Node processes on a fresh Redis behind a
// balancer, SDK clients in child processes (bench/load/sdk-fleet.ts).
//
//   - storm: clients of distinct users all on one node, through haproxy with
//     the shipped deploy/haproxy.cfg (test/helpers/haproxy.ts; one haproxy
//     process per 5,000 clients); the node is killed (-9); while they cannot
//     reconnect, every user gets 50 events; then two nodes, held out of
//     rotation until then, join through haproxy's runtime API and every
//     client reconnects at once (the client fleets at nice 10: they share
//     the nodes' cores). Time until every client has recovered (all
//     50 replayed) and received a live event (one a second) again, the peak CPU of the nodes
//     and of Redis meanwhile, and the CPU of each part of the rig.
//   - losses: clients over three nodes while system.* events are published
//     at 50 a second, through a kill -9 of one node and then a rolling
//     restart of all three (DRAIN_TIMEOUT 3 s), run twice side by side: before (history off, so
//     no positions and no resume, and the SDK's reconnect settings of the
//     release before resume: 5 s drain jitter, one quick retry) and after
//     (history and resume on, default settings). Events lost per client, and
//     from close to caught up per client.
import { mkdtempSync, rmSync } from 'node:fs'
import { setPriority, tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { HeraldPublisher } from '../src/client/publisher.js'
import { startBalancer, type Balancer } from '../test/helpers/balancer.js'
import { startHaproxy, type Haproxy } from '../test/helpers/haproxy.js'
import { startNode, type NodeProc } from '../test/helpers/node.js'
import { startRedis, type RedisServer } from '../test/helpers/redis.js'
import { TEST_SECRET } from '../test/helpers/tokens.js'
import { percentile, startFleets, sumSummaries } from './load/sdk-fleets.js'
import type { ClientReport } from './load/sdk-fleet.js'
import { fileURLToPath } from 'node:url'
import { cpuOf, runAlone, track } from './procs.js'

export interface StormResult {
  clients: number
  missedEach: number
  /** s from the balancer taking the new nodes to every client recovered, and to every client live again */
  allRecoveredS: number
  allLiveS: number
  recoveredP50S: number
  recoveredP99S: number
  /** clients whose resume brought all it missed */
  complete: number
  unrecovered: number
  /** peak CPU over 500 ms windows, % of one core */
  peakNodeCpu: number
  peakRedisCpu: number
  /** per part of the rig, from the nodes joining to every client live: its processes, their CPU seconds, the mean % of a core per process, and the peak of any one over 500 ms windows */
  rigCpu: RigCpu[]
}

export interface RigCpu { part: string, processes: number, cpuS: number, meanPct: number, peakPct: number }

export interface LossRow {
  mode: 'before' | 'after'
  event: 'kill -9 of one node' | 'rolling restart'
  clients: number
  published: number
  /** clients that missed at least one event, and the mean and max missed */
  clientsLosing: number
  meanLost: number
  maxLost: number
  duplicates: number
  /** ms from close to caught up (after) or to connected again (before), per reconnect */
  catchUpP50: number
  catchUpP99: number
}

export interface ResumeResult { storm: StormResult, losses: LossRow[] }

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

async function until<T> (what: string, f: () => Promise<T>, ok: (x: T) => boolean, timeoutMs: number, everyMs = 500): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const x = await f()
    if (ok(x)) return x
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    await sleep(everyMs)
  }
}

async function redisCpu (r: Redis): Promise<number> {
  const info = await r.info('cpu')
  const n = (k: string): number => Number(new RegExp(`^${k}:([0-9.]+)`, 'm').exec(info)?.[1] ?? 0)
  return n('used_cpu_sys') + n('used_cpu_user')
}

/**
 * Samples every 500 ms until stopped: for each part of the rig (a group of
 * processes, or Redis through INFO), the CPU seconds of all its processes,
 * the mean % of a core per process, and the peak % of any one process.
 */
function sampleCpu (parts: Record<string, number[]>, redis: Redis): { stop: () => Promise<RigCpu[]> } {
  let running = true
  const t0 = Date.now()
  const first = new Map(Object.values(parts).flat().map((p) => [p, cpuOf(p)]))
  const peaks = new Map<string, number>([...Object.keys(parts), 'Redis'].map((k) => [k, 0]))
  let prev = new Map(first)
  let last = new Map(first)
  let firstR = 0
  let lastR = 0
  const loop = (async () => {
    firstR = await redisCpu(redis)
    let prevR = firstR
    lastR = firstR
    let t = Date.now()
    while (running) {
      await sleep(500)
      const now = Date.now()
      const dt = (now - t) / 1000
      const cur = new Map<number, number>()
      for (const p of first.keys()) {
        try { cur.set(p, cpuOf(p)) } catch {}
      }
      for (const [part, pids] of Object.entries(parts)) {
        for (const p of pids) if (cur.has(p)) peaks.set(part, Math.max(peaks.get(part)!, 100 * (cur.get(p)! - (prev.get(p) ?? cur.get(p)!)) / dt))
      }
      const r = await redisCpu(redis)
      peaks.set('Redis', Math.max(peaks.get('Redis')!, 100 * (r - prevR) / dt))
      prev = cur
      for (const [p, c] of cur) last.set(p, c)
      prevR = r
      lastR = r
      t = now
    }
  })()
  return {
    async stop () {
      running = false
      await loop
      const wall = (Date.now() - t0) / 1000
      const row = (part: string, processes: number, cpuS: number): RigCpu => ({ part, processes, cpuS, meanPct: 100 * cpuS / wall / processes, peakPct: peaks.get(part)! })
      return [
        ...Object.entries(parts).map(([part, pids]) => row(part, pids.length, pids.reduce((n, p) => n + last.get(p)! - first.get(p)!, 0))),
        row('Redis', 1, lastR - firstR),
      ]
    },
  }
}

interface Rig { redis: RedisServer, rc: Redis, nodes: NodeProc[], lb: Balancer | null, stop: () => Promise<void> }

/** A fresh Redis, `count` nodes, and the test balancer over them (unless `balancer` is false). */
async function rig (env: Record<string, string>, count: number, balancer = true): Promise<Rig> {
  const redis = await startRedis()
  const nodes: NodeProc[] = []
  let lb: Balancer | null = null
  const stop = async (): Promise<void> => {
    await lb?.close()
    await Promise.all(nodes.map(async (n) => await n.stop()))
    rc.disconnect()
    await redis.stop()
  }
  const rc = new Redis(redis.url)
  try {
    for (let i = 0; i < count; i++) nodes.push(await startNode({ REDIS_URL: redis.url, ...env }))
    if (balancer) lb = await startBalancer(nodes.map((n) => n.port), { healthIntervalMs: 200 })
  } catch (err) {
    await stop()
    throw err
  }
  return { redis, rc, nodes, lb, stop }
}

/** Clients per haproxy process: each holds two descriptors per client, and an open-file cap (ulimit -n) of 20,000 gives it 9,984 connections at most. */
const CLIENTS_PER_HAPROXY = 5000

async function storm (clients: number, processes: number, progress: (s: string) => void): Promise<StormResult> {
  const MISSED = 50
  const r = await rig({ NODE_TTL: '3000', MAX_CONNECTIONS_PER_USER: '10' }, 1, false)
  const dir = mkdtempSync(join(tmpdir(), 'herald-storm-'))
  const lbs: Haproxy[] = []
  try {
    const [a] = r.nodes as [NodeProc]
    // The two nodes that take the clients over, idle until then: haproxy holds them out of rotation (`disabled`).
    const spare = [await startNode({ REDIS_URL: r.redis.url, NODE_TTL: '3000' }), await startNode({ REDIS_URL: r.redis.url, NODE_TTL: '3000' })]
    r.nodes.push(...spare)
    const joining = ['herald-2', 'herald-3']
    const servers = { 'herald-1': a.port, 'herald-2': spare[0]!.port, 'herald-3': spare[1]!.port }
    const count = Math.ceil(clients / CLIENTS_PER_HAPROXY)
    const per = Math.ceil(clients / count)
    // The listen backlog: room for every client of the process at once (the kernel caps it at net.core.somaxconn).
    for (let i = 0; i < count; i++) lbs.push(await startHaproxy({ dir, name: `haproxy-${i}`, servers, disabled: joining, backlog: per }))
    for (const l of lbs) track(l.proc)
    const users = Array.from({ length: clients }, (_x, i) => `storm-${i}`)
    progress(`resume storm: connecting ${clients} clients through ${count} haproxy process${count > 1 ? 'es' : ''}`)
    const fleetsOf = async (i: number): Promise<Awaited<ReturnType<typeof startFleets>>> =>
      await startFleets({ url: `${lbs[i]!.ws}/ws/events`, users: users.slice(i * per, (i + 1) * per), eventTypes: ['*'], secret: TEST_SECRET, options: { baseDelayMs: 500, maxDelayMs: 30_000 } }, Math.max(1, Math.round(processes / count)), 600_000)
    const parts: Array<Awaited<ReturnType<typeof startFleets>>> = []
    const fleets = {
      report: async () => (await Promise.all(parts.map(async (f) => await f.report()))).flat(),
      summary: async (since: number) => sumSummaries(await Promise.all(parts.map(async (f) => await f.summary(since)))),
      stop: async () => { await Promise.all(parts.map(async (f) => await f.stop())) },
    }
    try {
      for (let i = 0; i < count; i++) parts.push(await fleetsOf(i))
      // The clients share the machine's cores with the nodes and haproxy, as
      // they would not in a deployment: at a lower priority they take mostly what
      // the server side leaves, instead of a fleet's fair share each (ten or
      // so processes on two cores left each node a fifth of a core, and its
      // health checks then timed out behind the handshakes).
      for (const pid of parts.flatMap((f) => f.pids())) setPriority(pid, 10)
      await a.stop('SIGKILL')
      progress(`resume storm: ${clients} × ${MISSED} events while the clients cannot reconnect`)
      const pub = new Redis(r.redis.url)
      const herald = new HeraldPublisher({ redis: pub })
      let next = 0
      const total = clients * MISSED
      await Promise.all(Array.from({ length: 128 }, async () => {
        while (next < total) {
          const k = next++
          // A machine shared with other work can hold the library past its own timeouts (reading the webhook endpoints: 500 ms): tried again, a few times.
          for (let attempt = 1; ; attempt++) {
            try {
              await herald.publish('orders.created', { userId: users[k % clients]!, data: { k } })
              break
            } catch (err) {
              if (attempt >= 5) throw err
              await sleep(100 * attempt)
            }
          }
        }
      }))
      progress('resume storm: two nodes join; every client reconnects')
      const cpu = sampleCpu({ haproxy: lbs.map((l) => l.proc.pid!), 'client fleets': parts.flatMap((f) => f.pids()), nodes: spare.map((n) => n.proc.pid!) }, r.rc)
      const t0 = Date.now()
      const answers = await Promise.all(lbs.flatMap((l) => joining.map(async (s) => await l.command(`set server herald/${s} state ready`))))
      if (answers.some((x) => x.trim() !== '')) throw new Error(`haproxy refused to enable the nodes: ${answers.join(' ')}`)
      // Live traffic from now on: every client must see some after its recovery.
      let live = true
      // One a second: at five a second the 10,000 clients' deliveries alone kept the two cores busy and the clients answered heartbeats late (4009).
      const ticker = (async () => { while (live) { await herald.publish('system.tick', { data: {} }).catch(() => {}); await sleep(1000) } })()
      // Every 5 s: clients by state, and why attempts failed so far (what a storm that does not finish is stuck on).
      // Counts only until every client is live (the fleets' full reports, 10,000 of them, cost the machine the storm runs on), then the reports.
      let lastLine = 0
      await until('every client recovered and live again', async () => await fleets.summary(t0), (s) => {
        if (Date.now() - lastLine >= 5000) {
          lastLine = Date.now()
          const top = Object.entries(s.disconnects).sort((a, b) => b[1] - a[1]).slice(0, 4).map(([w, n]) => `${n} × ${w}`).join('; ')
          progress(`resume storm, ${((Date.now() - t0) / 1000).toFixed(0)} s: ${s.connected} connected, ${s.recovered} recovered, ${s.live} live; ${top}`)
        }
        return s.live === clients
      }, 600_000, 1000)
      const rs = await fleets.report()
      live = false
      await ticker
      const rigCpu = await cpu.stop()
      pub.disconnect()
      const rec = rs.map((x) => (x.recoveredAt! - t0) / 1000)
      return {
        clients,
        missedEach: MISSED,
        allRecoveredS: Math.max(...rec),
        allLiveS: Math.max(...rs.map((x) => (x.liveAt! - t0) / 1000)),
        recoveredP50S: percentile(rec, 50),
        recoveredP99S: percentile(rec, 99),
        complete: rs.filter((x) => x.gaps.length === 0 && x.duplicates === 0 && (x.streams[`user:${x.user}`]?.to ?? 0) === MISSED).length,
        unrecovered: rs.reduce((n, x) => n + x.unrecovered, 0),
        peakNodeCpu: rigCpu.find((x) => x.part === 'nodes')!.peakPct,
        peakRedisCpu: rigCpu.find((x) => x.part === 'Redis')!.peakPct,
        rigCpu,
      }
    } finally {
      await fleets.stop()
    }
  } catch (err) {
    throw new Error(`${(err as Error).message}${lbs.map((l, i) => `\nhaproxy-${i}:\n${l.tail(5)}`).join('')}`)
  } finally {
    await Promise.all(lbs.map(async (l) => await l.stop()))
    await r.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

async function losses (mode: 'before' | 'after', clients: number, processes: number, drainMs: number, progress: (s: string) => void, smoke = false): Promise<LossRow[]> {
  // Publishing before the event, delivery after it, and a last wait for stragglers (shorter in a smoke run).
  const [leadMs, settleMs, tailMs] = smoke ? [800, 1200, 600] : [2000, 3000, 1500]
  const env: Record<string, string> = { NODE_TTL: '3000', DRAIN_TIMEOUT: String(drainMs), ...(mode === 'before' ? { HISTORY_SIZE: '0' } : {}) }
  const r = await rig(env, 3)
  const lb = r.lb!
  const rows: LossRow[] = []
  try {
    const users = Array.from({ length: clients }, (_x, i) => `loss-${mode}-${i}`)
    progress(`losses (${mode}): connecting ${clients} clients`)
    const options = mode === 'before' ? { drainJitterMs: 5000, soonRetries: 1 } : {}
    const fleets = await startFleets({ url: `${lb.ws}/ws/events`, users, eventTypes: ['system.*'], secret: TEST_SECRET, options }, processes, 600_000)
    const live = (): NodeProc[] => r.nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null)
    /** system.* events at 50 a second through whichever node answers, until stopped; resolves with how many were taken. */
    const publishFor = (): { stop: () => Promise<number> } => {
      let on = true
      let taken = 0
      const loop = (async () => {
        const t0 = Date.now()
        for (let i = 0; on; i++) {
          const due = t0 + i * 20
          if (due > Date.now()) await sleep(due - Date.now())
          for (let k = 0; k < 10 && on; k++) {
            const n = live()[(i + k) % Math.max(1, live().length)]
            if (n === undefined) break
            try {
              if ((await n.api('/api/events', { body: { type: 'system.tick', data: { i } } })).status === 202) { taken++; break }
            } catch {}
          }
        }
      })()
      return { async stop () { on = false; await loop; return taken } }
    }
    let current: { stop: () => Promise<number> } | null = null
    try {
      const measure = async (event: LossRow['event'], act: () => Promise<void>): Promise<void> => {
        const before = new Map((await fleets.report()).map((x) => [x.user, x]))
        current = publishFor()
        await sleep(leadMs)
        await act()
        // Settle: every client connected, then a few seconds of delivery.
        await until('every client connected', async () => await fleets.report(), (xs) => xs.every((x) => x.connected), 120_000)
        await sleep(settleMs)
        const p = await current.stop()
        current = null
        await sleep(tailMs)
        const rs = await fleets.report()
        const lost = rs.map((x) => Math.max(0, p - (x.ticks - (before.get(x.user)?.ticks ?? 0))))
        const catchUp = rs.flatMap((x) => x.catchUpMs.slice(before.get(x.user)?.catchUpMs.length ?? 0))
        rows.push({
          mode, event, clients, published: p,
          clientsLosing: lost.filter((l) => l > 0).length,
          meanLost: lost.reduce((a, b) => a + b, 0) / lost.length,
          maxLost: Math.max(...lost),
          duplicates: rs.reduce((n, x) => n + x.duplicates - (before.get(x.user)?.duplicates ?? 0), 0),
          catchUpP50: percentile(catchUp, 50),
          catchUpP99: percentile(catchUp, 99),
        })
      }
      progress(`losses (${mode}): kill -9 of one node`)
      await measure('kill -9 of one node', async () => {
        await live()[0]!.stop('SIGKILL')
        const n = await startNode({ REDIS_URL: r.redis.url, ...env })
        r.nodes.push(n)
        lb.backends.push({ port: n.port, alive: true, connections: 0 })
      })
      progress(`losses (${mode}): rolling restart`)
      await measure('rolling restart', async () => {
        for (const old of [...live()]) {
          const exited = old.exit
          old.proc.kill('SIGTERM')
          await exited
          const n = await startNode({ REDIS_URL: r.redis.url, ...env })
          r.nodes.push(n)
          lb.backends.push({ port: n.port, alive: true, connections: 0 })
          lb.setAlive(old.port, false)
        }
      })
    } finally {
      await (current as { stop: () => Promise<number> } | null)?.stop()
      await fleets.stop()
    }
  } finally {
    await r.stop()
  }
  return rows
}

export async function resumeBench (opts: { smoke: boolean, progress: (s: string) => void }): Promise<ResumeResult> {
  const s = opts.smoke ? { storm: 100, stormProcs: 1, loss: 50, lossProcs: 1 } : { storm: 10_000, stormProcs: 4, loss: 1000, lossProcs: 2 }
  // Development on a busy machine: --storm-clients=N, --loss-clients=N.
  const flag = (name: string): number | undefined => { const v = process.argv.find((a) => a.startsWith(`--${name}=`)); return v === undefined ? undefined : Number(v.slice(name.length + 3)) }
  s.storm = flag('storm-clients') ?? s.storm
  s.loss = flag('loss-clients') ?? s.loss
  const storm_ = await storm(s.storm, s.stormProcs, opts.progress)
  const drainMs = opts.smoke ? 1000 : 3000
  const rows = [...await losses('before', s.loss, s.lossProcs, drainMs, opts.progress, opts.smoke), ...await losses('after', s.loss, s.lossProcs, drainMs, opts.progress, opts.smoke)]
  return { storm: storm_, losses: rows }
}

const secs = (x: number): string => `${x.toFixed(1)} s`
const msOr = (x: number): string => Number.isFinite(x) ? `${Math.round(x)} ms` : 'n/a'

export function resumeMarkdown (r: ResumeResult): string[] {
  const s = r.storm
  return [
    '## Resume', '',
    `Resume storm: ${s.clients} SDK clients of distinct users on one node through haproxy (deploy/haproxy.cfg), the node killed (-9); each user gets ${s.missedEach} events while they cannot reconnect; then two nodes join haproxy's rotation and every client reconnects at once.`, '',
    '| clients | all recovered | all live again | recovered p50 / p99 | complete resumes | recovered:false | peak node CPU | peak Redis CPU |', '|---|---|---|---|---|---|---|---|',
    `| ${s.clients} | ${secs(s.allRecoveredS)} | ${secs(s.allLiveS)} | ${secs(s.recoveredP50S)} / ${secs(s.recoveredP99S)} | ${s.complete} / ${s.clients} | ${s.unrecovered} | ${s.peakNodeCpu.toFixed(0)}% | ${s.peakRedisCpu.toFixed(0)}% |`, '',
    `CPU of the rig from the nodes joining to every client live, per part: processes, CPU seconds, mean / peak % of a core per process: ${s.rigCpu.map((x) => `${x.part} (${x.processes}) ${x.cpuS.toFixed(1)} s, ${x.meanPct.toFixed(0)}% / ${x.peakPct.toFixed(0)}%`).join('; ')}.`, '',
    `Events lost by SDK clients over three nodes at 50 system.* events a second. Before: history off (no positions, no resume) and the SDK's earlier reconnect settings (5 s drain jitter, one quick retry); after: history and resume on, the defaults. Close to caught up: from a close to the resumed connection's \`recovered\` (after), or to connected again (before).`, '',
    '| | event | clients | published | clients losing events | lost per client (mean / max) | duplicates | close to caught up p50 / p99 |', '|---|---|---|---|---|---|---|---|',
    ...r.losses.map((x) => `| ${x.mode} | ${x.event} | ${x.clients} | ${x.published} | ${x.clientsLosing} | ${x.meanLost.toFixed(1)} / ${x.maxLost} | ${x.duplicates} | ${msOr(x.catchUpP50)} / ${msOr(x.catchUpP99)} |`), '',
  ]
}

if (process.argv[1] === fileURLToPath(import.meta.url)) runAlone('resume', resumeBench, resumeMarkdown)
