// The SDK's side of resume on an open connection (docs/client.md,
// "Resuming"): messages delivered without a position while Redis is away,
// then positioned ones; the SDK resumes the stream and the app gets every
// message exactly once, none skipped. And its options.positions: a client
// started from stored positions gets what was published since.
import t, { type Test } from 'tap'
import { startApp, type RunningApp } from '../helpers/app.js'
import { startRedis } from '../helpers/redis.js'
import { sdk, untilState, user, type Probe } from '../helpers/sdk.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const ENV = { HEALTH_PROBE_INTERVAL: '200', REDIS_REPLAY_DELAY: '300' }
const health = async (n: RunningApp): Promise<number> => (await n.api('/ws/health', { key: '' })).status

async function client (t: Test, node: RunningApp, u: string): Promise<Probe & { recovered: Array<{ recovered: boolean, unrecovered: string[], reconnect: boolean }> }> {
  const p = sdk(t, { url: `${node.ws}/ws/events`, getToken: () => userToken(u), eventTypes: ['*'] })
  const recovered: Array<{ recovered: boolean, unrecovered: string[], reconnect: boolean }> = []
  p.client.on('recovered', (r) => recovered.push(r))
  await p.client.connect()
  return Object.assign(p, { recovered })
}

t.test('a Redis outage: messages without a position, then positioned ones; every message reaches every client once', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const a = await startApp({ REDIS_URL: redis.url, SERVER_ID: `sdk-outage-a-${process.pid}`, ...ENV })
  t.teardown(() => a.close())
  const b = await startApp({ REDIS_URL: redis.url, SERVER_ID: `sdk-outage-b-${process.pid}`, ...ENV })
  t.teardown(() => b.close())
  for (const n of [a, b]) await waitFor('ready', () => health(n), (s) => s === 200, { timeoutMs: 10_000 })
  const u = user('outage')
  const [ca, cb] = [await client(t, a, u), await client(t, b, u)]
  const publish = async (n: RunningApp, i: number): Promise<any> => (await n.api('/api/events', { body: { type: 'orders.created', userId: u, data: { i } } })).body
  const ids = [(await publish(a, 0)).id]
  for (const c of [ca, cb]) await waitFor('the first event', () => c.events.length, (n) => n === 1)

  redis.pause()
  t.teardown(() => redis.resume())
  for (const n of [a, b]) await waitFor('Redis gone', () => health(n), (s) => s === 503, { timeoutMs: 5000 })
  // Each node delivers its own publishes to its own client at once, without a position, and holds them for Redis.
  for (const [n, i] of [[a, 1], [a, 2], [b, 3]] as const) {
    const r = await publish(n, i)
    t.notOk('offset' in r, `publish ${i}: held, no position yet`)
    ids.push(r.id)
  }
  await waitFor('A\'s client to get its node\'s two', () => ca.events.length, (n) => n === 3)
  t.notOk('offset' in ca.events[1]!, 'delivered without a position')
  redis.resume()
  for (const n of [a, b]) await waitFor('ready again', () => health(n), (s) => s === 200, { timeoutMs: 10_000 })
  ids.push((await publish(a, 4)).id)

  for (const [name, c] of [['A', ca], ['B', cb]] as const) {
    await waitFor(`${name}'s client to have all five`, () => c.events.length, (n) => n >= 5, { timeoutMs: 10_000 })
    t.same(c.events.map((e) => e.id).sort(), [...ids].sort(), `${name}: every event once, the outage's included, none skipped`)
    t.ok(c.recovered.length >= 2, `${name}: resumed the stream on the open connection after the outage`)
    t.ok(c.recovered.every((r) => r.recovered), `${name}: and recovered`)
    t.equal(c.client.positions[`user:${u}`]!.offset, 5, `${name}: at the top`)
  }
})

t.test('options.positions: a client started from stored positions gets what was published since, once', { timeout: 30_000 }, async (t) => {
  const node = await startApp({})
  t.teardown(() => node.close())
  const u = user('stored')
  const first = await client(t, node, u)
  const publish = async (i: number): Promise<any> => (await node.api('/api/events', { body: { type: 'orders.created', userId: u, data: { i } } })).body
  const e1 = await publish(1)
  await waitFor('the event', () => first.events.length, (n) => n === 1)
  const stored = first.client.positions
  first.client.close()
  const missed = [(await publish(2)).id, (await publish(3)).id]
  const later = sdk(t, { url: `${node.ws}/ws/events`, getToken: () => userToken(u), eventTypes: ['*'], positions: stored })
  const recovered: boolean[] = []
  later.client.on('recovered', (r) => recovered.push(r.recovered))
  await later.client.connect()
  await untilState(later.client, 'connected')
  t.same(later.events.map((e) => e.id), missed, 'the two published while it was away, in order, and not the one it had')
  t.notOk(later.events.some((e) => e.id === e1.id))
  t.same(recovered, [true])
})
