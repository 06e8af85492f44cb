// The backend publisher (src/client/publisher.ts): over the HTTP API of a node
// and straight onto Redis, against two node processes on a private Redis (and
// one node on a real 3-master Redis Cluster, where publishing must be sharded),
// with real ws, Socket.IO and admin clients checking who receives what.
import t, { type Test } from 'tap'
import { Cluster, Redis } from 'ioredis'
import { HeraldPublisher, PublishError } from '../../src/client/publisher.js'
import { connect, type TestClient } from '../helpers/client.js'
import { startCluster } from '../helpers/cluster.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'
import { user } from '../helpers/sdk.js'
import { sioConnect, type SioClient } from '../helpers/sio.js'
import { TEST_API_KEY, adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const { redis, nodes } = await startCluster(t, {}, 2)
const [A, B] = nodes as [NodeProc, NodeProc]

/** What one client received: event and notification ids, in order. */
interface Receiver { name: string, ids: () => string[], has: (id: string) => boolean }

async function wsReceiver (t: Test, node: NodeProc, path: '/ws/events' | '/ws/admin', tok: string, name: string): Promise<Receiver & { c: TestClient }> {
  const c = await connect(`${node.ws}${path}`, { token: tok })
  t.teardown(() => c.close())
  await c.subscribe(['*'])
  const ids = (): string[] => c.frames.filter((f) => f.type === 'event' || f.type === 'notification').map((f) => f.payload.id as string)
  return { c, name, ids, has: (id) => ids().includes(id) }
}

async function sioReceiver (t: Test, node: NodeProc, tok: string, name: string): Promise<Receiver & { s: SioClient }> {
  const { client: s } = await sioConnect(node.http, { transports: ['websocket'], auth: { token: tok } })
  t.teardown(() => s.close())
  await s.subscribe(['*'])
  const ids = (): string[] => s.records.filter((r) => r.event === 'event' || r.event === 'notification').map((r) => r.payload.id as string)
  return { s, name, ids, has: (id) => ids().includes(id) }
}

const arrives = async (r: Receiver, id: string): Promise<void> => {
  await waitFor(`${id} at ${r.name}`, () => r.has(id), Boolean, { timeoutMs: 5000, intervalMs: 10 })
}

/**
 * Publishes the whole catalogue of helpers with `p` and checks the audience of
 * each: user u (on two nodes), user v, an admin. Sentinels published last per
 * receiver prove that nothing else is still on its way.
 */
async function audienceRound (t: Test, mode: 'http' | 'redis', p: HeraldPublisher, u: Receiver[], v: Receiver, admin: Receiver, uId: string, vId: string): Promise<void> {
  const sent = {
    auth: await p.publishAuthenticationEvent('authentication.login.success', uId, `${uId}-sid`, { ip: '203.0.113.5' }),
    security: await p.publishSecurityEvent('security.high_risk.detected', uId, undefined, { score: 97 }),
    securityNoUser: await p.publishSecurityEvent('security.suspicious.activity', undefined, undefined, { source: 'waf' }),
    session: await p.publishSessionEvent('session.created', uId, `${uId}-sid2`),
    adminAboutU: await p.publishAdminEvent('admin.user.updated', { field: 'email' }, uId),
    system: await p.publishSystemEvent('system.maintenance.scheduled', { at: '01:00' }),
    custom: await p.publish('billing.invoice.created', { userId: uId, data: { amount: 12 } }),
    toU: await p.sendUserNotification(uId, 'warning', 'New sign-in', 'from a new device', { device: 'phone' }),
    toAll: await p.sendBroadcastNotification('info', 'Maintenance', 'tonight at 01:00'),
    sentinelU: await p.publishAuthenticationEvent('authentication.logout', uId),
    sentinelV: await p.publishAuthenticationEvent('authentication.logout', vId),
    sentinelAdmin: await p.publishAdminEvent('admin.user.deleted', { sentinel: true }),
  }
  for (const id of Object.values(sent)) t.match(id, /\S/, 'each call resolves with the id')
  t.equal(new Set(Object.values(sent)).size, Object.keys(sent).length, 'distinct ids')

  for (const r of u) await arrives(r, sent.sentinelU)
  await arrives(v, sent.sentinelV)
  await arrives(admin, sent.sentinelAdmin)
  for (const r of u) {
    t.same(r.ids(), [sent.auth, sent.security, sent.session, sent.system, sent.custom, sent.toU, sent.toAll, sent.sentinelU],
      `${r.name}: its events, system.*, its notification and the broadcast, in order; no admin.* nor user-less security event`)
  }
  t.same(v.ids(), [sent.system, sent.toAll, sent.sentinelV], `${v.name}: only the broadcasts and its own event`)
  // A broadcast through a node's API is an operator action, audited as admin.notification.broadcast;
  // one written straight onto Redis has no node to audit it.
  const adminFrames = (admin as Receiver & { c: TestClient }).c.frames.filter((f) => f.type === 'event' || f.type === 'notification')
  const audits = adminFrames.filter((f) => f.payload.type === 'admin.notification.broadcast')
  if (mode === 'http') t.match(audits.map((f) => f.payload.data), [{ notificationId: sent.toAll, level: 'info', title: 'Maintenance' }], 'the HTTP broadcast was audited for admins')
  else t.same(audits, [], 'no audit event from a publisher that bypasses the nodes')
  t.same(adminFrames.filter((f) => !audits.includes(f)).map((f) => f.payload.id), [sent.auth, sent.security, sent.securityNoUser, sent.session, sent.adminAboutU, sent.system, sent.custom, sent.sentinelU, sent.sentinelV, sent.sentinelAdmin],
    `${admin.name}: every event, admin.* included, and no notifications`)

  // What arrived is what was published.
  const onWs = (u.find((r) => 'c' in r) as (Receiver & { c: TestClient }) | undefined)?.c
  if (onWs !== undefined) {
    t.match(onWs.frames.find((f) => f.payload?.id === sent.auth)!.payload, { type: 'authentication.login.success', userId: uId, sessionId: `${uId}-sid`, data: { ip: '203.0.113.5' } })
    t.match(onWs.frames.find((f) => f.payload?.id === sent.toU)!.payload, { level: 'warning', title: 'New sign-in', message: 'from a new device', data: { device: 'phone' } })
    t.match(onWs.frames.find((f) => f.payload?.id === sent.custom)!.payload, { type: 'billing.invoice.created', data: { amount: 12 } })
  }
}

t.test('over HTTP: typed helpers reach the right audiences', { timeout: 30_000 }, async (t) => {
  const uId = user('http-u')
  const vId = user('http-v')
  const u1 = await wsReceiver(t, A, '/ws/events', userToken(uId), 'u on A (ws)')
  const u2 = await sioReceiver(t, B, userToken(uId), 'u on B (Socket.IO)')
  const v = await wsReceiver(t, B, '/ws/events', userToken(vId), 'v on B')
  const admin = await wsReceiver(t, A, '/ws/admin', adminToken(user('admin')), 'admin on A')
  // Trailing slash on the URL is fine.
  const p = new HeraldPublisher({ url: `${B.http}/`, apiKey: TEST_API_KEY })
  await audienceRound(t, 'http', p, [u1, u2], v, admin, uId, vId)
})

t.test('over HTTP: bad input is a PublishError 400 VALIDATION; a wrong key is 401', { timeout: 30_000 }, async (t) => {
  const p = new HeraldPublisher({ url: A.http, apiKey: TEST_API_KEY })
  const bad: Array<[string, () => Promise<string>]> = [
    ['an invalid type', () => p.publish('Not A Type')],
    ['a userId with a tab', () => p.publishAuthenticationEvent('authentication.login.success', 'a\tb')],
    ['data that is not an object', () => p.publish('billing.invoice.created', { data: [1, 2] as any })],
    ['an unknown level', () => p.sendUserNotification('someone', 'loud' as any, 't', 'm')],
    ['an empty title', () => p.sendBroadcastNotification('info', '', 'm')],
  ]
  for (const [what, call] of bad) {
    const err = await call().then(() => null, (e: unknown) => e)
    t.type(err, PublishError, `${what}: PublishError`)
    t.match(err, { status: 400, code: 'VALIDATION' }, `${what}: 400 VALIDATION`)
    t.match((err as Error).message, /\S/)
  }
  const wrongKey = new HeraldPublisher({ url: A.http, apiKey: 'not-the-key-0123456789abcdef' })
  const e401 = await wrongKey.publishSystemEvent('system.maintenance.scheduled').then(() => null, (e: unknown) => e)
  t.type(e401, PublishError)
  t.match(e401, { status: 401, code: 'CREDENTIAL_INVALID' })
  const e401n = await wrongKey.sendBroadcastNotification('info', 't', 'm').then(() => null, (e: unknown) => e)
  t.match(e401n, { status: 401 })
})

t.test('straight onto Redis: events and notifications reach clients on two nodes, with the same audience rules', { timeout: 30_000 }, async (t) => {
  const rc = new Redis({ port: redis.port, host: '127.0.0.1', maxRetriesPerRequest: 1 })
  t.teardown(() => rc.disconnect())
  const uId = user('redis-u')
  const vId = user('redis-v')
  const u1 = await wsReceiver(t, B, '/ws/events', userToken(uId), 'u on B (ws)')
  const u2 = await sioReceiver(t, A, userToken(uId), 'u on A (Socket.IO)')
  const v = await wsReceiver(t, A, '/ws/events', userToken(vId), 'v on A')
  const admin = await wsReceiver(t, B, '/ws/admin', adminToken(user('admin')), 'admin on B')
  const p = new HeraldPublisher({ redis: rc, keyPrefix: 'herald:' })
  await audienceRound(t, 'redis', p, [u1, u2], v, admin, uId, vId)
})

t.test('straight onto Redis: invalid input is rejected before anything is published', { timeout: 30_000 }, async (t) => {
  const rc = new Redis({ port: redis.port, host: '127.0.0.1', maxRetriesPerRequest: 1 })
  t.teardown(() => rc.disconnect())
  const spy = new Redis({ port: redis.port, host: '127.0.0.1', maxRetriesPerRequest: 1 })
  t.teardown(() => spy.disconnect())
  const seen: string[] = []
  // Every event and notification message (kind e or n) on Herald's channels; nothing else publishes any during this test.
  spy.on('pmessage', (_p: string, channel: string, message: string) => { if (/^[en]\t/.test(message)) seen.push(`${channel} ${message.split('\t')[3]}`) })
  await spy.psubscribe('herald:*')
  const uId = user('redis-check')
  const u = await wsReceiver(t, A, '/ws/events', userToken(uId), 'u on A')
  const p = new HeraldPublisher({ redis: rc, keyPrefix: 'herald:' })

  const bad: Array<[string, () => Promise<string>]> = [
    ['an invalid type', () => p.publish('Not A Type', { userId: uId })],
    ['a type with a tab', () => p.publish('authentication.login\t.success', { userId: uId })],
    ['a userId with a tab', () => p.publishAuthenticationEvent('authentication.login.success', `${uId}\tx`)],
    ['a sessionId with a tab', () => p.publishSessionEvent('session.created', uId, 's\t1')],
    ['a notification to a userId with a tab', () => p.sendUserNotification(`${uId}\tx`, 'info', 't', 'm')],
    ['an unknown level', () => p.sendBroadcastNotification('loud' as any, 't', 'm')],
    ['data that is not an object', () => p.publish('billing.invoice.created', { userId: uId, data: 'x' as any })],
  ]
  for (const [what, call] of bad) {
    const err = await call().then(() => null, (e: unknown) => e)
    t.ok(err instanceof Error, `${what}: rejected`)
    t.type(err, PublishError, `${what}: a PublishError, as over HTTP`)
    t.match(err, { status: 400, code: 'VALIDATION' }, `${what}: 400 VALIDATION`)
  }
  // The first message of this publisher that reaches Redis is the valid one sent after the rejected calls.
  const ok = await p.publishAuthenticationEvent('authentication.login.success', uId)
  await arrives(u, ok)
  // A user event goes to the user's channel and the admin channel: two messages, and nothing before them.
  await waitFor('the spy saw the valid event on both its channels', () => seen.length, (n) => n >= 2)
  t.same([...seen].sort(), [`herald:{a} authentication.login.success`, `herald:{u:${uId}} authentication.login.success`], 'only the valid event reached Redis')
  t.notOk(seen.some((s) => s.includes('\tx')), 'no rejected call published')
  t.same(u.ids(), [ok], 'and the user received only that')
})

t.test('straight onto a Redis Cluster: an ioredis Cluster is detected and published to with SPUBLISH, reaching clients of a node', { timeout: 60_000 }, async (t) => {
  const rcl = await startRedisCluster(3)
  t.teardown(() => rcl.stop())
  const N = await startNode({ REDIS_CLUSTER_NODES: rcl.nodes, SERVER_ID: `pub-cluster-${process.pid}`, NODE_TTL: '3000' })
  t.teardown(() => N.stop())
  const cluster = new Cluster(rcl.ports.map((port) => ({ host: '127.0.0.1', port })), { redisOptions: { maxRetriesPerRequest: 1 } })
  t.teardown(() => cluster.disconnect())
  const uId = user('cluster-u')
  const u = await wsReceiver(t, N, '/ws/events', userToken(uId), 'u on the Redis Cluster node')
  const admin = await wsReceiver(t, N, '/ws/admin', adminToken(user('admin')), 'admin on the Redis Cluster node')

  // No `sharded` option: the Cluster is recognised.
  const p = new HeraldPublisher({ redis: cluster, keyPrefix: 'herald:' })
  const ev = await p.publishAuthenticationEvent('authentication.login.success', uId, `${uId}-sid`, { ip: '203.0.113.7' })
  const sys = await p.publishSystemEvent('system.maintenance.scheduled', { at: '03:00' })
  const note = await p.sendUserNotification(uId, 'info', 'Hello', 'from a service on the cluster')
  const adminOnly = await p.publishAdminEvent('admin.user.updated', { field: 'role' })
  for (const id of [ev, sys, note]) await arrives(u, id)
  for (const id of [ev, sys, adminOnly]) await arrives(admin, id)
  t.same(u.ids(), [ev, sys, note], 'the user event, the broadcast and the notification, in order, over user and broadcast shards')
  t.match(u.c.frames.find((f) => f.payload?.id === ev)!.payload, { type: 'authentication.login.success', userId: uId, data: { ip: '203.0.113.7' } })

  // An explicit `sharded: false` is honoured: a classic PUBLISH, which the node (listening with SSUBSCRIBE) never hears.
  const spy = rcl.client(rcl.ports[0]!)
  const seen: string[] = []
  spy.on('message', (_c: string, m: string) => seen.push(m))
  await spy.subscribe(`herald:{u:${uId}}`)
  // With history off the message is nowhere else, so the node never has it.
  const classic = new HeraldPublisher({ redis: cluster, keyPrefix: 'herald:', sharded: false, history: false })
  const lost = await classic.publishAuthenticationEvent('authentication.logout', uId)
  await waitFor('the classic message on the wire', () => seen.some((m) => m.includes(lost)), Boolean, { timeoutMs: 5000, intervalMs: 10 })
  const sentinel = await p.publishAuthenticationEvent('authentication.logout', uId)
  await arrives(u, sentinel)
  t.notOk(u.has(lost), 'the node did not deliver the classic publish (why sharding is detected)')

  // With history on it is in the user's stream: the node does not hear it,
  // but the next message's offset shows the gap and the node reads it back
  // (src/events/gaps.ts), late and in its place.
  const classicWithHistory = new HeraldPublisher({ redis: cluster, keyPrefix: 'herald:', sharded: false })
  const unheard = await classicWithHistory.publishAuthenticationEvent('authentication.logout', uId)
  await waitFor('the classic message on the wire', () => seen.some((m) => m.includes(unheard)), Boolean, { timeoutMs: 5000, intervalMs: 10 })
  const next = await p.publishAuthenticationEvent('authentication.logout', uId)
  await arrives(u, next)
  t.same(u.ids().slice(-2), [unheard, next], 'read back when the next message showed the gap, before it')
})

t.test('straight onto Redis: each publish is appended to its stream as a node appends it, unless told the nodes keep no history', { timeout: 30_000 }, async (t) => {
  const rc = new Redis({ port: redis.port, host: '127.0.0.1', maxRetriesPerRequest: 1 })
  t.teardown(() => rc.disconnect())
  const uId = user('history-u')
  const u = await wsReceiver(t, A, '/ws/events', userToken(uId), 'u on A')
  const p = new HeraldPublisher({ redis: rc, keyPrefix: 'herald:' })
  const first = await p.publishWithReceipt('authentication.login.success', { userId: uId })
  const second = await p.notifyWithReceipt(uId, 'info', 'Hi', 'there')
  t.match(first, { stream: `user:${uId}`, offset: 1, epoch: /^[A-Za-z0-9_-]{8}$/ }, 'an event: its stream and position')
  t.same([second.stream, second.offset, second.epoch], [first.stream, 2, first.epoch], 'a notification to the same user: the next offset of that stream')
  await arrives(u, second.id)
  t.match(u.c.frames.find((f) => f.payload?.id === first.id)!.payload, { stream: first.stream, offset: 1, epoch: first.epoch }, 'delivered at that position')
  const viaNode = await A.api('/api/events', { body: { type: 'authentication.logout', userId: uId } })
  t.same([viaNode.body.offset, viaNode.body.epoch], [3, first.epoch], 'a node publishing to the same stream continues the count')

  for (const history of [false, { size: 0, ttlMs: 60_000 }] as const) {
    const off = new HeraldPublisher({ redis: rc, keyPrefix: 'herald:', history })
    const r = await off.publishWithReceipt('authentication.login.success', { userId: uId })
    t.same(r, { id: r.id }, `history ${JSON.stringify(history)}: the receipt is the id alone`)
    await arrives(u, r.id)
    t.notOk('offset' in u.c.frames.find((f) => f.payload?.id === r.id)!.payload, 'and the message carries no position')
  }
  t.throws(() => new HeraldPublisher({ redis: rc, history: { size: -1, ttlMs: 1000 } }), /history\.size must be a whole number >= 0/, 'a history that is no retention is refused')
  const plain = { publish: async () => 1 }
  t.throws(() => new HeraldPublisher({ redis: plain }), /history needs a Redis client that runs scripts/, 'a client that cannot run the append script is refused at once, not at the first publish')
  t.throws(() => new HeraldPublisher({ redis: plain, history: false }), /webhooks need a Redis client that runs scripts/, 'nor can it enqueue webhook jobs')
  t.doesNotThrow(() => new HeraldPublisher({ redis: plain, history: false, webhooks: false }), 'it publishes with history and webhooks off')
})
