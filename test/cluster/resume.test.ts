// Nothing lost, nothing doubled, whatever happens to a node: 1,000 SDK
// clients (in two child processes) behind a round-robin balancer over three
// node processes, while events are published continuously (50 a second:
// system.* to everyone, and events to one user after another), through
// (a) a rolling restart of all three nodes (SIGTERM, drain, a new node),
// (b) kill -9 of one node, (c) a network blip (the balancer cuts every
// connection): every client's sequence of each stream it reads has no gap and
// no duplicate, ends at the stream's top, and every resume says recovered.
// (d) Redis restarted empty: the epoch changes and every client is told
// recovered:false, then goes on in the new epoch without a gap.
import t, { type Test } from 'tap'
import { startBalancer, type Balancer } from '../helpers/balancer.js'
import { startFleets, percentile, type Fleets } from '../../bench/load/sdk-fleets.js'
import type { ClientReport } from '../../bench/load/sdk-fleet.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { TEST_SECRET } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const CLIENTS = 1000
const RATE = 50
const ENV = { NODE_TTL: '3000', DRAIN_TIMEOUT: '2000', HISTORY_SIZE: '20000', HEALTH_PROBE_INTERVAL: '200', REDIS_REPLAY_DELAY: '500' }

const redis = await startRedis()
const nodes: NodeProc[] = []
let lb: Balancer | null = null
let fleets: Fleets | null = null
let publishing = false
let publisher: Promise<void> = Promise.resolve()
t.teardown(async () => {
  publishing = false
  await publisher
  await fleets?.stop()
  await lb?.close()
  await Promise.all(nodes.map(async (n) => await n.stop()))
  await redis.stop()
})

const start = async (): Promise<NodeProc> => {
  const n = await startNode({ REDIS_URL: redis.url, ...ENV })
  nodes.push(n)
  return n
}
const live = (): NodeProc[] => nodes.filter((n) => n.proc.exitCode === null && n.proc.signalCode === null)

await Promise.all([start(), start(), start()])
lb = await startBalancer(nodes.map((n) => n.port), { healthIntervalMs: 100 })
const balancer = lb
const users = Array.from({ length: CLIENTS }, (_x, i) => `fleet-${process.pid}-${i}`)
const withEvents = new Set<string>()

/** One publish through whichever node answers; the stream, not this answer, is the truth of what was published. */
async function publish (body: Record<string, unknown>): Promise<any> {
  for (let i = 0; i < 20; i++) {
    const ns = live()
    const n = ns[i % Math.max(1, ns.length)]
    if (n === undefined) { await new Promise((r) => setTimeout(r, 100)); continue }
    try {
      const r = await n.api('/api/events', { body })
      if (r.status === 202) return r.body
    } catch {}
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error('no node took the publish')
}

function startPublishing (): void {
  publishing = true
  let i = 0
  publisher = (async () => {
    const t0 = Date.now()
    while (publishing) {
      const n = i++
      const due = t0 + n * (1000 / RATE)
      if (due > Date.now()) await new Promise((r) => setTimeout(r, due - Date.now()))
      if (n % 5 === 4) {
        const u = users[(n / 5 | 0) % users.length]!
        withEvents.add(u)
        await publish({ type: 'orders.created', userId: u, data: { n } }).catch(() => {})
      } else {
        await publish({ type: 'system.tick', data: { n } }).catch(() => {})
      }
    }
  })()
}

async function stopPublishing (): Promise<void> {
  publishing = false
  await publisher
}

/** The stream's epoch and top, from whichever node answers (not one still waiting for Redis). */
async function top (stream: string): Promise<{ epoch: string, top: number }> {
  return await waitFor(`the top of ${stream}`, async () => {
    for (const n of live()) {
      const r = await n.api(`/api/streams/${stream}/events?after=0&limit=1`).catch(() => null)
      if (r?.status === 200) return { epoch: r.body.epoch as string, top: r.body.top as number }
    }
    return null
  }, (x) => x !== null, { timeoutMs: 30_000, intervalMs: 200 }) as { epoch: string, top: number }
}

/** Waits until every client is connected and has the broadcast up to its top now. */
async function caughtUp (what: string): Promise<ClientReport[]> {
  const b = await top('broadcast')
  const deadline = Date.now() + 60_000
  for (;;) {
    const rs = await fleets!.report()
    const behind = rs.filter((r) => !(r.connected && r.streams.broadcast?.epoch === b.epoch && r.streams.broadcast.to >= b.top))
    if (behind.length === 0) return rs
    if (Date.now() > deadline) {
      const byEpoch: Record<string, number> = {}
      for (const r of behind) { const k = `${r.streams.broadcast?.epoch}@${r.streams.broadcast?.to}/${r.connected ? 'up' : 'down'}`; byEpoch[k] = (byEpoch[k] ?? 0) + 1 }
      throw new Error(`${behind.length} clients not caught up (${what}) with broadcast ${b.epoch}@${b.top} within 60 s; now ${JSON.stringify(await top('broadcast'))}; behind by epoch@offset: ${JSON.stringify(Object.entries(byEpoch).slice(0, 10))}`)
    }
    await new Promise((resolve) => setTimeout(resolve, 500))
  }
}

/** What the nodes shed past saturation so far, from their logs (a node killed since included): messages a node's clients never got, which no resume covers. */
const shedSoFar = (): number => nodes.reduce((n, p) => n + p.lines.filter((l) => l.includes('shedding messages older than a second')).reduce((s, l) => s + (Number((JSON.parse(l) as { shed?: number }).shed) || 0), 0), 0)

interface Figures { gaps: number, duplicates: number, unrecovered: number, reconnected: number, catchUpP50: number, catchUpP99: number }

function figures (rs: ClientReport[], since: ClientReport[] | null): Figures {
  const before = new Map(since?.map((r) => [r.user, r]) ?? [])
  const catchUp = rs.flatMap((r) => r.catchUpMs.slice(before.get(r.user)?.catchUpMs.length ?? 0))
  return {
    gaps: rs.reduce((n, r) => n + r.gaps.length - (before.get(r.user)?.gaps.length ?? 0), 0),
    duplicates: rs.reduce((n, r) => n + r.duplicates - (before.get(r.user)?.duplicates ?? 0), 0),
    unrecovered: rs.reduce((n, r) => n + r.unrecovered - (before.get(r.user)?.unrecovered ?? 0), 0),
    reconnected: rs.filter((r) => r.reconnects > (before.get(r.user)?.reconnects ?? 0)).length,
    catchUpP50: percentile(catchUp, 50),
    catchUpP99: percentile(catchUp, 99),
  }
}

/** Every client's user stream ends at its top: the events of its user all arrived. */
async function userStreamsComplete (t: Test, rs: ClientReport[]): Promise<void> {
  const byUser = new Map(rs.map((r) => [r.user, r]))
  const tops = new Map<string, number>()
  const list = [...withEvents]
  for (let i = 0; i < list.length; i += 50) {
    await Promise.all(list.slice(i, i + 50).map(async (u) => { tops.set(u, (await top(`user:${u}`)).top) }))
  }
  const short = list.filter((u) => (byUser.get(u)?.streams[`user:${u}`]?.to ?? 0) !== tops.get(u))
  t.same(short.slice(0, 5).map((u) => [u, byUser.get(u)?.streams[`user:${u}`], tops.get(u)]), [], `every user stream (${list.length} with events) received to its top`)
}

t.test('1,000 SDK clients over three nodes, publishing at 50 events a second', { timeout: 600_000 }, async (t) => {
  fleets = await startFleets({ url: `${balancer.ws}/ws/events`, users, eventTypes: ['*'], secret: TEST_SECRET }, 2)
  startPublishing()
  let last = await caughtUp('start')
  t.equal(last.length, CLIENTS, 'every client reports')

  const phase = async (name: string, act: () => Promise<void>): Promise<Figures> => {
    const shed0 = shedSoFar()
    await act()
    const rs = await caughtUp(name)
    const f = figures(rs, last)
    const shed = shedSoFar() - shed0
    if (shed === 0) t.equal(f.gaps, 0, `${name}: no gap in any client's sequence`)
    else {
      // A node past saturation (the machine's load) dropped messages for its own clients: a loss resume does not cover (docs/operations.md).
      const missing = Math.max(0, ...rs.map((r) => r.gaps.slice(last.find((x) => x.user === r.user)?.gaps.length ?? 0).reduce((n, g) => n + g.got - g.after - 1, 0)))
      t.ok(missing <= shed, `${name}: nodes shed ${shed} messages past saturation; no client misses more than that (${missing})`)
    }
    t.equal(f.duplicates, 0, `${name}: no message delivered twice`)
    t.equal(f.unrecovered, 0, `${name}: every resume recovered`)
    t.comment(`${name}: ${f.reconnected} clients reconnected; close to caught-up p50 ${f.catchUpP50} ms, p99 ${f.catchUpP99} ms`)
    last = rs
    return f
  }

  const rolling = await phase('(a) rolling restart', async () => {
    for (const old of [...live()]) {
      const exited = old.exit
      old.proc.kill('SIGTERM')
      await exited
      const n = await start()
      balancer.backends.push({ port: n.port, alive: true, connections: 0 })
      balancer.setAlive(old.port, false)
    }
  })
  t.equal(rolling.reconnected, CLIENTS, '(a) every client was moved by the restart, and resumed')

  const killed = await phase('(b) kill -9 of one node', async () => {
    const victim = live()[0]!
    await victim.stop('SIGKILL')
    const n = await start()
    balancer.backends.push({ port: n.port, alive: true, connections: 0 })
  })
  t.ok(killed.reconnected > 0, `(b) the killed node's clients resumed (${killed.reconnected})`)

  const blip = await phase('(c) network blip', async () => { balancer.cut() })
  t.equal(blip.reconnected, CLIENTS, '(c) every client was cut, and resumed')

  await stopPublishing()
  await userStreamsComplete(t, await caughtUp('user streams'))
  startPublishing()

  // (d) Redis restarted empty.
  const before = await top('broadcast')
  const beforeReports = await fleets.report()
  await redis.kill()
  await redis.restart()
  const renewed = await waitFor('a new broadcast epoch', async () => await top('broadcast').catch(() => before), (b) => b.epoch !== before.epoch, { timeoutMs: 30_000, intervalMs: 200 })
  const rs = await caughtUp('(d) after Redis came back empty')
  const lost = rs.filter((r) => r.unrecovered <= (beforeReports.find((b) => b.user === r.user)?.unrecovered ?? 0))
  t.same(lost.map((r) => r.user).slice(0, 5), [], '(d) every client was told recovered:false')
  t.ok(rs.every((r) => r.streams.broadcast!.epoch === renewed.epoch), '(d) every client went on in the new epoch')
  // From here on, the new epoch: no gap and no duplicate.
  const settled = await caughtUp('(d) settled')
  await new Promise((r) => setTimeout(r, 3000))
  const after = await caughtUp('(d) three seconds later')
  const f = figures(after, settled)
  t.equal(f.gaps, 0, '(d) then no gap')
  t.equal(f.duplicates, 0, '(d) then no duplicate')
  await stopPublishing()
})
