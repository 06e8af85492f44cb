// What a node misses on Redis pub/sub it reads back from the streams
// (src/events/gaps.ts): two real nodes on a private Redis, node A's Redis
// traffic through a proxy the test controls, a real client on A, events
// published through B. Without the read-back, the client would never get
// what A's subscriber missed.
import net from 'node:net'
import { Cluster } from 'ioredis'
import t, { type Test } from 'tap'
import { HeraldPublisher } from '../../src/client/publisher.js'
import { connect, type Frame } from '../helpers/client.js'
import { metric, parseMetrics } from '../helpers/ops.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

/** A proxy in front of Redis that knows the subscriber's connection (it sent SUBSCRIBE) and can drop what Redis sends it, or cut it. */
async function subscriberProxy (t: Test, redisPort: number): Promise<{ port: number, opened: () => number, drop: (on: boolean) => void, dropped: () => string, cut: () => void }> {
  let opened = 0
  let dropping = false
  let droppedText = ''
  const subscribers = new Set<net.Socket>()
  const sockets = new Set<net.Socket>()
  const proxy = net.createServer((client) => {
    opened++
    const upstream = net.connect(redisPort, '127.0.0.1')
    for (const s of [client, upstream]) { sockets.add(s); s.on('error', () => {}); s.on('close', () => { sockets.delete(s); subscribers.delete(client); client.destroy(); upstream.destroy() }) }
    client.on('data', (d: Buffer) => {
      // The command itself (RESP: its name as a bulk string), not a payload that mentions it.
      if (/\$9\r\nsubscribe\r\n/i.test(d.toString('latin1'))) subscribers.add(client)
      upstream.write(d)
    })
    upstream.on('data', (d: Buffer) => {
      if (dropping && subscribers.has(client)) { droppedText += d.toString('latin1'); return }
      client.write(d)
    })
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of sockets) s.destroy(); proxy.close() })
  return {
    port: (proxy.address() as net.AddressInfo).port,
    opened: () => opened,
    drop (on) { dropping = on },
    dropped: () => droppedText,
    cut () { for (const s of subscribers) s.destroy() },
  }
}

const ids = (frames: Frame[]): string[] => frames.map((f) => f.payload.data.label as string)
const offsets = (frames: Frame[]): number[] => frames.map((f) => f.payload.offset as number)

async function setup (t: Test): Promise<{ a: NodeProc, b: NodeProc, proxy: Awaited<ReturnType<typeof subscriberProxy>>, publish: (label: string) => Promise<void> }> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const proxy = await subscriberProxy(t, redis.port)
  const a = await startNode({ REDIS_URL: `redis://127.0.0.1:${proxy.port}` })
  t.teardown(() => a.stop())
  const b = await startNode({ REDIS_URL: redis.url })
  t.teardown(() => b.stop())
  const publish = async (label: string): Promise<void> => {
    const r = await b.api('/api/events', { body: { type: 'gap.test', userId: 'gap-user', data: { label } } })
    if (r.status !== 202) throw new Error(`publish ${label}: ${r.status} ${JSON.stringify(r.body)}`)
  }
  return { a, b, proxy, publish }
}

t.test('a message the subscriber did not hear is read back when the next one shows the gap, in order', { timeout: 60_000 }, async (t) => {
  const { a, proxy, publish } = await setup(t)
  const client = await connect(`${a.ws}/ws/events`, { token: userToken('gap-user') })
  t.teardown(() => client.close())
  await client.subscribe(['gap.*'])
  const events = (): Frame[] => client.frames.filter((f) => f.type === 'event')

  await publish('e1')
  await client.collect((f) => f.type === 'event', 1)
  const connections = proxy.opened()

  // What Redis sends A's subscriber is lost, the connection stays up: A cannot tell.
  proxy.drop(true)
  await publish('e2')
  await waitFor('e2 reaching the proxy', () => proxy.dropped(), (s) => s.includes('"label":"e2"') && s.endsWith('\r\n'), { timeoutMs: 10_000 })
  proxy.drop(false)
  t.same(ids(events()), ['e1'], 'the client did not get e2 live')

  await publish('e3')
  const got = await client.collect((f) => f.type === 'event', 3)
  t.same(ids(got), ['e1', 'e2', 'e3'], 'e2 read back and delivered before e3')
  t.same(offsets(got), [1, 2, 3], 'with its position')
  t.equal(proxy.opened(), connections, 'over the same connections: the gap, not a reconnect, brought it back')
  await a.waitLine((l) => l.includes('missed messages read back from their streams'))
  const samples = parseMetrics((await a.api('/metrics', { key: '' })).body as string)
  t.equal(metric(samples, 'herald_pubsub_missed_messages_total', { outcome: 'read_back' }), 1, 'counted as missed and read back')
  t.equal(metric(samples, 'herald_pubsub_missed_messages_total', { outcome: 'lost' }), 0, 'and not as lost')
})

t.test('after the subscriber reconnects, what a quiet channel missed meanwhile arrives without another publish', { timeout: 60_000 }, async (t) => {
  const { a, proxy, publish } = await setup(t)
  const client = await connect(`${a.ws}/ws/events`, { token: userToken('gap-user') })
  t.teardown(() => client.close())
  await client.subscribe(['gap.*'])

  await publish('e1')
  await client.collect((f) => f.type === 'event', 1)
  // The subscriber's connection drops and its messages meanwhile are lost;
  // nothing more is published on the channel after.
  proxy.drop(true)
  await publish('e2')
  await publish('e3')
  await waitFor('e3 reaching the proxy', () => proxy.dropped(), (s) => s.includes('"label":"e3"') && s.endsWith('\r\n'), { timeoutMs: 10_000 })
  proxy.cut()
  proxy.drop(false)
  const got = await within(20_000, 'e2 and e3 on the client', client.collect((f) => f.type === 'event', 3, 20_000))
  t.same(ids(got), ['e1', 'e2', 'e3'], 'both read back, in order')
  t.same(offsets(got), [1, 2, 3])
  t.notOk(client.closeInfo, 'the client stayed connected throughout')

  // And live delivery goes on after, once.
  await publish('e4')
  const after = await client.collect((f) => f.type === 'event', 4)
  t.same(ids(after), ['e1', 'e2', 'e3', 'e4'], 'nothing doubled')
})

t.test('published without pause through two subscriber drops: every offset once, in order', { timeout: 90_000 }, async (t) => {
  const { a, proxy, publish } = await setup(t)
  const client = await connect(`${a.ws}/ws/events`, { token: userToken('gap-user') })
  t.teardown(() => client.close())
  await client.subscribe(['gap.*'])
  const N = 120
  const publishing = (async () => {
    for (let i = 1; i <= N; i++) {
      await publish(`e${i}`)
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
  })()
  for (const at of [30, 70]) {
    await client.collect((f) => f.type === 'event', at, 30_000)
    proxy.cut()
  }
  await within(60_000, 'the publishes', publishing)
  await client.collect((f) => f.type === 'event', N, 30_000)
  // Anything late or doubled would show as more than N, or out of order.
  await publish('last')
  await client.collect((f) => f.type === 'event' && f.payload.data.label === 'last', 1, 10_000)
  const events = client.frames.filter((f) => f.type === 'event')
  t.same(offsets(events), Array.from({ length: N + 1 }, (_v, i) => i + 1), 'offsets 1..N+1, each once, in order')
  t.notOk(client.closeInfo, 'the client stayed connected throughout')
})

// On a Redis Cluster each shard's sharded subscriber is its own connection,
// which ioredis replaces on its own while the Cluster client stays `ready`:
// the node's state never changes, and its probe (on one shard) need not
// notice. What a shard's subscriber missed is read back once it is
// subscribed again. The message it misses here is one the node could never
// hear: a classic PUBLISH onto the Cluster (a publisher told `sharded:
// false`), which SSUBSCRIBE does not receive, while it is in the stream.
t.test('on a Redis Cluster, a shard\'s subscriber replaced: what it missed arrives without another publish', { timeout: 90_000 }, async (t) => {
  const rcl = await startRedisCluster(3)
  t.teardown(() => rcl.stop())
  const a = await startNode({ REDIS_CLUSTER_NODES: rcl.nodes })
  t.teardown(() => a.stop())
  const cluster = new Cluster(rcl.ports.map((port) => ({ host: '127.0.0.1', port })), { redisOptions: { maxRetriesPerRequest: 1 } })
  t.teardown(() => cluster.disconnect())
  const client = await connect(`${a.ws}/ws/events`, { token: userToken('gap-user') })
  t.teardown(() => client.close())
  await client.subscribe(['gap.*'])

  const r1 = await a.api('/api/events', { body: { type: 'gap.test', userId: 'gap-user', data: { label: 'e1' } } })
  t.equal(r1.status, 202)
  await client.collect((f) => f.type === 'event', 1)
  const unheard = new HeraldPublisher({ redis: cluster, keyPrefix: 'herald:', sharded: false })
  const receipt = await unheard.publishWithReceipt('gap.test' as never, { userId: 'gap-user', data: { label: 'e2' } })
  t.equal(receipt.offset, 2, 'e2 is in the stream, next after e1')

  // Every shard's sharded subscribers dropped by Redis (the node's, the only ones subscribed).
  let killed = 0
  for (const port of rcl.ports) killed += Number(await rcl.client(port).call('CLIENT', 'KILL', 'TYPE', 'pubsub'))
  t.ok(killed >= 1, `the node's sharded subscribers closed (${killed})`)
  const got = await within(20_000, 'e2 on the client', client.collect((f) => f.type === 'event', 2, 20_000))
  t.same(ids(got), ['e1', 'e2'], 'read back once the shard\'s subscriber was back, with nothing more published')
  t.same(offsets(got), [1, 2])
  t.notOk(client.closeInfo, 'the client stayed connected')
  const samples = parseMetrics((await a.api('/metrics', { key: '' })).body as string)
  t.equal(metric(samples, 'herald_pubsub_missed_messages_total', { outcome: 'read_back' }), 1, 'counted as read back')

  // Live delivery goes on, through the new subscriber, once.
  const r3 = await a.api('/api/events', { body: { type: 'gap.test', userId: 'gap-user', data: { label: 'e3' } } })
  t.equal(r3.status, 202)
  const after = await client.collect((f) => f.type === 'event', 3, 20_000)
  t.same(ids(after), ['e1', 'e2', 'e3'], 'nothing doubled')
})
