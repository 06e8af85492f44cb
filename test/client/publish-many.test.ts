// publishMany() of the publisher library, as a service uses it: over a node's
// HTTP API (POST /api/events/batch, 500 a request) and straight onto Redis
// (standalone and Cluster) through the node's own batch path. Every event
// gets its receipt or its refusal, in order; users receive what was theirs,
// in order; a refused event holds back none of the others.
import { Cluster, Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { BATCH_EVENTS, HeraldPublisher, PublishError, type EventToPublish, type Receipt } from '../../src/client/publisher.js'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect, type TestClient } from '../helpers/client.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'
import { startRedis, type RedisServer } from '../helpers/redis.js'
import { TEST_API_KEY, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

async function ready (node: RunningApp): Promise<void> {
  await waitFor('the node ready', async () => (await node.api('/ws/health', { key: '' })).status, (s) => s === 200, { timeoutMs: 15_000 })
}

const deep = (levels: number): Record<string, unknown> => { let v: Record<string, unknown> = {}; for (let i = 0; i < levels; i++) v = { v }; return v }

/** n events for `users` users in turn, each carrying its index. */
const many = (n: number, users: string[]): EventToPublish[] => Array.from({ length: n }, (_, i) => ({ type: 'billing.item.added', userId: users[i % users.length]!, data: { i } }))

/** Per user, the offsets its receipts got, in the order sent: 1, 2, 3… when the batch kept its order. */
function offsetsByUser (events: EventToPublish[], results: Array<Receipt | PublishError>): Map<string, number[]> {
  const out = new Map<string, number[]>()
  events.forEach((e, i) => {
    const r = results[i]!
    if (r instanceof PublishError) return
    const list = out.get(e.userId!) ?? []
    list.push(r.offset!)
    out.set(e.userId!, list)
  })
  return out
}

/** A node on a private Redis, and `userId` connected to it, subscribed to billing.*. */
async function onRedis (t: Test, userId: string): Promise<{ redis: RedisServer, node: RunningApp, user: TestClient }> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startApp({ REDIS_URL: redis.url, HEALTH_PROBE_INTERVAL: '200' })
  t.teardown(() => node.close())
  await ready(node)
  const user = await connect(`${node.ws}/ws/events`, { token: userToken(userId) })
  t.teardown(() => user.close())
  await user.subscribe(['billing.*'])
  return { redis, node, user }
}

t.test('over HTTP: more than one request\'s worth, in order; refused events answered in their places', { timeout: 60_000 }, async (t) => {
  const { node, user: alice } = await onRedis(t, 'many-alice')
  const p = new HeraldPublisher({ url: node.http, apiKey: TEST_API_KEY })
  t.teardown(() => p.close())

  const events = many(BATCH_EVENTS * 2 + 3, ['many-alice', 'many-bob', 'many-carol'])
  events[7] = { type: 'Not A Type', userId: 'many-alice' }
  events[600] = { type: 'billing.item.added', userId: 'many-alice', data: deep(50) }
  const results = await p.publishMany(events)
  t.equal(results.length, events.length, 'one result per event')
  t.match(results[7], { name: 'PublishError', status: 400, code: 'VALIDATION' }, 'a bad type: refused by the node, in its place')
  t.match(results[600], { name: 'PublishError', status: 400, code: 'DATA_TOO_DEEP' }, 'too deep: refused before it leaves (it could not be serialised)')
  const refused = results.filter((r) => r instanceof PublishError).length
  t.equal(refused, 2, 'every other event published')
  const byUser = offsetsByUser(events, results)
  for (const [user, offsets] of byUser) t.same(offsets, offsets.map((_, i) => i + 1), `${user}: offsets in the order sent, across the three requests`)

  const mine = events.map((e, i) => [e, results[i]!] as const).filter(([e, r]) => e.userId === 'many-alice' && !(r instanceof PublishError)).map(([, r]) => (r as Receipt).id)
  const got = await alice.collect((f) => f.type === 'event', mine.length, 20_000)
  t.same(got.map((f) => f.payload.id), mine, 'alice received hers, in order')

  const wrong = new HeraldPublisher({ url: node.http, apiKey: 'not-the-key-but-long-enough' })
  t.teardown(() => wrong.close())
  await t.rejects(wrong.publishMany(many(3, ['many-alice'])), { name: 'PublishError', status: 401, code: 'CREDENTIAL_INVALID' }, 'a request refused as a whole rejects')
  t.same(await p.publishMany([]), [], 'nothing to publish: nothing sent')
})

t.test('straight onto Redis: the node\'s batch path, its appends in a handful of script calls', { timeout: 60_000 }, async (t) => {
  const { redis, user: bob } = await onRedis(t, 'direct-bob')
  const client = new Redis(redis.url)
  t.teardown(() => client.disconnect())
  const p = new HeraldPublisher({ redis: client })
  t.teardown(() => p.close())
  await p.publish('system.warm') // the script loaded, the endpoints read

  const calls = async (): Promise<number> => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await redis.client().info('commandstats'))?.[1] ?? 0)
  const before = await calls()
  const events = many(300, ['direct-bob', 'direct-dan'])
  events[10] = { type: 'billing.item.added', userId: 'x'.repeat(300) }
  const results = await p.publishMany(events)
  t.equal(await calls() - before, 5, '299 appends in 5 script calls (64 each), sent together')
  t.match(results[10], { name: 'PublishError', status: 400, code: 'VALIDATION' })
  for (const [user, offsets] of offsetsByUser(events, results)) t.same(offsets, offsets.map((_, i) => i + 1), `${user}: in order`)
  const bobs = events.map((e, i) => [e, results[i]!] as const).filter(([e, r]) => e.userId === 'direct-bob' && !(r instanceof PublishError)).map(([, r]) => (r as Receipt).id)
  const got = await bob.collect((f) => f.type === 'event', bobs.length, 20_000)
  t.same(got.map((f) => f.payload.id), bobs, 'bob received his, in order, through the node')
})

t.test('straight onto a Redis Cluster: appends grouped by hash slot, each user\'s in order', { timeout: 120_000 }, async (t) => {
  const rc = await startRedisCluster(3)
  t.teardown(() => rc.stop())
  const node = await startApp({ REDIS_CLUSTER_NODES: rc.nodes, HEALTH_PROBE_INTERVAL: '200' })
  t.teardown(() => node.close())
  await ready(node)
  const users = Array.from({ length: 8 }, (_, i) => `slot-user-${i}`)
  const erin = await connect(`${node.ws}/ws/events`, { token: userToken(users[0]!) })
  t.teardown(() => erin.close())
  await erin.subscribe(['billing.*'])
  const client = new Cluster(rc.nodes.split(',').map((hp) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) })))
  t.teardown(() => client.disconnect())
  const p = new HeraldPublisher({ redis: client })
  t.teardown(() => p.close())

  const events = many(200, users)
  const results = await p.publishMany(events)
  t.notOk(results.some((r) => r instanceof PublishError), 'all published')
  for (const [user, offsets] of offsetsByUser(events, results)) t.same(offsets, Array.from({ length: 25 }, (_, i) => i + 1), `${user}: 1-25 in order`)
  const hers = results.filter((_, i) => events[i]!.userId === users[0]).map((r) => (r as Receipt).id)
  const got = await erin.collect((f) => f.type === 'event', hers.length, 20_000)
  t.same(got.map((f) => f.payload.id), hers, 'the node delivered hers, in order')
})
