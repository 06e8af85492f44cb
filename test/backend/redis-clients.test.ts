// What ioredis sends by itself on a reconnect (the resubscribe of a pub/sub
// connection, the SELECT of a database other than 0) must not end the node
// when it fails. Before ioredis 6.1 those commands had no rejection handler:
// a resubscribe that Redis refused, or one still unanswered when the node
// closed, was an unhandled rejection, which ends a Node process. Seen in CI as
// a test process ending after a node closed just as Redis went away.
import net from 'node:net'
import t, { type Test } from 'tap'
import { createBackend } from '../../src/backend/backend.js'
import { startApp } from '../helpers/app.js'
import { startNode } from '../helpers/node.js'
import { sioConnect } from '../helpers/sio.js'
import { userToken } from '../helpers/tokens.js'
import { freePort } from '../helpers/ports.js'
import { startRedis } from '../helpers/redis.js'
import { waitFor, within } from '../helpers/wait.js'

/** Unhandled rejections seen while `t` runs. */
function unhandled (t: Test): unknown[] {
  const seen: unknown[] = []
  const note = (reason: unknown): void => { seen.push(reason) }
  process.on('unhandledRejection', note)
  t.teardown(() => { process.off('unhandledRejection', note) })
  return seen
}

/** `close`, run by the test itself or, if a check failed first, by its teardown: once. */
function closer (t: Test, close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined
  const run = async (): Promise<void> => { await (closing ??= close()) }
  t.teardown(run)
  return run
}

/** Time for a rejection to surface. */
const turns = async (): Promise<void> => { await new Promise((resolve) => setTimeout(resolve, 1000)) }

t.test('a resubscribe Redis refuses is reported as a Redis error; the node runs on', { timeout: 30_000 }, async (t) => {
  const seen = unhandled(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const admin = redis.client()
  await admin.call('ACL', 'SETUSER', 'node', 'on', '>node-secret', '~*', '&*', '+@all')
  const errors: Error[] = []
  // Database 2: the reconnect re-selects it too.
  const backend = createBackend({ redis: { url: `redis://node:node-secret@127.0.0.1:${redis.port}/2` }, keyPrefix: 'resub:' }, { onError: (err) => errors.push(err) })
  t.teardown(async () => { await backend.close() })
  await backend.connect()
  await backend.broker.subscribe('events')

  // Redis disconnects a client subscribed to channels its user may no longer
  // use; ioredis reconnects and resubscribes, which Redis now refuses.
  await admin.call('ACL', 'SETUSER', 'node', 'resetchannels', '&other')
  // Either way it surfaces: as an unhandled rejection (the failure) or reported.
  await waitFor('the refused resubscribe', () => [...errors, ...seen].map(String), (e) => e.some((x) => /NOPERM/.test(x)), { timeoutMs: 10_000 })
  await turns()
  t.same(seen.map(String), [], 'no unhandled rejection')
  t.match(errors.map(String), [/NOPERM/], 'reported as a Redis error')
  t.equal(await within(5000, 'a publish after', backend.broker.publishNow('other', 'still here').then(() => 'sent')), 'sent', 'the backend still publishes')
})

t.test('a node closing while its resubscribe is unanswered closes cleanly', { timeout: 30_000 }, async (t) => {
  const seen = unhandled(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  // A proxy that, once told to, holds back a SUBSCRIBE and all that follows
  // it on that connection: the reconnect's resubscribe (and the node's QUIT
  // at close) then wait for replies that never come.
  let hold = false
  let held!: () => void
  const heldOne = new Promise<void>((resolve) => { held = resolve })
  const holding = new WeakSet<net.Socket>()
  const sockets = new Set<net.Socket>()
  const proxy = net.createServer((client) => {
    const upstream = net.connect(redis.port, '127.0.0.1')
    for (const s of [client, upstream]) { sockets.add(s); s.on('error', () => {}); s.on('close', () => { sockets.delete(s); client.destroy(); upstream.destroy() }) }
    upstream.pipe(client)
    client.on('data', (d: Buffer) => {
      if (hold && /subscribe/i.test(d.toString('latin1'))) { holding.add(client); held() }
      if (holding.has(client)) return
      upstream.write(d)
    })
  })
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { for (const s of sockets) s.destroy(); proxy.close() })
  const port = (proxy.address() as net.AddressInfo).port

  const backend = createBackend({ redis: { url: `redis://127.0.0.1:${port}` }, keyPrefix: 'resub:' }, { onError: () => {} })
  const close = closer(t, async () => { await backend.close() })
  await backend.connect()
  await backend.broker.subscribe('events')
  hold = true
  for (const s of sockets) s.destroy()
  await within(10_000, 'the resubscribe sent after the reconnect', heldOne)
  await within(10_000, 'the close', close())
  await turns()
  t.same(seen.map(String), [], 'no unhandled rejection')
})

t.test('a node closing while Redis is frozen leaves nothing unhandled', { timeout: 30_000 }, async (t) => {
  const seen = unhandled(t)
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startApp({ REDIS_URL: redis.url })
  const close = closer(t, node.close)
  // Frozen, the connections stay ready: what the node sends at close is
  // written and waits for replies that its disconnect then cuts short.
  redis.pause()
  await within(20_000, 'the close', close())
  await turns()
  t.same(seen.map(String), [], 'no unhandled rejection')
})

// ioredis 6 rejects what waits on a reconnecting connection when it is
// disconnected ("Connection is closed."), where ioredis 5 left it waiting for
// ever; the Socket.IO adapter sends some commands without a handler.
t.test('a node closing while Redis is unreachable leaves nothing unhandled: from its start, and after losing it', { timeout: 60_000 }, async (t) => {
  const seen = unhandled(t)
  const nowhere = await startApp({ REDIS_URL: `redis://127.0.0.1:${await freePort()}` })
  await within(20_000, 'the close of a node that never reached Redis', closer(t, nowhere.close)())
  await turns()
  t.same(seen.map(String), [], 'none from the node that never reached Redis')

  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startApp({ REDIS_URL: redis.url, HEALTH_PROBE_INTERVAL: '200' })
  const close = closer(t, node.close)
  await waitFor('the node ready', async () => (await node.api('/ws/health', { key: '' })).status, (s) => s === 200, { timeoutMs: 15_000 })
  await redis.kill()
  await waitFor('the node sees Redis gone', async () => (await node.api('/ws/health', { key: '' })).status, (s) => s === 503, { timeoutMs: 15_000 })
  const before = seen.length
  await within(20_000, 'the close of a node that lost Redis', close())
  await turns()
  t.same(seen.slice(before).map(String), [], 'none from the node that lost it')
})

t.test('a node starting on a healthy Redis reports no backend error (what ioredis sends itself and Redis refuses stays ioredis\'s)', { timeout: 30_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startNode({ REDIS_URL: redis.url, LOG_LEVEL: 'debug' })
  t.teardown(() => node.stop())
  await waitFor('the node ready', async () => (await node.api('/ws/health', { key: '' })).status, (s) => s === 200, { timeoutMs: 15_000 })
  // A Socket.IO session: the lent connections carry the adapter's commands.
  const sio = await sioConnect(node.http, { auth: { token: userToken('healthy-start') } })
  sio.client.close()
  t.same(node.lines.filter((l) => l.includes('"backend error"')), [], 'no backend error logged')
})
