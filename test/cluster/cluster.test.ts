// Three gateway nodes, each its own process, sharing one private Redis:
// cross-node delivery, order, audience isolation, broadcasts,
// admin views and stats, what each node subscribes to in Redis, and a node
// that dies without leaving.
import t, { type Test } from 'tap'
import { createChannels } from '../../src/cluster/channels.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const NODE_TTL = 1500
const CLUSTER_ENV = { NODE_TTL: String(NODE_TTL), ADMIN_METRICS_INTERVAL: '300' }
const PREFIX = 'herald:' // the default REDIS_KEY_PREFIX
const CHANNELS = createChannels(PREFIX)
const userChannel = (userId: string): string => CHANNELS.user(userId)
const ADMIN_CHANNEL = CHANNELS.admin
const BROADCAST_CHANNEL = CHANNELS.broadcast

const redis = await startRedis()
const names = ['node-a', 'node-b', 'node-c'].map((n) => `${n}-${process.pid}`)
const nodes: NodeProc[] = []
t.teardown(async () => {
  await Promise.all(nodes.map((n) => n.stop()))
  await redis.stop()
})
// Each node is recorded as soon as it runs, so a failed start still tears the others down.
const [A, B, C] = await Promise.all(names.map(async (SERVER_ID) => {
  const n = await startNode({ REDIS_URL: redis.url, SERVER_ID, ...CLUSTER_ENV })
  nodes.push(n)
  return n
})) as [NodeProc, NodeProc, NodeProc]
const rc = redis.client()

let uniq = 0
const user = (name: string): string => `${name}-${++uniq}`

async function events (t: Test, node: NodeProc, userId: string, patterns: string[] | null = ['*']): Promise<TestClient> {
  const c = await connect(`${node.ws}/ws/events`, { token: userToken(userId) })
  t.teardown(() => c.close())
  if (patterns !== null) await c.subscribe(patterns)
  return c
}

async function admin (t: Test, node: NodeProc, patterns: string[] | null = ['*']): Promise<TestClient> {
  const c = await connect(`${node.ws}/ws/admin`, { token: adminToken(`admin-${++uniq}`) })
  t.teardown(() => c.close())
  if (patterns !== null) await c.subscribe(patterns)
  return c
}

async function publish (node: NodeProc, body: Record<string, unknown>): Promise<string> {
  const r = await node.api('/api/events', { body })
  if (r.status !== 202) throw new Error(`publish on ${node.serverId} answered ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.id as string
}

const isEvent = (f: Frame): boolean => f.type === 'event'
const eventWithId = (id: string) => (f: Frame): boolean => f.type === 'event' && f.payload?.id === id
const delivered = (c: TestClient): Frame[] => c.frames.filter((f) => f.type === 'event' || f.type === 'notification')

async function numsub (channel: string): Promise<number> {
  const r = await rc.call('PUBSUB', 'NUMSUB', channel) as [string, number]
  return Number(r[1])
}

t.test('an event published on A reaches subscribers on B and C', { timeout: 15_000 }, async (t) => {
  const u = user('fanout')
  const [onB, onC, onA] = [await events(t, B, u), await events(t, C, u, ['authentication.*']), await events(t, A, u, ['authentication.login.*'])]
  const id = await publish(A, { type: 'authentication.login.success', userId: u, sessionId: 's1', data: { ip: '203.0.113.7' } })
  for (const [where, c] of [['B', onB], ['C', onC], ['A', onA]] as const) {
    const ev = await c.next(eventWithId(id))
    t.match(ev.payload, { id, type: 'authentication.login.success', userId: u, sessionId: 's1', data: { ip: '203.0.113.7' } }, `received on ${where}`)
    t.type(ev.payload.timestamp, 'string')
  }
  // Published later on B; proves that each client got the first event exactly once.
  const id2 = await publish(B, { type: 'authentication.logout', userId: u })
  for (const c of [onB, onC]) {
    await c.next(eventWithId(id2))
    t.same(c.frames.filter(isEvent).map((f) => f.payload.id), [id, id2], 'once each, in order')
  }
})

t.test('300 events published in sequence on A arrive in publish order on B and C', { timeout: 30_000 }, async (t) => {
  const u = user('order')
  const [onB, onC] = [await events(t, B, u, ['session.*']), await events(t, C, u, ['session.*'])]
  const ids: string[] = []
  for (let i = 0; i < 300; i++) ids.push(await publish(A, { type: 'session.activity', userId: u, data: { seq: i } }))
  for (const c of [onB, onC]) {
    const got = await c.collect(isEvent, 300, 15_000)
    t.equal(got.length, 300, 'no duplicates')
    t.same(got.map((f) => f.payload.data.seq), ids.map((_id, i) => i), 'publish order')
    t.same(got.map((f) => f.payload.id), ids, 'the ids the API answered')
  }
  t.same([...ids].sort(), ids, 'ids from one node sort in publish order')
})

t.test('one publisher going through A, B and C in turn (a load balancer in between): every subscriber sees its order', { timeout: 30_000 }, async (t) => {
  // Each publish waits for its 202 before the next, as one service's calls do;
  // a user event and a system event alternate, on two channels.
  const u = user('rr')
  const subs = [await events(t, A, u, ['session.*', 'system.*']), await events(t, B, u, ['session.*', 'system.*']), await events(t, C, u, ['session.*', 'system.*']), await admin(t, B, ['session.*', 'system.*'])]
  const N = 150
  for (let i = 0; i < N; i++) {
    await publish([A, B, C][i % 3]!, i % 2 === 0 ? { type: 'session.step', userId: u, data: { seq: i } } : { type: 'system.step', data: { seq: i } })
  }
  for (const c of subs) {
    const got = await c.collect((f) => isEvent(f) && f.payload.data?.seq !== undefined, N, 15_000)
    t.same(got.map((f) => f.payload.data.seq), Array.from({ length: N }, (_x, i) => i), 'in publish order, once each')
  }
})

t.test('audience isolation across nodes', { timeout: 15_000 }, async (t) => {
  const x = user('x')
  const y = user('y')
  // B holds connections of both users and an admin, so B hears Y's channel and the admin channel.
  const xOnB = await events(t, B, x, ['*'])
  const yOnB = await events(t, B, y, ['*'])
  const yOnC = await events(t, C, y, ['*'])
  const adminOnB = await admin(t, B, ['*'])

  const yIds = [
    await publish(A, { type: 'authentication.login.success', userId: y }),
    await publish(A, { type: 'security.password.changed', userId: y, data: { secret: 'y-only' } }),
  ]
  const n = await A.api(`/api/notifications/users/${y}`, { body: { level: 'warning', title: 'for y', message: 'only y' } })
  t.equal(n.status, 202)
  // About X, but admin.* goes to admins only; an event with no user goes to admins only.
  const adminOnly = await publish(A, { type: 'admin.user.locked', userId: x })
  const noUser = await publish(A, { type: 'billing.invoice.created' })
  // Published last on A: once X has it, anything above that could reach X has arrived.
  const sentinel = await publish(A, { type: 'authentication.sentinel', userId: x })

  await xOnB.next(eventWithId(sentinel))
  t.same(delivered(xOnB).map((f) => f.payload.id), [sentinel], 'X got its own event and nothing else')

  for (const c of [yOnB, yOnC]) {
    await c.next((f) => f.type === 'notification' && f.payload.id === n.body.id)
    t.same(c.frames.filter(isEvent).map((f) => f.payload.id), yIds, 'Y got its events (so B did hear them)')
  }
  await adminOnB.next(eventWithId(sentinel))
  const seen = adminOnB.frames.filter(isEvent).map((f) => f.payload.id)
  t.same(seen, [...yIds, adminOnly, noUser, sentinel], 'the admin on B saw every event, in order')
})

t.test('system.* events and broadcast notifications reach users on all three nodes', { timeout: 15_000 }, async (t) => {
  const subs = [await events(t, A, user('s'), ['system.*']), await events(t, B, user('s'), ['system.maintenance.*']), await events(t, C, user('s'), ['*'])]
  const other = user('other')
  const notSubscribed = await events(t, C, other, ['authentication.*'])
  const id = await publish(B, { type: 'system.maintenance.scheduled', data: { at: '02:00' } })
  for (const c of subs) t.match((await c.next(eventWithId(id))).payload, { id, type: 'system.maintenance.scheduled', data: { at: '02:00' } })
  t.notOk((await subs[0]!.next(eventWithId(id))).payload.userId, 'a broadcast carries no user')

  const n = await C.api('/api/notifications/broadcast', { body: { level: 'info', title: 'Hello', message: 'everyone' } })
  t.equal(n.status, 202)
  for (const c of [...subs, notSubscribed]) {
    const f = await c.next((f) => f.type === 'notification' && f.payload.id === n.body.id)
    t.match(f.payload, { level: 'info', title: 'Hello', message: 'everyone' }, 'notifications need no subscription')
  }
  const sentinel = await publish(B, { type: 'authentication.sentinel', userId: other })
  await notSubscribed.next(eventWithId(sentinel))
  t.equal(notSubscribed.frames.filter(eventWithId(id)).length, 0, 'a user not subscribed to system.* does not get it')
})

t.test('an admin on C receives user events published on A and B', { timeout: 15_000 }, async (t) => {
  const onC = await admin(t, C, ['authentication.*', 'security.*'])
  // Neither user is connected anywhere: admins still see their events.
  const fromA = await publish(A, { type: 'authentication.login.failure', userId: user('p'), data: { reason: 'bad password' } })
  const fromB = await publish(B, { type: 'security.mfa.enabled', userId: user('q') })
  const ignored = await publish(B, { type: 'session.created', userId: user('q') })
  const last = await publish(B, { type: 'security.sentinel', userId: user('q') })
  t.match((await onC.next(eventWithId(fromA))).payload, { type: 'authentication.login.failure', data: { reason: 'bad password' } })
  t.match((await onC.next(eventWithId(fromB))).payload, { type: 'security.mfa.enabled' })
  await onC.next(eventWithId(last))
  t.equal(onC.frames.filter(eventWithId(ignored)).length, 0, 'only what the admin subscribed to')
})

t.test('admin get_stats counts every node and every connection', { timeout: 15_000 }, async (t) => {
  // 2 user connections on A, 1 on B, the admin on C.
  await events(t, A, user('st'), null)
  await events(t, A, user('st'), null)
  await events(t, B, user('st'), null)
  const onC = await admin(t, C, null)
  const real = async (): Promise<number> => {
    const per = await Promise.all(nodes.map(async (n) => (await n.api('/api/stats')).body.server.connections.total as number))
    return per.reduce((a, b) => a + b, 0)
  }
  // Other nodes' counts travel with their heartbeats (NODE_TTL / 3), so wait for them.
  const expected = { [A.serverId]: 2, [B.serverId]: 1, [C.serverId]: 1 }
  const perNode = (p: any): Record<string, number> => Object.fromEntries(p.global.nodes.map((n: { serverId: string, connections: number }) => [n.serverId, n.connections]))
  const stats = await waitFor('global stats to show 2+1+1 connections', async () => (await onC.request('get_stats')).payload,
    (p) => names.every((id) => perNode(p)[id] === expected[id]), { timeoutMs: 5000, intervalMs: 100 })
  t.equal(await real(), 4, 'the nodes themselves hold 4 connections')
  t.equal(stats.global.servers, 3)
  t.same(stats.global.nodes.map((n: { serverId: string }) => n.serverId).sort(), [...names].sort())
  // Each row says where the node is, what it runs, and since when.
  const { version } = JSON.parse(await (await import('node:fs/promises')).readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }
  for (const n of nodes) {
    const row = stats.global.nodes.find((r: { serverId: string }) => r.serverId === n.serverId)
    t.match(row, { address: `127.0.0.1:${n.port}`, version, draining: false }, `${n.serverId}: address, version`)
    t.ok(row.uptime >= 0 && Date.parse(row.lastHeartbeat) <= Date.now(), `${n.serverId}: uptime and last heartbeat`)
  }
  t.same(stats.global.connections, { events: 3, admin: 1, total: 4 })
  t.equal(stats.server.serverId, C.serverId, 'server is the node answering')
  t.equal(stats.server.connections.total, 1)
  t.same(perNode(stats), expected)
})

t.test('metrics pushed to an admin carry one row per node', { timeout: 15_000 }, async (t) => {
  const onA = await admin(t, A, null)
  const first = await onA.next((f) => f.type === 'metrics', 3000)
  const i = onA.frames.indexOf(first)
  const second = await onA.next((f) => f.type === 'metrics', 3000, i + 1)
  for (const m of [first, second]) {
    t.equal(m.payload.server.serverId, A.serverId)
    t.equal(m.payload.global.servers, 3)
    t.same(m.payload.global.nodes.map((n: { serverId: string }) => n.serverId).sort(), [...names].sort(), 'one row per node')
  }
  t.ok(Date.parse(second.payload.timestamp) > Date.parse(first.payload.timestamp), 'pushed repeatedly')
  t.equal(onA.frames.filter((f) => f.id !== undefined).length, 0, 'pushes are not replies')
})

/** Names of Redis clients holding pattern subscriptions, except the Socket.IO adapter's. */
async function patternSubscribers (): Promise<string[]> {
  const list = await rc.call('CLIENT', 'LIST') as string
  return list.split('\n').filter((l) => /\bpsub=[1-9]/.test(l)).map((l) => /\bname=(\S*)/.exec(l)?.[1] ?? '').filter((n) => n !== 'herald-sio')
}

t.test('a node subscribes in Redis only to what its connections can receive', { timeout: 20_000 }, async (t) => {
  t.same(await patternSubscribers(), [], 'no Herald connection pattern-subscribes (only the Socket.IO adapter does, on its own channels)')
  t.equal(await numsub(BROADCAST_CHANNEL), 3, 'every node hears broadcasts')

  const u = user('ns')
  const ch = userChannel(u)
  t.equal(await numsub(ch), 0, 'nobody listens for a user with no connection')
  const a1 = await events(t, A, u, null)
  t.equal(await numsub(ch), 1, 'one node holds the user (subscribed before welcome)')
  const a2 = await events(t, A, u, null)
  t.equal(await numsub(ch), 1, 'a second connection on the same node adds no subscription')
  const b1 = await events(t, B, u, null)
  t.equal(await numsub(ch), 2, 'connected on two nodes')
  await b1.close()
  await waitFor('B to drop the user channel', () => numsub(ch), (n) => n === 1)
  await a1.close()
  t.equal(await numsub(ch), 1, 'A keeps it while one connection remains')
  await a2.close()
  await waitFor('A to drop the user channel', () => numsub(ch), (n) => n === 0)

  // Admin connections of earlier tests are closing; no node listens on the admin channel without one.
  await waitFor('no admin channel subscriptions', () => numsub(ADMIN_CHANNEL), (n) => n === 0)
  const adminB = await admin(t, B, null)
  t.equal(await numsub(ADMIN_CHANNEL), 1, 'only the node with an admin listens on the admin channel')
  const adminB2 = await admin(t, B, null)
  const adminC = await admin(t, C, null)
  t.equal(await numsub(ADMIN_CHANNEL), 2, 'one subscription per node with admins')
  await adminC.close()
  await waitFor('C to drop the admin channel', () => numsub(ADMIN_CHANNEL), (n) => n === 1)
  await Promise.all([adminB.close(), adminB2.close()])
  await waitFor('B to drop the admin channel', () => numsub(ADMIN_CHANNEL), (n) => n === 0)
  t.same(await patternSubscribers(), [], 'still no pattern subscriptions')
})

t.test('a node killed with SIGKILL leaves global.servers within NODE_TTL', { timeout: 20_000 }, async (t) => {
  const D = await startNode({ REDIS_URL: redis.url, SERVER_ID: `node-d-${process.pid}`, ...CLUSTER_ENV })
  t.teardown(() => D.stop())
  const u = user('on-d')
  await events(t, D, u, null)
  const servers = async (): Promise<{ servers: number, connections: number }> => {
    const g = (await A.api('/api/stats')).body.global
    return { servers: g.servers, connections: g.connections.total }
  }
  await waitFor('A to see D and its connection', servers, (s) => s.servers === 4 && s.connections >= 1, { timeoutMs: 5000 })
  const withD = (await servers()).connections
  t.equal(await numsub(userChannel(u)), 1)

  const killedAt = Date.now()
  await D.stop('SIGKILL')
  const after = await waitFor('D to drop out', servers, (s) => s.servers === 3, { timeoutMs: NODE_TTL + 2000, intervalMs: 50 })
  const elapsed = Date.now() - killedAt
  t.ok(elapsed <= NODE_TTL + 500, `gone after ${elapsed} ms (NODE_TTL ${NODE_TTL})`)
  t.equal(after.connections, withD - 1, "D's connection no longer counts")
  t.notOk((await A.api('/api/stats')).body.global.nodes.some((n: { serverId: string }) => n.serverId === D.serverId))
  t.equal(await numsub(userChannel(u)), 0, "Redis dropped the dead node's subscriptions")
})
