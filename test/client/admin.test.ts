// The SDK's admin API (src/client/admin.ts) on Node's `ws`, against two node
// processes on a private Redis: every operator call with its typed answer
// and its effect on real clients, the metrics pushes, and a live tail that
// survives its node's restart (the client reconnects and the tail is started
// again with the same filter).
import t, { type Test } from 'tap'
import { HeraldAdmin, type Metrics, type TailBatch } from '../../src/client/admin.js'
import { HeraldError } from '../../src/client/index.js'
import { connect } from '../helpers/client.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { opsCluster } from '../helpers/ops.js'
import { sdk, untilState, user } from '../helpers/sdk.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const cl = await opsCluster(t, { NODE_TTL: '3000', ADMIN_METRICS_INTERVAL: '200' }, ['sdkadm-a', 'sdkadm-b'])
const [A, B] = cl.nodes as [NodeProc, NodeProc]

function admin (t: Test, node: NodeProc, name = user('ops')) {
  const probe = sdk(t, { url: `${node.ws}/ws/admin`, getToken: () => adminToken(name) })
  const a = new HeraldAdmin(probe.client)
  const metrics: Metrics[] = []
  const tails: TailBatch[] = []
  a.on('metrics', (m) => metrics.push(m))
  a.on('tail', (x) => tails.push(x))
  return { a, probe, metrics, tails, events: () => tails.flatMap((x) => x.events) }
}

t.test('stats and metrics pushes, typed', async (t) => {
  const { a, metrics } = admin(t, A)
  await a.connect()
  const s = await a.stats()
  t.equal(s.server.serverId, A.serverId)
  t.same(s.global?.nodes.map((n) => n.serverId).sort(), [A.serverId, B.serverId].sort())
  await waitFor('a metrics push', () => metrics.length > 0)
  t.match(metrics[0], { server: { serverId: A.serverId }, global: { servers: 2 } })
  t.ok('top' in metrics[0]!, 'with the leaderboards')
})

t.test('list, disconnect and revoke act on real clients on every node; broadcast reaches them', async (t) => {
  const { a } = admin(t, A)
  const u = user('target')
  const onA = await connect(`${A.ws}/ws/events`, { token: userToken(u, `${u}-s1`) })
  const onB = await connect(`${B.ws}/ws/events`, { token: userToken(u, `${u}-s2`) })
  t.teardown(() => Promise.all([onA.close(), onB.close()]))
  const list = await a.listConnections(u)
  t.equal(list.userId, u)
  t.same(list.connections.map((c) => c.serverId).sort(), [A.serverId, B.serverId].sort(), 'one connection on each node')
  t.same(list.connections.map((c) => c.sessionId).sort(), [`${u}-s1`, `${u}-s2`])

  const id = await a.broadcast({ level: 'info', title: 'maintenance', message: 'at noon' })
  await onB.next((f) => f.type === 'notification' && f.payload.id === id)
  t.pass('a broadcast reached a client on the other node')

  await a.disconnectConnection(onA.frames[0]!.payload.connectionId)
  t.equal((await onA.closed).code, 4003, 'one connection disconnected')
  const r = await a.revokeSession(`${u}-s2`)
  t.match(r, { revoked: 'session', id: `${u}-s2` })
  t.equal((await onB.closed).code, 4004, 'its session revoked')

  const v = user('victim')
  const c = await connect(`${B.ws}/ws/events`, { token: userToken(v) })
  const rv = await a.revokeUser(v)
  t.match(rv, { revoked: 'user', id: v })
  t.ok(Date.parse(rv.revokedAt) > 0)
  t.equal((await c.closed).code, 4004, 'the user revoked')
  const w = user('walker')
  const d = await connect(`${B.ws}/ws/events`, { token: userToken(w) })
  await a.disconnectUser(w)
  t.equal((await d.closed).code, 4003, 'a whole user disconnected')

  await t.rejects(a.listConnections(''), { code: 'INVALID_PAYLOAD' }, 'a refusal rejects with the node\'s code')
  await t.rejects(a.startTail({ eventTypes: ['Bad Pattern'] }), HeraldError)
})

t.test('a tail, restarted with its filter after the node it runs on restarts', { timeout: 60_000 }, async (t) => {
  // A node of its own, restarted on the same port.
  let node = await startNode({ REDIS_URL: cl.redis.url, NODE_TTL: '3000' })
  t.teardown(() => node.stop())
  const { a, probe, events } = admin(t, node)
  const started = await a.startTail({ eventTypes: ['sdk.tail.*'], userId: 'tail-user' })
  t.same(started, { eventTypes: ['sdk.tail.*'], userId: 'tail-user', maxPerSecond: 50 })
  const publish = async (type: string, userId: string): Promise<string> => (await B.api('/api/events', { body: { type, userId } })).body.id
  const before = await publish('sdk.tail.one', 'tail-user')
  await publish('sdk.tail.one', 'someone-else')
  await publish('other.type', 'tail-user')
  await waitFor('the matching event', () => events().map((e) => e.id), (ids) => ids.includes(before))
  t.same(events().map((e) => e.id), [before], 'only the event matching both filters')

  const port = node.port
  await node.stop('SIGKILL')
  await waitFor('the client to notice', () => probe.client.state, (s) => s === 'reconnecting', { timeoutMs: 60_000 })
  node = await startNode({ REDIS_URL: cl.redis.url, NODE_TTL: '3000', PORT: String(port) })
  await untilState(probe.client, 'connected', 20_000)
  // The tail is asked for again once connected: publish until one arrives.
  const sent: string[] = []
  await waitFor('an event after the restart', async () => {
    sent.push(await publish('sdk.tail.two', 'tail-user'))
    await publish('sdk.tail.two', 'someone-else')
    return events().length
  }, (n) => n > 1, { timeoutMs: 10_000, intervalMs: 200 })
  t.pass('the tail came back with the connection')
  const marker = await publish('sdk.tail.three', 'tail-user')
  await waitFor('the marker', () => events().map((e) => e.id), (ids) => ids.includes(marker))
  const ids = events().map((e) => e.id)
  t.equal(ids[0], before)
  t.equal(ids.at(-1), marker)
  t.ok(ids.slice(1, -1).length > 0 && ids.slice(1, -1).every((id) => sent.includes(id)), 'with its filter: only tail-user\'s events, none of someone-else\'s')

  await a.stopTail()
  const last = await publish('sdk.tail.four', 'tail-user')
  // Another admin's tail sees it; this one, stopped, must not.
  const other = admin(t, B)
  await other.a.startTail({ eventTypes: ['sdk.tail.*', 'sdk.marker'] })
  const end = await publish('sdk.marker', 'x')
  await waitFor('the other tail', () => other.events().map((e) => e.id), (ids) => ids.includes(end))
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.notOk(events().some((e) => e.id === last), 'nothing after stopTail')
})
