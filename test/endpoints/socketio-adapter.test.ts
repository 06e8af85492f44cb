// The Redis adapter's cross-node promises, from application code: three
// in-process nodes on one private Redis, Socket.IO clients on some of them,
// and io.to / fetchSockets / disconnectSockets called on another. Rooms are
// the ones Herald joins for every authenticated socket: `user:<userId>`.
import t, { type Test } from 'tap'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { startRedis } from '../helpers/redis.js'
import { sioConnect, type SioClient } from '../helpers/sio.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const redis = await startRedis()
const apps: RunningApp[] = []
t.teardown(async () => {
  await Promise.all(apps.map(async (a) => await a.close()))
  await redis.stop()
})
const pid = process.pid
for (const x of ['a', 'b', 'c']) apps.push(await startApp({ REDIS_URL: redis.url, SERVER_ID: `sio-adapter-${x}-${pid}`, NODE_TTL: '3000' }))
const [A, B, C] = apps as [RunningApp, RunningApp, RunningApp]

let uniq = 0
const user = (name: string): string => `${name}-${++uniq}`

async function sioOn (t: Test, node: RunningApp, userId: string): Promise<{ client: SioClient, welcome: any }> {
  const r = await sioConnect(node.http, { transports: ['websocket'], auth: { token: userToken(userId) } })
  t.teardown(() => r.client.close())
  return r
}

t.test('io.to(user:<id>).emit on A reaches that user\'s sockets on B and C, and nobody else', { timeout: 20_000 }, async (t) => {
  const u = user('emit')
  const other = user('bystander')
  const onB = await sioOn(t, B, u)
  const onC = await sioOn(t, C, u)
  const otherOnB = await sioOn(t, B, other)
  t.equal(onB.welcome.serverId, B.app.herald.config.serverId)
  t.equal(A.app.io.of('/').sockets.size, 0, 'A holds no socket of its own: whatever arrives went through Redis')

  A.app.io.to(`user:${u}`).emit('app.hello', { from: 'A', n: 1 })
  t.same(await onB.client.nextOf('app.hello'), { from: 'A', n: 1 }, 'the socket on B got it')
  t.same(await onC.client.nextOf('app.hello'), { from: 'A', n: 1 }, 'the socket on C got it')
  // A marker to the bystander, sent after: once it arrived, the first emit would have too.
  A.app.io.to(`user:${other}`).emit('app.marker', {})
  await otherOnB.client.nextOf('app.marker')
  t.equal(otherOnB.client.count((r) => r.event === 'app.hello'), 0, 'another user on the same node did not')
  t.equal(onB.client.count((r) => r.event === 'app.hello'), 1, 'once')
})

t.test('io.in(user:<id>).fetchSockets() on A sees the user\'s sockets on B and C', { timeout: 20_000 }, async (t) => {
  const u = user('fetch')
  const onB = await sioOn(t, B, u)
  const onC = await sioOn(t, C, u)
  await sioOn(t, B, user('bystander'))
  const remote = await A.app.io.in(`user:${u}`).fetchSockets()
  t.same(remote.map((s) => s.id).sort(), [onB.client.socket.id, onC.client.socket.id].sort(), 'exactly the user\'s two sockets')
  for (const s of remote) t.ok(s.rooms.has(`user:${u}`), 'in the user room')
  const all = await A.app.io.fetchSockets()
  t.ok(all.length >= 3, 'the whole namespace spans the nodes too')
})

t.test('io.in(user:<id>).disconnectSockets(true) on A disconnects the user on B; others stay', { timeout: 20_000 }, async (t) => {
  const u = user('kick')
  const other = user('stays')
  const onB = await sioOn(t, B, u)
  const otherOnB = await sioOn(t, B, other)
  const bHeld = (): number => [...B.app.herald.connections.values()].filter((c) => c.userId === u).length
  t.equal(bHeld(), 1)

  A.app.io.in(`user:${u}`).disconnectSockets(true)
  const gone = await onB.client.disconnected(1, 5000)
  t.equal(gone.reason, 'io server disconnect', 'a server disconnect: socket.io-client does not come back by itself')
  t.equal(onB.client.socket.active, false)
  await waitFor('B released the connection', bHeld, (n) => n === 0)
  // And out of the cluster-wide registry.
  await waitFor('the registry forgets it', async () => (await A.api(`/api/users/${u}/connections`)).body.connections?.length, (n) => n === 0)
  t.ok(otherOnB.client.socket.connected, 'the other user on B is still connected')
  t.equal((await otherOnB.client.request('ping')).type, 'pong')
  t.same(otherOnB.client.disconnects, [])
  await within(5000, 'nothing left in the room', waitFor('empty room', async () => (await A.app.io.in(`user:${u}`).fetchSockets()).length, (n) => n === 0))
})

t.test('stats count Socket.IO sockets from registry rows: no fetchSockets, no token on the bus', { timeout: 20_000 }, async (t) => {
  // Everything on the adapter's channels while stats are asked for.
  const bus = redis.client()
  const seen: string[] = []
  bus.on('pmessageBuffer', (_p: Buffer, _c: Buffer, m: Buffer) => { seen.push(m.toString('latin1')) })
  await bus.psubscribe('herald:sio*')
  t.teardown(() => bus.disconnect())
  const fetches: string[] = []
  for (const a of apps) {
    const adapter = a.app.io.of('/').adapter as unknown as { fetchSockets: (...args: unknown[]) => Promise<unknown[]> }
    const original = adapter.fetchSockets.bind(adapter)
    adapter.fetchSockets = async (...args) => { fetches.push(a.app.herald.config.serverId); return await original(...args) }
    t.teardown(() => { adapter.fetchSockets = original })
  }

  // Earlier tests' sockets are gone once every node's next heartbeat said so.
  await waitFor('no Socket.IO socket left in the stats', async () => (await A.api('/api/stats')).body.global.socketio?.sockets, (n) => n === 0, { timeoutMs: 5000, intervalMs: 100 })
  const tokens: string[] = []
  const open = async (node: RunningApp): Promise<void> => {
    const u = user('counted')
    tokens.push(userToken(u))
    const r = await sioConnect(node.http, { transports: ['websocket'], auth: { token: tokens.at(-1)! } })
    t.teardown(() => r.client.close())
  }
  await open(B)
  await open(B)
  await open(C)
  const raw = await connect(`${C.ws}/ws/events`, { token: userToken(user('raw')) })
  t.teardown(() => raw.close())
  const rowIn = (b: any, n: RunningApp): any => b.global.nodes.find((x: any) => x.serverId === n.app.herald.config.serverId)
  // Both conditions: C's heartbeat may have come between its Socket.IO and its raw connect.
  const stats = await waitFor('3 Socket.IO sockets and C\'s raw connection in the cluster stats', async () => (await A.api('/api/stats')).body,
    (b) => b.global.socketio?.sockets === 3 && rowIn(b, C)?.connections === 2, { timeoutMs: 5000, intervalMs: 100 })
  const row = (n: RunningApp): any => rowIn(stats, n)
  t.same([row(A).socketio, row(B).socketio, row(C).socketio], [0, 2, 1], 'per node rows: none on A, 2 on B, 1 on C')
  t.equal(row(C).connections, 2, 'C\'s raw WebSocket is a connection, not a Socket.IO socket')

  t.same(fetches, [], 'no node ran fetchSockets to answer stats')
  const leaked = seen.filter((m) => tokens.some((tok) => m.includes(tok)))
  t.same(leaked, [], 'no JWT crossed Redis on the adapter channels')
})
