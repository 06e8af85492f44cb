// POST /api/events/batch as a service uses it, on a node over memory, a
// standalone Redis and a Redis Cluster: each event is published as POST
// /api/events would publish it (its stream and position, the user's and the
// admin's WebSockets, its webhook jobs, history), answered in order; a bad
// event is refused in its place while the others go out; a batch past the
// limits is refused whole, with nothing published.
import { Redis } from 'ioredis'
import t, { type Test } from 'tap'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { startReceiver } from '../helpers/receiver.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const LOOPBACK = { WEBHOOK_ALLOW_PRIVATE: '127.0.0.0/8', WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_RETRY_BASE: '1' }

async function ready (node: RunningApp): Promise<void> {
  await waitFor('the node ready', async () => (await node.api('/ws/health', { key: '' })).status, (s) => s === 200, { timeoutMs: 15_000 })
}

/** Nested `levels` deep: past the 32 allowed. */
const deep = (levels: number): unknown => { let v: unknown = {}; for (let i = 0; i < levels; i++) v = { v }; return v }

async function behaves (t: Test, env: Record<string, string>): Promise<void> {
  const node = await startApp({ ...LOOPBACK, ...env })
  t.teardown(() => node.close())
  await ready(node)
  const rx = await startReceiver(t)
  const hook = await node.api('/api/webhooks', { body: { url: rx.url, eventTypes: ['billing.*'] } })
  t.equal(hook.status, 201, 'a webhook endpoint for billing.*')
  const alice = await connect(`${node.ws}/ws/events`, { token: userToken('batch-alice') })
  const bob = await connect(`${node.ws}/ws/events`, { token: userToken('batch-bob') })
  const admin = await connect(`${node.ws}/ws/admin`, { token: adminToken('batch-admin') })
  t.teardown(() => { alice.close(); bob.close(); admin.close() })
  await Promise.all([alice.subscribe(['*']), bob.subscribe(['*']), admin.subscribe(['*'])])

  const events = [
    { type: 'authentication.login.success', userId: 'batch-alice', data: { n: 0 } },
    { type: 'billing.invoice.created', userId: 'batch-bob', data: { n: 1 } },
    { userId: 'batch-alice', data: { n: 2 } }, // no type
    { type: 'session.created', userId: 'batch-alice', sessionId: 's-1', data: { n: 3 } },
    { type: 'system.maintenance.scheduled', data: { n: 4 } },
    { type: 'billing.invoice.paid', userId: 'batch-alice', data: deep(40) },
    42,
    { type: 'billing.invoice.paid', userId: 'batch-alice', data: { n: 7 }, extra: true },
    { type: 'billing.invoice.paid', userId: 'batch-alice', data: { n: 8 } },
  ]
  const r = await node.api('/api/events/batch', { body: { events } })
  t.equal(r.status, 200)
  t.equal(r.body.published, 5)
  t.equal(r.body.failed, 4)
  const res = r.body.results as Array<{ id?: string, stream?: string, offset?: number, epoch?: string, error?: { code: string, message: string } }>
  t.equal(res.length, events.length, 'one result per event')
  t.match(res[2], { error: { code: 'VALIDATION', message: 'type is required' } }, 'the event without a type is refused in its place, as POST /api/events refuses it')
  t.match(res[5], { error: { code: 'DATA_TOO_DEEP' } })
  t.match(res[6], { error: { code: 'VALIDATION', message: 'the value must be an object' } })
  t.match(res[7], { error: { code: 'VALIDATION', message: 'extra is not allowed here' } })
  const ok = [0, 1, 3, 4, 8]
  for (const i of ok) t.notOk('error' in res[i]!, `event ${i} published`)
  // The Stream offsets of one user follow the order of the batch.
  t.same([res[0], res[3], res[8]].map((x) => [x!.stream, x!.offset]), [['user:batch-alice', 1], ['user:batch-alice', 2], ['user:batch-alice', 3]], 'alice\'s events in her stream, in the order sent')
  t.same([res[1]!.stream, res[1]!.offset], ['user:batch-bob', 1])
  t.same([res[4]!.stream, res[4]!.offset], ['broadcast', 1])
  const ids = new Set(ok.map((i) => res[i]!.id))
  t.equal(ids.size, ok.length, 'every published event has its own id')

  const toAlice = await alice.collect((f) => f.type === 'event' && f.payload?.data?.n !== undefined, 4)
  t.same(new Set(toAlice.map((f) => f.payload.id)), new Set([res[0]!.id, res[3]!.id, res[4]!.id, res[8]!.id]), 'alice receives her events and the broadcast')
  t.same(toAlice.filter((f) => f.payload.stream === 'user:batch-alice').map((f) => [f.payload.id, f.payload.offset]), [[res[0]!.id, 1], [res[3]!.id, 2], [res[8]!.id, 3]], 'her own in order, with the positions the batch answered')
  const toBob = await bob.collect((f) => f.type === 'event' && f.payload?.data?.n !== undefined, 2)
  t.same(new Set(toBob.map((f) => f.payload.id)), new Set([res[1]!.id, res[4]!.id]), 'bob receives his event and the broadcast, none of alice\'s')
  const toAdmin = await admin.collect((f) => f.type === 'event' && f.payload?.data?.n !== undefined, 5)
  t.same(new Set(toAdmin.map((f) => f.payload.id)), ids, 'the admin sees every published event')
  t.notOk(alice.frames.some((f) => f.payload?.data?.n === 7 || f.payload?.data?.n === 2), 'no refused event went out')

  const history = await node.api('/api/streams/user:batch-alice/events')
  t.same(history.body.events.map((e: { id: string }) => e.id), [res[0]!.id, res[3]!.id, res[8]!.id], 'history holds alice\'s published events, and only those')

  const hooks = await rx.count(2)
  t.same(new Set(hooks.map((h) => JSON.parse(h.body).id)), new Set([res[1]!.id, res[8]!.id]), 'the billing events reached the webhook endpoint, the refused one not')
}

t.test('memory: each event published as a single publish would be, answered in order; a bad one refused in its place', { timeout: 60_000 }, async (t) => {
  await behaves(t, {})
})

t.test('standalone Redis: the same, and the appends of a batch go to Redis together', { timeout: 90_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  await t.test('behaviour', async (t) => { await behaves(t, { REDIS_URL: redis.url, HEALTH_PROBE_INTERVAL: '200' }) })
  await t.test('500 events: all published, each user\'s in order, in a handful of script calls written back to back', async (t) => {
    const node = await startApp({ REDIS_URL: redis.url, HEALTH_PROBE_INTERVAL: '200', REDIS_KEY_PREFIX: 'big:' })
    t.teardown(() => node.close())
    await ready(node)
    const probe = new Redis(redis.url)
    t.teardown(() => probe.disconnect())
    // Warm: the script is loaded, so the batch's calls are EVALSHA.
    t.equal((await node.api('/api/events', { body: { type: 'system.warm' } })).status, 202)
    const calls = async (): Promise<number> => Number(/cmdstat_evalsha:calls=(\d+)/.exec(await probe.info('commandstats'))?.[1] ?? 0)
    const before = await calls()
    const events = Array.from({ length: 500 }, (_, i) => ({ type: 'billing.item.added', userId: `big-${i % 5}`, data: { i } }))
    const r = await node.api('/api/events/batch', { body: { events } })
    t.equal(r.status, 200)
    t.equal(r.body.published, 500)
    const used = await calls() - before
    // 500 appends at 64 a script call: 8 (the health probe adds none: it is a PUBLISH).
    t.ok(used <= 8, `${used} script calls for 500 appends`)
    for (let u = 0; u < 5; u++) {
      const mine = (r.body.results as Array<{ stream: string, offset: number }>).filter((x) => x.stream === `user:big-${u}`)
      t.same(mine.map((x) => x.offset), Array.from({ length: 100 }, (_, i) => i + 1), `user big-${u}: offsets 1-100 in the order sent`)
    }
  })
})

t.test('Redis Cluster: the same, the appends grouped by hash slot', { timeout: 120_000 }, async (t) => {
  const rc = await startRedisCluster(3)
  t.teardown(() => rc.stop())
  await behaves(t, { REDIS_CLUSTER_NODES: rc.nodes, HEALTH_PROBE_INTERVAL: '200' })
})

t.test('refused whole, nothing published: too many events, none, not a list, too large a body, no or the wrong credential', { timeout: 30_000 }, async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const one = { type: 'system.batch.limit', data: {} }
  const top = async (): Promise<number> => (await node.api('/api/streams/broadcast/events')).body.top
  const tooMany = await node.api('/api/events/batch', { body: { events: Array.from({ length: 501 }, () => one) } })
  t.equal(tooMany.status, 400)
  t.same(tooMany.body, { error: { code: 'VALIDATION', message: 'body.events must hold 1-500 items' } })
  t.equal(await top(), 0, 'none of the 501 was published')
  t.match((await node.api('/api/events/batch', { body: { events: [] } })).body, { error: { code: 'VALIDATION', message: 'body.events must hold 1-500 items' } })
  t.match((await node.api('/api/events/batch', { body: { events: one } })).body, { error: { code: 'VALIDATION', message: 'body.events must be an array' } })
  t.match((await node.api('/api/events/batch', { body: [one] })).body, { error: { code: 'VALIDATION' } })
  t.match((await node.api('/api/events/batch', { body: { events: [one], more: 1 } })).body, { error: { code: 'VALIDATION', message: 'body.more is not allowed here' } })
  const big = await node.api('/api/events/batch', { body: { events: Array.from({ length: 200 }, () => ({ type: 'system.batch.big', data: { pad: 'x'.repeat(6000) } })) } })
  t.equal(big.status, 413)
  t.equal(big.body.error.code, 'PAYLOAD_TOO_LARGE')
  const fits = await node.api('/api/events/batch', { body: { events: Array.from({ length: 100 }, () => ({ type: 'system.batch.big', data: { pad: 'x'.repeat(6000) } })) } })
  t.equal(fits.status, 200, 'a 600 KB batch fits: past the 64 KiB of a single publish, within the 1 MiB of a batch')
  t.equal(await top(), 100)
  t.equal((await node.api('/api/events/batch', { body: { events: [one] }, key: '' })).status, 401)
  t.equal((await node.api('/api/events/batch', { body: { events: [one] }, key: userToken('batch-user') })).status, 403)
  t.equal((await node.api('/api/events/batch', { body: { events: [one] }, key: 'not-a-key-but-long-enough' })).status, 401)
  t.equal(await top(), 100, 'nothing published by the refused requests')
})

t.test('Redis unreachable with its outage buffer full: 503 for the batch as a whole, as for a single publish', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startApp({ REDIS_URL: redis.url, HEALTH_PROBE_INTERVAL: '200', REDIS_PUBLISH_BUFFER: '3' })
  t.teardown(() => node.close())
  await ready(node)
  await redis.kill()
  await waitFor('the node sees Redis gone', async () => (await node.api('/ws/health', { key: '' })).status, (s) => s === 503, { timeoutMs: 15_000 })
  const events = Array.from({ length: 3 }, (_, i) => ({ type: 'system.batch.outage', data: { i } }))
  const r = await node.api('/api/events/batch', { body: { events } })
  // A system event is one channel message: three fit the buffer of three; the user's two-message events would not.
  t.equal(r.status, 200, 'held for Redis: answered, without positions')
  t.same(r.body.results.map((x: { offset?: number }) => x.offset), [undefined, undefined, undefined])
  const full = await node.api('/api/events/batch', { body: { events } })
  t.equal(full.status, 503)
  t.equal(full.body.error.code, 'BACKEND_UNAVAILABLE', 'the buffer is full: nothing of this batch was taken, send it again later')
  // Back, so the node closes as it would in service.
  await redis.restart()
  await ready(node)
})
