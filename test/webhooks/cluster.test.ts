// Webhooks across a cluster of node processes (dist/main.js) on a private
// Redis: a node killed with SIGKILL while it delivers loses nothing (another
// node takes its claim over and delivers, same webhook-id); a Redis
// restarted with AOF loses nothing queued, nor what was published while it
// was down; an endpoint change holds on every node and in the publisher
// library's direct mode within a second; /ws/health and /metrics say
// whether the backend persists.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { HeraldPublisher } from '../../src/client/publisher.js'
import { metric, parseMetrics } from '../helpers/ops.js'
import { startNodes, type NodeProc } from '../helpers/node.js'
import { startReceiver } from '../helpers/receiver.js'
import { startRedis } from '../helpers/redis.js'
import { waitFor } from '../helpers/wait.js'

const LOOPBACK = { WEBHOOK_ALLOW_PRIVATE: '127.0.0.0/8', WEBHOOK_ALLOW_HTTP: 'true', NODE_TTL: '3000' }

async function create (n: NodeProc, body: Record<string, unknown>): Promise<{ id: string, secret: string }> {
  const r = await n.api('/api/webhooks', { body })
  if (r.status !== 201) throw new Error(`create answered ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

async function publish (n: NodeProc, data: Record<string, unknown> = {}): Promise<string> {
  const r = await n.api('/api/events', { body: { type: 'authentication.login.success', userId: 'wh-cluster', data } })
  if (r.status !== 202) throw new Error(`publish answered ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.id
}

const ready = async (n: NodeProc): Promise<void> => {
  await waitFor(`${n.serverId} ready`, async () => (await n.api('/ws/health', { key: '' })).status, (s) => s === 200, { timeoutMs: 15_000, intervalMs: 100 })
}

t.test('kill -9 of the node delivering while the receiver fails: another node takes its claim over and delivers, same webhook-id', { timeout: 90_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  // A timeout longer than the test needs: the kill, not a timeout, ends the first attempt.
  const nodes = await startNodes(t, 3, { REDIS_URL: redis.url, ...LOOPBACK, WEBHOOK_TIMEOUT: '30000' })
  await Promise.all(nodes.map(ready))
  const rx = await startReceiver(t)
  let failing = true
  rx.answer = () => failing ? 'hang' : { status: 200 }
  const { id } = await create(nodes[0]!, { url: rx.url, eventTypes: ['authentication.*'] })
  await new Promise((resolve) => setTimeout(resolve, 1000)) // every node knows the endpoint
  const eventId = await publish(nodes[1]!, { n: 1 })
  const [first] = await rx.count(1)
  const webhookId = `msg_${eventId}_${id}`
  t.equal(first!.headers['webhook-id'], webhookId)

  // Which node holds the claim: the group's pending list names it.
  const rc = redis.client()
  const pending = await rc.call('XPENDING', `herald:{wh}:q:${id}`, 'd', '-', '+', 10) as Array<[string, string, number, number]>
  t.equal(pending.length, 1, 'one delivery claimed')
  const holder = nodes.find((n) => n.serverId === pending[0]![1])!
  t.ok(holder !== undefined, `claimed by ${pending[0]![1]}`)
  await holder.stop('SIGKILL')
  failing = false
  const started = Date.now()
  const again = await rx.count(2, undefined, 30_000)
  t.equal(again[1]!.headers['webhook-id'], webhookId, `delivered again ${Date.now() - started} ms after the kill, with the same webhook-id`)
  const survivors = nodes.filter((n) => n !== holder)
  const attempts = await waitFor('the attempt listed', async () => (await survivors[0]!.api(`/api/webhooks/${id}/attempts`)).body.attempts as any[], (a) => a.length >= 1)
  t.ok(survivors.some((n) => n.serverId === attempts[0].serverId), `by a surviving node (${attempts[0].serverId as string})`)
  t.match(attempts[0], { outcome: 'success', attempt: 1 }, 'the killed attempt was never settled: this counts as the first')
  t.match((await survivors[0]!.api(`/api/webhooks/${id}`)).body.queue, { depth: 0 }, 'nothing left queued')
})

t.test('a Redis restart with AOF loses nothing: what waited for a retry, and what was published while it was down', { timeout: 90_000 }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'herald-wh-aof-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const redis = await startRedis(['--appendonly', 'yes', '--dir', dir])
  t.teardown(() => redis.stop())
  const nodes = await startNodes(t, 2, { REDIS_URL: redis.url, ...LOOPBACK, WEBHOOK_RETRY_BASE: '500', REDIS_REPLAY_DELAY: '200' })
  await Promise.all(nodes.map(ready))
  const health = (await nodes[0]!.api('/ws/health', { key: '' })).body
  t.equal(health.persistent, true, '/ws/health: the backend persists (AOF)')
  t.equal(metric(parseMetrics((await nodes[0]!.api('/metrics', { key: '' })).body), 'herald_backend_persistent'), 1, 'and so says the metric')
  const rx = await startReceiver(t)
  let failing = true
  rx.answer = () => ({ status: failing ? 500 : 200 })
  const { id } = await create(nodes[0]!, { url: rx.url, eventTypes: ['authentication.*'] })
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const before: string[] = []
  for (let i = 0; i < 5; i++) before.push(await publish(nodes[i % 2]!, { i }))
  await rx.count(5)
  t.pass('five first attempts failed: their retries wait in Redis')

  await redis.kill()
  // Published while Redis is down: held by the node with their jobs.
  const during: string[] = []
  for (let i = 0; i < 2; i++) during.push(await publish(nodes[0]!, { during: i }))
  failing = false
  await redis.restart()
  const ids = [...before, ...during].map((e) => `msg_${e}_${id}`)
  // Answered 200 from now on: what arrives after the five failures.
  const delivered = (): Set<unknown> => new Set(rx.received.slice(5).map((r) => r.headers['webhook-id']))
  await waitFor('every event delivered', () => ids.filter((w) => delivered().has(w)).length, (n) => n === ids.length, { timeoutMs: 30_000, intervalMs: 100 })
  t.pass('each of the seven delivered after the restart, with its webhook-id')
  await waitFor('the queue empty', async () => (await nodes[1]!.api(`/api/webhooks/${id}`)).body.queue?.depth, (d) => d === 0, { timeoutMs: 10_000 })
})

t.test('an endpoint change holds on every node and in the publisher library within a second; a Redis without AOF is reported', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const [a, b] = await startNodes(t, 2, { REDIS_URL: redis.url, ...LOOPBACK })
  await Promise.all([a!, b!].map(ready))
  t.equal((await b!.api('/ws/health', { key: '' })).body.persistent, false, '/ws/health: this Redis does not persist')
  t.equal(metric(parseMetrics((await b!.api('/metrics', { key: '' })).body), 'herald_backend_persistent'), 0)
  const library = new HeraldPublisher({ redis: redis.client(), keyPrefix: 'herald:' })
  t.teardown(() => library.close())
  await library.publish('authentication.login.success', { userId: 'warm-up' }) // the library has read the (empty) list
  const rx = await startReceiver(t)
  const { id } = await create(a!, { url: rx.url, eventTypes: ['authentication.*'] })
  await new Promise((resolve) => setTimeout(resolve, 1000))
  const viaB = await publish(b!)
  const viaLibrary = await library.publish('authentication.login.success', { userId: 'wh-cluster' })
  await rx.count(2)
  t.same(rx.received.map((r) => r.headers['webhook-id']).sort(), [`msg_${viaB}_${id}`, `msg_${viaLibrary}_${id}`].sort(), 'a second after its creation, a publish through the other node and one through the library both reach it')

  t.equal((await a!.api(`/api/webhooks/${id}`, { method: 'PATCH', body: { eventTypes: ['system.*'] } })).status, 200)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  await publish(b!)
  await library.publish('authentication.login.success', { userId: 'wh-cluster' })
  const system = await library.publish('system.maintenance.scheduled')
  await rx.count(3)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.same(rx.received.slice(2).map((r) => r.headers['webhook-id']), [`msg_${system}_${id}`], 'a second after a change of its patterns, every publisher follows it')

  t.equal((await a!.api(`/api/webhooks/${id}`, { method: 'DELETE' })).status, 204)
  await new Promise((resolve) => setTimeout(resolve, 1000))
  await library.publish('system.maintenance.scheduled')
  await (await b!.api('/api/events', { body: { type: 'system.maintenance.scheduled' } }))
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(rx.received.length, 3, 'and a second after its deletion, nothing reaches it')
})
