import t from 'tap'
import { connect } from '../helpers/client.js'
import { startNode } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { startRedisCluster, startSentinel } from '../helpers/redis-cluster.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

t.test('three nodes over a 3-master Redis Cluster with sharded pub/sub', async (t) => {
  const rc = await startRedisCluster(3)
  t.teardown(() => rc.stop())
  const env = { REDIS_CLUSTER_NODES: rc.nodes, NODE_TTL: '3000' }
  const nodes = await Promise.all([startNode(env), startNode(env), startNode(env)])
  t.teardown(() => Promise.all(nodes.map((n) => n.stop())))
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
  const perShard = await Promise.all(rc.ports.map(async (p) => (await rc.client(p).call('PUBSUB', 'SHARDCHANNELS', 'herald:u:*') as string[]).length))
  t.equal(perShard.reduce((x, y) => x + y, 0), users.length, `every user channel is a sharded channel (${perShard.join('/')})`)
  t.ok(perShard.filter((n) => n > 0).length >= 2, 'user channels spread over at least two shards')
  const classic = await Promise.all(rc.ports.map(async (p) => (await rc.client(p).call('PUBSUB', 'CHANNELS', 'herald:*') as string[]).length))
  t.same(classic, [0, 0, 0], 'no classic (cluster-wide broadcast) channels')

  // Registry and stats work across shards.
  // Other nodes' counts arrive with their heartbeats (NODE_TTL/3).
  const stats = await waitFor('cluster stats settle', async () => (await admin.request('get_stats')).payload.global, (g) => g.servers === 3 && g.connections.events === users.length)
  t.equal(stats.servers, 3)
  t.equal(stats.connections.events, users.length)

  // Cluster-wide limits hold on Redis Cluster too.
  const listed = await admin.request('list_connections', { userId: users[0] })
  t.equal(listed.payload.connections.length, 1)
  await waitFor('health ready on all nodes', async () => await Promise.all(nodes.map(async (n) => (await n.api('/ws/health', { key: '' })).status)), (s) => s.every((x) => x === 200))
})

t.test('a node reaches Redis through Sentinel', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const sentinel = await startSentinel(redis.port)
  t.teardown(() => sentinel.stop())
  const env = { REDIS_SENTINELS: sentinel.sentinels, REDIS_SENTINEL_NAME: sentinel.name }
  const [a, b] = await Promise.all([startNode(env), startNode(env)])
  t.teardown(() => Promise.all([a.stop(), b.stop()]))
  const cl = await connect(`${b.ws}/ws/events`, { token: userToken('sentinel-user') })
  t.teardown(() => cl.close())
  await cl.subscribe(['session.*'])
  const r = await a.api('/api/events', { body: { type: 'session.created', userId: 'sentinel-user' } })
  t.equal((await cl.nextOfType('event')).payload.id, r.body.id)
  const h = await a.api('/ws/health', { key: '' })
  t.equal(h.status, 200)
  t.equal(h.body.redisConnected, true)
  // The node really talks to the master the Sentinel names.
  const clients = await redis.client().call('CLIENT', 'LIST') as string
  t.ok(clients.split('\n').filter((l) => l.includes('name=herald')).length >= 4, 'both nodes hold their connections on the master')
})
