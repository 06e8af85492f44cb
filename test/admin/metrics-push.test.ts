// What an admin's `metrics` push says about the cluster, on three node
// processes sharing a private Redis: every node's row with its state,
// transports and activity (delivery latency percentiles computed on that
// node, disconnects by close code, limit hits, auth failures by reason), the
// leaderboards counted per minute in Redis, and a killed node: unreachable,
// then lapsed, then reclaimed and gone.
import t from 'tap'
import { io as sio } from 'socket.io-client'
import { connect, refusal, type Frame, type TestClient } from '../helpers/client.js'
import type { NodeProc } from '../helpers/node.js'
import { opsCluster } from '../helpers/ops.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const NODE_TTL = 3000
const cl = await opsCluster(t, { NODE_TTL: String(NODE_TTL), ADMIN_METRICS_INTERVAL: '200', MAX_CONNECTIONS_PER_USER: '2' }, ['push-a', 'push-b', 'push-c'])
const [A, B, C] = cl.nodes as [NodeProc, NodeProc, NodeProc]

const ops = await connect(`${A.ws}/ws/admin`, { token: adminToken('push-ops') })
t.teardown(() => ops.close())
const clients: TestClient[] = []
t.teardown(() => Promise.all(clients.map(async (c) => await c.close())))

async function user (node: NodeProc, id: string): Promise<TestClient> {
  const c = await connect(`${node.ws}/ws/events`, { token: userToken(id) })
  clients.push(c)
  await c.subscribe(['*'])
  return c
}

/** The next push whose figures satisfy `ok`. */
async function push (what: string, ok: (m: any) => boolean, timeoutMs = 10_000): Promise<any> {
  const from = ops.frames.length
  return (await ops.next((f: Frame) => f.type === 'metrics' && ok(f.payload), timeoutMs, from).catch((err: Error) => {
    const last = ops.frames.filter((f) => f.type === 'metrics').at(-1)
    throw new Error(`${what}: ${err.message}; last push: ${JSON.stringify(last?.payload).slice(0, 3000)}`)
  })).payload
}
const row = (m: any, node: NodeProc): any => m.global?.nodes.find((n: any) => n.serverId === node.serverId)

t.test('every node\'s row: state, transports, and the latency percentiles of its own deliveries', async (t) => {
  const m0 = await push('three ready rows', (m) => m.global?.nodes.length === 3 && m.global.nodes.every((n: any) => n.state === 'ready'))
  t.same(m0.global.lapsed, [], 'nothing lapsed')
  t.same(m0.server.serverId, A.serverId)
  t.equal(m0.server.ready, true)
  t.match(row(m0, B), { transports: { ws: 0, socketio: 0 }, activity: { latencyMs: { p50: null, p99: null, samples: 0 } } }, 'B before any connection or delivery')

  // A raw WebSocket and a Socket.IO client on B, each receiving events published through C.
  const ws = await user(B, 'push-ws')
  const s = sio(B.http, { auth: { token: userToken('push-sio') }, transports: ['websocket'], reconnection: false })
  t.teardown(() => { s.close() })
  await new Promise<void>((resolve, reject) => { s.once('welcome', () => resolve()); s.once('connect_error', reject) })
  await new Promise<void>((resolve) => s.emit('subscribe', { eventTypes: ['*'] }, () => resolve()))
  for (let i = 0; i < 20; i++) {
    const r = await C.api('/api/events', { body: { type: 'push.tick', userId: 'push-ws', data: { i } } })
    await ws.next((f) => f.type === 'event' && f.payload.id === r.body.id)
  }
  const m = await push('B\'s row with two transports and its deliveries', (m) => row(m, B)?.transports.socketio === 1 && row(m, B)?.activity?.latencyMs.samples >= 20)
  const b = row(m, B)
  t.same(b.transports, { ws: 1, socketio: 1 }, 'one connection on each transport')
  t.equal(b.connections, 2)
  const lat = b.activity.latencyMs
  t.ok(typeof lat.p50 === 'number' && typeof lat.p99 === 'number' && lat.p50 >= 0 && lat.p99 >= lat.p50, `B's own p50 ${lat.p50} ms, p99 ${lat.p99} ms over ${lat.samples} deliveries`)
  t.equal(row(m, C).activity.latencyMs.samples, 0, 'C published but delivered nothing: no latency of its own')
})

t.test('disconnects by code, limit hits and auth failures, on the node that saw them', async (t) => {
  // On C: a refused token and a missing role (auth failures), a user over its limit of 2 (limit hit).
  await refusal(`${C.ws}/ws/events?token=not-a-jwt`)
  await refusal(`${C.ws}/ws/admin?token=${userToken('push-nobody')}`)
  await user(C, 'push-many')
  await user(C, 'push-many')
  const over = await refusal(`${C.ws}/ws/events?token=${userToken('push-many')}`)
  t.equal(over.status, 429)
  // On B: an operator disconnect (4003) and a revocation (4004).
  const d = await user(B, 'push-gone')
  const r = await user(B, 'push-revoked')
  await ops.request('disconnect', { userId: 'push-gone' })
  await ops.request('revoke_user', { userId: 'push-revoked' })
  t.equal((await d.closed).code, 4003)
  t.equal((await r.closed).code, 4004)
  const m = await push('the counts on C and B', (m) => row(m, C)?.activity.limitHits['connection-user'] >= 1 && row(m, B)?.activity.disconnects['4004'] >= 1)
  const c = row(m, C).activity
  t.equal(c.authFailures.TOKEN_INVALID, 1, 'C: TOKEN_INVALID')
  t.equal(c.authFailures.ROLE_FORBIDDEN, 1, 'C: ROLE_FORBIDDEN')
  t.equal(c.limitHits['connection-user'], 1, 'C: one connection-user limit hit')
  const b = row(m, B).activity
  t.equal(b.disconnects['4003'], 1, 'B: one 4003')
  t.equal(b.disconnects['4004'], 1, 'B: one 4004')
  t.same(row(m, A).activity.authFailures, {}, 'A saw none of it')
})

t.test('the leaderboards: users by connections opened and event types by events published, across nodes', { timeout: 30_000 }, async (t) => {
  // Two connections (the limit) on two nodes, and another user's on the third.
  await user(A, 'push-top-user')
  await user(B, 'push-top-user')
  await user(C, 'push-top-other')
  // Four kinds of event, through every node; `top.first` leads.
  for (const [type, n] of [['top.first', 9], ['top.second', 5], ['top.third', 2]] as const) {
    for (let i = 0; i < n; i++) await [A, B, C][i % 3]!.api('/api/events', { body: { type } })
  }
  const m = await push('the leaders (each node adds its counts every 5 s)', (m) => m.top?.eventTypes.some((e: any) => e.name === 'top.first' && e.count === 9) && m.top.users.some((u: any) => u.name === 'push-top-user' && u.count === 2), 20_000)
  t.equal(m.top.windowMinutes, 5)
  const types = m.top.eventTypes.filter((e: any) => e.name.startsWith('top.'))
  t.same(types, [{ name: 'top.first', count: 9 }, { name: 'top.second', count: 5 }, { name: 'top.third', count: 2 }], 'counted on three nodes, summed, highest first')
  t.match(m.top.users.find((u: any) => u.name === 'push-top-user'), { count: 2 }, 'a user with a connection on each of two nodes: 2 opened')
  t.match(m.top.users.find((u: any) => u.name === 'push-top-other'), { count: 1 })
  t.ok(m.top.users.length <= 10 && m.top.eventTypes.length <= 10, 'ten at most')
  const keys = await cl.rc.keys('herald:{top:*')
  t.ok(keys.length >= 2 && keys.every((k) => /^herald:\{top:(users|events)\}:\d+$/.test(k)), `per-minute keys only (${keys.join(', ')})`)
  for (const k of keys) {
    const ttl = await cl.rc.pttl(k)
    t.ok(ttl > 0 && ttl <= 15 * 60_000, `${k} expires (${ttl} ms)`)
  }
})

t.test('a killed node: unreachable once it missed two heartbeats, lapsed, then reclaimed and gone', { timeout: 30_000 }, async (t) => {
  await C.stop('SIGKILL')
  const killedAt = Date.now()
  const m1 = await push('C unreachable', (m) => row(m, C)?.state === 'unreachable' || m.global?.lapsed.includes(C.serverId))
  t.pass(`C shown unreachable ${Date.now() - killedAt} ms after the kill${row(m1, C) !== undefined ? ' (heartbeat overdue, still in the registry)' : ' (lapsed)'}`)
  t.ok(Date.now() - killedAt <= NODE_TTL + 1000, 'no later than its entry lapses')
  t.equal(row(m1, A).state, 'ready')
  t.equal(row(m1, B).state, 'ready')
  const gone = await push('C reclaimed', (m) => row(m, C) === undefined && !m.global.lapsed.includes(C.serverId), 15_000)
  t.same(gone.global.nodes.map((n: any) => n.serverId).sort(), [A.serverId, B.serverId].sort(), 'two nodes left')
  await waitFor('the reclaim in a log', () => A.lines.concat(B.lines).some((l) => l.includes('reclaimed a dead node') && l.includes(C.serverId)))
})
