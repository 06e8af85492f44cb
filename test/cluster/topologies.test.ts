import t from 'tap'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect, refusal } from '../helpers/client.js'
import { Redis } from 'ioredis'
import { startNodes, type NodeProc } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { startRedisCluster, startSentinel } from '../helpers/redis-cluster.js'
import { sioConnect, type SioClient } from '../helpers/sio.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

t.test('three nodes over a 3-master Redis Cluster with sharded pub/sub', async (t) => {
  const rc = await startRedisCluster(3)
  t.teardown(() => rc.stop())
  const env = { REDIS_CLUSTER_NODES: rc.nodes, NODE_TTL: '3000', MAX_CONNECTIONS_PER_USER: '2' }
  const nodes = await startNodes(t, 3, env)
  const [a, b, c] = nodes as [typeof nodes[0], typeof nodes[0], typeof nodes[0]]

  // Users spread over nodes; their channels spread over shards.
  const users = Array.from({ length: 12 }, (_v, i) => `shard-user-${i}`)
  const clients = await Promise.all(users.map(async (u, i) => {
    const cl = await connect(`${nodes[i % 3]!.ws}/ws/events`, { token: userToken(u) })
    await cl.subscribe(['authentication.*', 'system.*'])
    return cl
  }))
  t.teardown(() => Promise.all(clients.map((cl) => cl.close())))
  const admin = await connect(`${c.ws}/ws/admin`, { token: adminToken() })
  t.teardown(() => admin.close())
  await admin.subscribe(['*'])

  for (const u of users) {
    const r = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u, data: { u } } })
    t.equal(r.status, 202)
  }
  for (const [i, cl] of clients.entries()) {
    const ev = await cl.next((f) => f.type === 'event' && f.payload.type === 'authentication.login.success')
    t.equal(ev.payload.userId, users[i], `user ${i} got exactly their own event`)
  }
  await admin.collect((f) => f.type === 'event' && f.payload.type === 'authentication.login.success', users.length)

  // A broadcast reaches users on every node.
  const sys = await b.api('/api/events', { body: { type: 'system.maintenance.scheduled', data: {} } })
  for (const cl of clients) await cl.next((f) => f.type === 'event' && f.payload.id === sys.body.id)

  // Sharded channels live on the master owning their slot: more than one shard is used.
  const perShard = await Promise.all(rc.ports.map(async (p) => (await rc.client(p).call('PUBSUB', 'SHARDCHANNELS', 'herald:{u:*') as string[]).length))
  t.equal(perShard.reduce((x, y) => x + y, 0), users.length, `every user channel is a sharded channel (${perShard.join('/')})`)
  t.ok(perShard.filter((n) => n > 0).length >= 2, 'user channels spread over at least two shards')
  const classic = await Promise.all(rc.ports.map(async (p) => (await rc.client(p).call('PUBSUB', 'CHANNELS', 'herald:*') as string[]).length))
  t.same(classic, [0, 0, 0], 'no classic (cluster-wide broadcast) channels')

  // Registry and stats work across shards.
  // Other nodes' counts arrive with their heartbeats (NODE_TTL/3).
  const stats = await waitFor('cluster stats settle', async () => (await admin.request('get_stats')).payload.global, (g) => g.servers === 3 && g.connections.events === users.length)
  t.equal(stats.servers, 3)
  t.equal(stats.connections.events, users.length)

  const listed = await admin.request('list_connections', { userId: users[0] })
  t.equal(listed.payload.connections.length, 1)
  await waitFor('health ready on all nodes', async () => await Promise.all(nodes.map(async (n) => (await n.api('/ws/health', { key: '' })).status)), (s) => s.every((x) => x === 200))

  // Cluster-wide limits hold on Redis Cluster too, and a dead node's slots are reclaimed.
  const L = 'shard-limited'
  const onA = await connect(`${a.ws}/ws/events`, { token: userToken(L) })
  const onC = await connect(`${c.ws}/ws/events`, { token: userToken(L) })
  t.teardown(() => Promise.all([onA.close(), onC.close()]))
  t.match(await refusal(`${b.ws}/ws/events?token=${userToken(L)}`), { status: 429, body: { error: { code: 'CONNECTION_LIMIT' } } }, 'a third connection of the user is refused on the third node')
  const killedAt = Date.now()
  await c.stop('SIGKILL')
  const again = await waitFor('the dead node\'s slot to be reclaimed', async () => {
    try { return await connect(`${b.ws}/ws/events`, { token: userToken(L) }) } catch { return null }
  }, (x) => x !== null, { timeoutMs: 10_000, intervalMs: 250 })
  t.teardown(() => again!.close())
  t.comment(`MEASURED reclaim on Redis Cluster: ${Date.now() - killedAt} ms (NODE_TTL 3000)`)
  t.equal(again!.frames[0]?.type, 'welcome', 'the user connects again once the dead node is reclaimed')
  t.match(await refusal(`${a.ws}/ws/events?token=${userToken(L)}`), { status: 429 }, 'and is at its limit again')
})

t.test('Socket.IO over Redis Cluster: events across nodes, and the sharded adapter\'s rooms with one static subscription set per node', { timeout: 60_000 }, async (t) => {
  const rc = await startRedisCluster(3)
  t.teardown(() => rc.stop())
  // In process, so the test can call the adapter the way application code does.
  const env = { REDIS_CLUSTER_NODES: rc.nodes, NODE_TTL: '3000' }
  const apps: RunningApp[] = []
  t.teardown(() => Promise.all(apps.map((a) => a.close())))
  for (const x of ['a', 'b']) apps.push(await startApp({ ...env, SERVER_ID: `sio-rc-${x}-${process.pid}` }))
  const [a, b] = apps as [RunningApp, RunningApp]

  const users = Array.from({ length: 6 }, (_v, i) => `sio-shard-user-${i}`)
  const clients: SioClient[] = []
  t.teardown(() => { for (const c of clients) c.close() })
  for (const [i, u] of users.entries()) {
    const { client, welcome } = await sioConnect((i % 2 === 0 ? b : a).http, { transports: ['websocket'], auth: { token: userToken(u) } })
    clients.push(client)
    t.equal(welcome.userId, u)
    await client.subscribe(['authentication.*'])
  }
  const onB = clients.filter((_c, i) => i % 2 === 0)

  // Herald's pipeline: published on A, delivered to the Socket.IO clients on B.
  for (const [i, u] of users.entries()) {
    if (i % 2 !== 0) continue
    const r = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u } })
    t.equal(r.status, 202)
    const ev = await clients[i]!.next((x) => x.event === 'event' && x.payload.id === r.body.id)
    t.equal(ev.payload.userId, u, `${u} on B got its event published on A`)
  }

  // The adapter on sharded pub/sub: a room emit on A reaches B's sockets of that user only.
  a.app.io.to(`user:${users[0]}`).emit('app.hello', { via: 'sharded' })
  t.same(await onB[0]!.nextOf('app.hello'), { via: 'sharded' }, 'io.to(user:<id>).emit on A reached the socket on B')
  a.app.io.to(`user:${users[2]}`).emit('app.marker', {})
  await onB[1]!.nextOf('app.marker')
  t.equal(onB[1]!.count((x) => x.event === 'app.hello'), 0, 'another user on B did not get it')
  const fetched = await a.app.io.in(`user:${users[4]}`).fetchSockets()
  t.same(fetched.map((s) => s.id), [onB[2]!.socket.id], 'fetchSockets on A finds the socket on B')

  // Static subscriptions: the namespace channel and one response channel per
  // node, never a channel per room (dynamic mode would add one per user).
  const shardChannels = (await Promise.all(rc.ports.map(async (p) => await rc.client(p).call('PUBSUB', 'SHARDCHANNELS', 'herald:sio*') as string[]))).flat().sort()
  t.equal(shardChannels.length, 3, `one shared and two response channels: ${shardChannels.join(' ')}`)
  t.notOk(shardChannels.some((c) => c.includes('user:')), 'no per-room (per-user) adapter subscription')
  t.same(shardChannels.filter((c) => c === 'herald:sio#/#'), ['herald:sio#/#'], 'the namespace channel')
})

t.test('three nodes through Sentinel, across a failover to the replica', { timeout: 90_000 }, async (t) => {
  const master = await startRedis()
  t.teardown(() => master.stop())
  const replica = await startRedis(['--replicaof', '127.0.0.1', String(master.port)])
  t.teardown(() => replica.stop())
  const sentinel = await startSentinel(master.port)
  t.teardown(() => sentinel.stop())
  const sc = new Redis({ host: '127.0.0.1', port: Number(sentinel.sentinels.split(':')[1]), enableReadyCheck: false, maxRetriesPerRequest: 1 })
  sc.on('error', () => {})
  t.teardown(() => sc.disconnect())
  // The sentinel learns of the replica from the master's INFO.
  await waitFor('the sentinel to know the replica', async () => await sc.call('SENTINEL', 'REPLICAS', sentinel.name) as unknown[], (r) => r.length === 1, { timeoutMs: 20_000, intervalMs: 200 })

  const env = { REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_NAME: sentinel.name, NODE_TTL: '3000', HEALTH_PROBE_INTERVAL: '300' }
  const nodes = await startNodes(t, 3, env)
  const [a, b, c] = nodes as [NodeProc, NodeProc, NodeProc]
  const cl = await connect(`${b.ws}/ws/events`, { token: userToken('sentinel-user') })
  t.teardown(() => cl.close())
  await cl.subscribe(['session.*'])
  const r = await a.api('/api/events', { body: { type: 'session.created', userId: 'sentinel-user' } })
  t.equal((await cl.next((f) => f.type === 'event' && f.payload.id === r.body.id)).payload.id, r.body.id, 'A -> B through the master')
  for (const n of nodes) t.match(await n.api('/ws/health', { key: '' }), { status: 200, body: { redisConnected: true } })
  // The nodes really talk to the master the Sentinel names.
  const [masterClient, replicaClient] = [master.client(), replica.client()]
  const onMaster = (await masterClient.call('CLIENT', 'LIST') as string).split('\n').filter((l) => l.includes('name=herald')).length
  t.ok(onMaster >= 9, `the three nodes hold their connections on the master (${onMaster})`)

  // Failover: the replica becomes the master, the old master its replica.
  const failedOverAt = Date.now()
  t.equal(await sc.call('SENTINEL', 'FAILOVER', sentinel.name), 'OK')
  await waitFor('the sentinel to name the replica', async () => await sc.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', sentinel.name) as string[], (x) => x[1] === String(replica.port), { timeoutMs: 20_000, intervalMs: 100 })
  // Every node follows: its writes (registry, limits) and pub/sub work on the new master.
  await waitFor('the nodes on the new master', async () => (await replicaClient.call('CLIENT', 'LIST') as string).split('\n').filter((l) => l.includes('name=herald')).length, (n) => n >= 9, { timeoutMs: 20_000, intervalMs: 200 })
  const afterR = await waitFor('delivery A -> B after the failover', async () => {
    const x = await a.api('/api/events', { body: { type: 'session.after', userId: 'sentinel-user' } })
    return x.status === 202 ? x.body.id as string : null
  }, (id) => id !== null, { timeoutMs: 20_000, intervalMs: 200 })
  await cl.next((f) => f.type === 'event' && f.payload.id === afterR, 10_000)
  t.comment(`MEASURED Sentinel failover: delivery back ${Date.now() - failedOverAt} ms after SENTINEL FAILOVER`)
  for (const n of nodes) await waitFor(`${n.serverId} ready`, async () => (await n.api('/ws/health', { key: '' })).status, (st) => st === 200, { timeoutMs: 10_000 })
  // New connections are admitted (limit scripts write to the new master), and the registry holds all three nodes.
  const fresh = await connect(`${c.ws}/ws/events`, { token: userToken('sentinel-fresh') })
  t.teardown(() => fresh.close())
  t.equal(fresh.frames[0]?.type, 'welcome', 'a new connection after the failover')
  t.equal(await replicaClient.zcard('herald:conn:u:sentinel-fresh'), 1, 'its slot is on the new master')
  await waitFor('three servers in the registry', async () => (await c.api('/api/stats')).body.global.servers, (n) => n === 3, { timeoutMs: 10_000 })
  t.equal(cl.closeInfo, null, 'the client on B never noticed')
})
