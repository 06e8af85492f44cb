// Redis outages: readiness turns 503 and upgrades are refused while
// local delivery goes on; ioredis reconnects to the restarted server, the node
// resubscribes, and delivery across nodes resumes. The node never exits.
import t, { type Test } from 'tap'
import { connect, refusal, type Frame } from '../helpers/client.js'
import type { NodeProc } from '../helpers/node.js'
import { health, mustStayUp, opsCluster, type OpsCluster } from '../helpers/ops.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

async function cluster (t: Test, env: Record<string, string> = {}): Promise<OpsCluster & { A: NodeProc, B: NodeProc, C: NodeProc }> {
  const cl = await opsCluster(t, { NODE_TTL: '1500', ...env }, ['fault-a', 'fault-b', 'fault-c'])
  const [A, B, C] = cl.nodes as [NodeProc, NodeProc, NodeProc]
  return { ...cl, A, B, C }
}

const eventWithId = (id: string) => (f: Frame): boolean => f.type === 'event' && f.payload?.id === id

t.test('Redis killed and restarted on the same port: 503, then 200, and delivery resumes', { timeout: 40_000 }, async (t) => {
  const { redis, A, B, C } = await cluster(t)
  for (const n of [A, B, C]) mustStayUp(t, n)
  for (const n of [A, B, C]) t.match(await health(n), { status: 200, body: { healthy: true, redisConnected: true, backend: 'redis' } })

  const onA = await connect(`${A.ws}/ws/events`, { token: userToken('fault-u') })
  const onB = await connect(`${B.ws}/ws/events`, { token: userToken('fault-u') })
  const onC = await connect(`${C.ws}/ws/events`, { token: userToken('fault-v') })
  t.teardown(() => Promise.all([onA.close(), onB.close(), onC.close()]))
  await onA.subscribe(['*'])
  await onB.subscribe(['*'])
  await onC.subscribe(['*'])
  const before = (await A.api('/api/events', { body: { type: 'authentication.login.success', userId: 'fault-u' } })).body.id as string
  await onB.next(eventWithId(before))

  await redis.kill()
  for (const n of [A, B, C]) {
    const r = await waitFor(`${n.serverId} readiness to turn 503`, () => health(n), (r) => r.status === 503, { timeoutMs: 5000 })
    t.match(r.body, { healthy: false, redisConnected: false, serverId: n.serverId })
    t.match(await n.api('/ws/health?probe=live', { key: '' }), { status: 200, body: { alive: true } }, 'liveness stays 200')
  }
  await A.waitLine((l) => l.includes('backend unreachable'), 3000)

  // Refused before the upgrade, as HTTP, while the backend is down.
  for (const path of ['/ws/events', '/ws/admin']) {
    const tok = path === '/ws/admin' ? adminToken() : userToken('late')
    const r = await refusal(`${A.ws}${path}?token=${tok}`)
    t.equal(r.status, 503, `${path} refused with 503`)
    t.equal(r.body?.error?.code, 'BACKEND_UNAVAILABLE')
  }

  // Local delivery goes on: the publishing node's own client gets the event at once,
  // while the API waits for Redis to hand it to the other nodes.
  const during = A.api('/api/events', { body: { type: 'authentication.login.success', userId: 'fault-u', data: { during: true } } })
  const local = await onA.next((f) => f.type === 'event' && f.payload?.data?.during === true, 3000)
  t.ok(local, 'delivered on the publishing node during the outage')
  t.equal(onA.closeInfo, null, 'open connections stay open')
  t.equal(onB.closeInfo, null)

  await redis.restart()
  for (const n of [A, B, C]) {
    const r = await waitFor(`${n.serverId} readiness to return to 200`, () => health(n), (r) => r.status === 200, { timeoutMs: 8000, intervalMs: 50 })
    t.match(r.body, { healthy: true, redisConnected: true })
  }
  await A.waitLine((l) => l.includes('backend connected'), 3000)
  const answered = await within(5000, 'the publish made during the outage', during)
  t.equal(answered.status, 202, 'the publish waiting through the outage completes')
  t.equal(answered.body.id, local.payload.id)

  // The connections opened before the outage: their channels were resubscribed.
  const after = (await A.api('/api/events', { body: { type: 'session.after', userId: 'fault-u' } })).body.id as string
  t.match((await onB.next(eventWithId(after), 5000)).payload, { type: 'session.after', userId: 'fault-u' }, 'A -> B after the restart')
  const back = (await B.api('/api/events', { body: { type: 'session.back', userId: 'fault-u' } })).body.id as string
  await onA.next(eventWithId(back), 5000)
  t.pass('B -> A after the restart')
  const toC = (await B.api('/api/events', { body: { type: 'session.back', userId: 'fault-v' } })).body.id as string
  await onC.next(eventWithId(toC), 5000)
  t.pass('B -> C after the restart')

  // New connections are accepted again, and see cross-node traffic, broadcasts included.
  const fresh = await connect(`${B.ws}/ws/events`, { token: userToken('fresh') })
  t.teardown(() => fresh.close())
  await fresh.subscribe(['*'])
  const sys = (await A.api('/api/events', { body: { type: 'system.recovered' } })).body.id as string
  await fresh.next(eventWithId(sys), 5000)
  await onB.next(eventWithId(sys), 5000)
  await onC.next(eventWithId(sys), 5000)
  t.pass('broadcast from A reaches old and new connections on B, and C')

  // Every node is registered again (the restarted Redis lost every key).
  const g = await waitFor('the three nodes to re-register', async () => (await A.api('/api/stats')).body.global, (g) => g.servers === 3, { timeoutMs: 3000 })
  t.equal(g.servers, 3)
  for (const n of [A, B, C]) t.equal(n.proc.exitCode, null)
})

t.test('SIGTERM during a Redis outage still drains and exits', { timeout: 30_000 }, async (t) => {
  const { redis, A } = await cluster(t, { DRAIN_TIMEOUT: '300' })
  const c = await connect(`${A.ws}/ws/events`, { token: userToken('drain-u') })
  t.teardown(() => c.close())
  await redis.kill()
  await waitFor('readiness to turn 503', () => health(A), (r) => r.status === 503, { timeoutMs: 5000 })
  const sent = Date.now()
  A.proc.kill('SIGTERM')
  const closed = await within(3000, 'the client close', c.closed)
  t.equal(closed.code, 1001, 'the connection is told to reconnect elsewhere')
  const exit = await within(5000, 'the node to exit', A.exit)
  t.same(exit, { code: 0, signal: null }, `exited cleanly after ${Date.now() - sent} ms`)
})
