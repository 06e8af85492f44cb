// Graceful drain: SIGTERM turns readiness 503 at once, refuses new
// upgrades with 503 DRAINING, closes open connections with 1001 spread over
// DRAIN_TIMEOUT (so their reconnects trickle onto other nodes), then exits 0.
// Three node processes on a private Redis: one drains, the other two take
// the reconnects.
import t from 'tap'
import { connect, refusal, type TestClient } from '../helpers/client.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { health, opsCluster } from '../helpers/ops.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const DRAIN = 2000
const CLIENTS = 40

t.test(`SIGTERM with ${CLIENTS} clients: 503 at once, upgrades refused, 1001 spread over DRAIN_TIMEOUT, exit 0`, { timeout: 40_000 }, async (t) => {
  const cl = await opsCluster(t, { DRAIN_TIMEOUT: String(DRAIN), NODE_TTL: '1500' }, ['drain-a', 'drain-b', 'drain-c'])
  const [A, B, C] = cl.nodes as [NodeProc, NodeProc, NodeProc]
  const clients: TestClient[] = []
  t.teardown(() => Promise.all(clients.map(async (c) => await c.close())))
  for (let i = 0; i < CLIENTS; i++) clients.push(await connect(`${A.ws}/ws/events`, { token: userToken(`drain-u${i % 8}`) }))
  const adminOnA = await connect(`${A.ws}/ws/admin`, { token: adminToken('drain-admin') })
  clients.push(adminOnA)
  const closedAt = new Map<TestClient, number>()
  for (const c of clients) void c.closed.then(() => closedAt.set(c, Date.now()))
  t.match(await health(A), { status: 200, body: { connections: CLIENTS + 1, draining: false } })

  const sentAt = Date.now()
  A.proc.kill('SIGTERM')
  const r = await waitFor('readiness 503', () => health(A), (r) => r.status === 503, { timeoutMs: 1000, intervalMs: 10 })
  const readyFlip = Date.now() - sentAt
  const openWhen503 = clients.filter((c) => c.closeInfo === null).length
  t.match(r.body, { healthy: false, draining: true, serverId: A.serverId })
  t.ok(readyFlip < 500, `readiness 503 ${readyFlip} ms after SIGTERM`)
  t.ok(openWhen503 >= CLIENTS / 2, `while connections are still open (${openWhen503} of ${CLIENTS + 1})`)
  t.match(await A.api('/ws/health?probe=live', { key: '' }), { status: 200, body: { alive: true } }, 'liveness still 200 while draining')

  for (const [path, tok] of [['/ws/events', userToken('late')], ['/ws/admin', adminToken('late-admin')]] as const) {
    const x = await refusal(`${A.ws}${path}?token=${tok}`)
    t.match(x, { status: 503, body: { error: { code: 'DRAINING' } } }, `a new upgrade on ${path} is refused 503 DRAINING`)
  }
  t.ok(clients.filter((c) => c.closeInfo === null).length >= CLIENTS / 4, 'refused while others are still being drained')

  const closes = await within(DRAIN + 2500, 'every client to be closed', Promise.all(clients.map(async (c) => await c.closed)))
  t.same(new Set(closes.map((c) => c.code)), new Set([1001]), 'every connection closed with 1001')
  const times = [...closedAt.values()].map((at) => at - sentAt).sort((a, b) => a - b)
  const spread = times.at(-1)! - times[0]!
  t.comment(`MEASURED drain: first close ${times[0]} ms, last ${times.at(-1)} ms after SIGTERM; spread ${spread} ms over DRAIN_TIMEOUT ${DRAIN}`)
  t.ok(spread >= DRAIN / 2, `closes spread over at least half the window: ${spread} ms`)
  t.ok(times.at(-1)! <= DRAIN + 2500, 'all closed within the window + 2.5 s')
  // Evenly spread: no quarter of the window holds more than half the connections.
  const perQuarter = [0, 1, 2, 3].map((q) => times.filter((ms) => ms >= q * DRAIN / 4 && ms < (q + 1) * DRAIN / 4).length)
  t.ok(perQuarter.every((n) => n <= (CLIENTS + 1) / 2), `a trickle, not a wave: per quarter ${JSON.stringify(perQuarter)}`)

  const exit = await within(10_000, 'the process to exit', A.exit)
  t.same(exit, { code: 0, signal: null }, `exit code 0, ${Date.now() - sentAt} ms after SIGTERM`)
  await A.waitLine((l) => l.includes('"draining"'), 100)
  await A.waitLine((l) => l.includes('"msg":"stopped"') && l.includes('"signal":"SIGTERM"'), 100)

  // The reconnects land on the nodes that stay, and reach each other there.
  const again = await Promise.all(Array.from({ length: 8 }, async (_x, i) => await connect(`${(i % 2 === 0 ? B : C).ws}/ws/events`, { token: userToken(`drain-u${i}`) })))
  t.teardown(() => Promise.all(again.map(async (c) => await c.close())))
  t.same(new Set(again.map((c) => c.frames[0]!.payload.serverId)), new Set([B.serverId, C.serverId]), 'drained clients reconnect to B and C')
  await Promise.all(again.map(async (c) => await c.subscribe(['*'])))
  const id = (await C.api('/api/events', { body: { type: 'session.moved', userId: 'drain-u0' } })).body.id as string
  await again[0]!.next((f) => f.type === 'event' && f.payload.id === id)
  t.equal(again[0]!.frames[0]!.payload.serverId, B.serverId, 'an event published on C reaches the user now on B')
  await waitFor('B to count two servers', async () => (await B.api('/api/stats')).body.global.servers, (n) => n === 2, { timeoutMs: 3000 })
  t.pass('A left the registry on its way out')
})

t.test('SIGTERM while Redis is away: publishes held for it are written if it is back within the drain, and logged as lost if not', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const env = { REDIS_URL: redis.url, DRAIN_TIMEOUT: '500', REDIS_REPLAY_DELAY: '300', HEALTH_PROBE_INTERVAL: '200' }
  const u = `held-drain-${process.pid}`
  /** Three publishes through `n`, each answered 202 and held (no position). */
  const holdThree = async (n: NodeProc): Promise<string[]> => {
    const ids: string[] = []
    for (let i = 0; i < 3; i++) {
      const r = await n.api('/api/events', { body: { type: 'authentication.login.success', userId: u, data: { i } } })
      t.same([r.status, Object.keys(r.body).sort()], [202, ['id', 'stream']], 'held')
      ids.push(r.body.id as string)
    }
    return ids
  }
  const gone = async (n: NodeProc): Promise<void> => { await waitFor('the node to see Redis gone', async () => (await n.api('/ws/health', { key: '' })).status, (s) => s === 503, { timeoutMs: 10_000 }) }

  // Redis back during the drain: written.
  const a = await startNode(env)
  t.teardown(() => a.stop())
  await redis.kill()
  await gone(a)
  const kept = await holdThree(a)
  a.proc.kill('SIGTERM')
  await redis.restart()
  t.equal((await a.exit).code, 0, 'exit 0')
  t.notOk(a.lines.some((l) => l.includes('accepted publishes lost')), 'nothing lost')
  const b = await startNode(env)
  t.teardown(() => b.stop())
  const page = await b.api(`/api/streams/user:${u}/events`)
  t.same(page.body.events.map((e: { id: string }) => e.id), kept, 'the three are in the stream, in order')

  // Redis still away when the drain ends: lost, and the log says how many.
  await redis.kill()
  await gone(b)
  await holdThree(b)
  b.proc.kill('SIGTERM')
  t.equal((await b.exit).code, 0, 'exit 0')
  const line = b.lines.find((l) => l.includes('accepted publishes lost'))
  t.ok(line !== undefined, 'logged')
  t.match(JSON.parse(line!), { level: 50, messages: 3 }, 'at error level, with the count')
})
