// Positions while Redis is away (docs/protocol.md, "Streams and positions"):
// the publishing node delivers to its own clients at once, without a
// position (the backend gives it one, and none exists yet), answers 202
// with the stream and no offset, and holds the append; when Redis is back
// the append runs, in order, and the other nodes' clients get the message
// positioned; the publishing node's clients do not get it twice. Redis back
// empty: the stream starts a new epoch, which every client sees.
import t, { type Test } from 'tap'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect, type TestClient } from '../helpers/client.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const ENV = { HEALTH_PROBE_INTERVAL: '200', REDIS_REPLAY_DELAY: '300' }

const health = async (n: RunningApp): Promise<number> => (await n.api('/ws/health', { key: '' })).status

async function client (t: Test, node: RunningApp, userId: string): Promise<TestClient> {
  const c = await connect(`${node.ws}/ws/events`, { token: userToken(userId) })
  t.teardown(() => c.close())
  await c.subscribe(['*'])
  return c
}

const copiesOf = (c: TestClient, id: string): Array<Record<string, unknown>> => c.frames.filter((f) => f.type === 'event' && f.payload.id === id).map((f) => f.payload)

t.test('a publish while Redis is away: delivered at once on its node without a position, positioned everywhere once Redis is back', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const a = await startApp({ REDIS_URL: redis.url, SERVER_ID: `outage-a-${process.pid}`, ...ENV })
  t.teardown(() => a.close())
  const b = await startApp({ REDIS_URL: redis.url, SERVER_ID: `outage-b-${process.pid}`, ...ENV })
  t.teardown(() => b.close())
  for (const n of [a, b]) await waitFor('ready', () => health(n), (s) => s === 200, { timeoutMs: 10_000 })
  const u = `outage-u-${process.pid}`
  const [onA, onB] = [await client(t, a, u), await client(t, b, u)]

  const before = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u, data: { n: 0 } } })
  t.match(before.body, { stream: `user:${u}`, offset: 1 })
  const epoch = before.body.epoch as string
  for (const c of [onA, onB]) await c.next((f) => f.payload?.id === before.body.id)

  // Frozen: the node's sockets stay open; its probe fails.
  redis.pause()
  t.teardown(() => redis.resume())
  await waitFor('node A to see Redis gone', () => health(a), (s) => s === 503, { timeoutMs: 5000 })
  const during = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u, data: { n: 1 } } })
  t.equal(during.status, 202, 'accepted')
  t.same(Object.keys(during.body).sort(), ['id', 'stream'], 'with its stream, and no position yet')
  const local = (await onA.next((f) => f.payload?.id === during.body.id)).payload
  t.equal(local.stream, `user:${u}`, 'delivered at once on node A, naming its stream')
  t.notOk('offset' in local || 'epoch' in local, 'without a position')
  t.same(copiesOf(onB, during.body.id), [], 'node B has nothing yet')

  redis.resume()
  const positioned = (await onB.next((f) => f.payload?.id === during.body.id, 10_000)).payload
  t.same([positioned.offset, positioned.epoch], [2, epoch], 'node B\'s client gets it at the next offset of the same epoch')
  // Node A's probe goes out after the held append on one connection: once it is back, so is the append's answer.
  await waitFor('node A ready again', () => health(a), (s) => s === 200, { timeoutMs: 5000 })
  const after = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u, data: { n: 2 } } })
  t.same([after.body.offset, after.body.epoch], [3, epoch], 'and the stream goes on from there')
  await onA.next((f) => f.payload?.id === after.body.id)
  t.equal(copiesOf(onA, during.body.id).length, 1, 'node A\'s client did not get it twice')
  const kept = await b.api(`/api/streams/user:${u}/events`)
  t.same(kept.body.events.map((e: { id: string }) => e.id), [before.body.id, during.body.id, after.body.id], 'the stream holds the three in publish order')
})

t.test('Redis back empty: the held publish starts a new epoch, which every node\'s clients see', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const a = await startApp({ REDIS_URL: redis.url, SERVER_ID: `empty-a-${process.pid}`, ...ENV })
  t.teardown(() => a.close())
  const b = await startApp({ REDIS_URL: redis.url, SERVER_ID: `empty-b-${process.pid}`, ...ENV })
  t.teardown(() => b.close())
  for (const n of [a, b]) await waitFor('ready', () => health(n), (s) => s === 200, { timeoutMs: 10_000 })
  const u = `empty-u-${process.pid}`
  const [onA, onB] = [await client(t, a, u), await client(t, b, u)]
  const first = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u } })
  const second = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u } })
  t.same([first.body.offset, second.body.offset], [1, 2])
  await onB.next((f) => f.payload?.id === second.body.id)

  await redis.kill()
  await waitFor('node A to see Redis gone', () => health(a), (s) => s === 503, { timeoutMs: 5000 })
  const during = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u } })
  t.same([during.status, Object.keys(during.body).sort()], [202, ['id', 'stream']], 'held: 202 with its stream, no position')
  t.notOk('offset' in (await onA.next((f) => f.payload?.id === during.body.id)).payload, 'delivered on A without a position')
  await redis.restart()

  const positioned = (await onB.next((f) => f.payload?.id === during.body.id, 15_000)).payload
  t.equal(positioned.offset, 1, 'node B\'s client gets it at offset 1')
  t.not(positioned.epoch, first.body.epoch, 'of a new epoch: the history before is gone, and the client can tell')
  const kept = await waitFor('node B to read the stream', async () => await b.api(`/api/streams/user:${u}/events`), (r) => r.status === 200)
  t.same([kept.body.epoch, kept.body.top, kept.body.events.map((e: { id: string }) => e.id)], [positioned.epoch, 1, [during.body.id]], 'the stream holds only what came after')
})

t.test('a client that connects to the publishing node while its publish is held gets it, positioned, once Redis takes it; one that saw it then does not get it again', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  // The replay waits long enough for a client to come in between.
  const a = await startApp({ REDIS_URL: redis.url, SERVER_ID: `late-a-${process.pid}`, ...ENV, REDIS_REPLAY_DELAY: '3000' })
  t.teardown(() => a.close())
  await waitFor('ready', () => health(a), (s) => s === 200, { timeoutMs: 10_000 })
  const u = `late-u-${process.pid}`
  const early = await client(t, a, u)
  const ops = await connect(`${a.ws}/ws/admin`, { token: adminToken(`late-ops-${process.pid}`) })
  t.teardown(() => ops.close())
  t.equal((await ops.request('start_tail', { eventTypes: ['authentication.*'] })).type, 'tail_started')
  const first = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u } })
  await early.next((f) => f.payload?.id === first.body.id)

  await redis.kill()
  await waitFor('node A to see Redis gone', () => health(a), (s) => s === 503, { timeoutMs: 5000 })
  const held = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u } })
  t.same([held.status, Object.keys(held.body).sort()], [202, ['id', 'stream']], 'held')
  await early.next((f) => f.payload?.id === held.body.id)
  await redis.restart()
  await waitFor('node A back on Redis', () => health(a), (s) => s === 200, { timeoutMs: 10_000 })
  // Before the replay: this client's welcome holds the stream's top without the held one.
  const late = await client(t, a, u)
  const got = (await late.next((f) => f.payload?.id === held.body.id, 15_000)).payload
  t.equal(typeof got.offset, 'number', 'the client that came later gets it, positioned')
  const next = await a.api('/api/events', { body: { type: 'authentication.login.success', userId: u } })
  for (const c of [early, late]) await c.next((f) => f.payload?.id === next.body.id)
  t.equal(copiesOf(early, held.body.id).length, 1, 'the client that had it from the node does not get it twice')
  t.equal(copiesOf(late, held.body.id).length, 1, 'the later one once')
  const tailed = async (id: string): Promise<number> => ops.frames.filter((f) => f.type === 'tail').flatMap((f) => f.payload.events as Array<{ id: string }>).filter((e) => e.id === id).length
  await waitFor('the next event in the admin tail', async () => await tailed(next.body.id), (n) => n === 1)
  t.equal(await tailed(held.body.id), 1, 'the admin tail showed the held one once')
})
