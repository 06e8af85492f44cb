// Delivery end to end on one node: POST /api/events and the
// notification routes, to real WebSocket clients, under the audience rules of
// src/events/audience.ts. "Not received" is always shown by a later sentinel
// the same client must receive: delivery to one connection keeps publish order.
import t, { type Test } from 'tap'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

interface Setup {
  node: RunningApp
  user (sub: string, patterns?: string[]): Promise<TestClient>
  admin (sub?: string, patterns?: string[]): Promise<TestClient>
  publish (body: Record<string, unknown>): Promise<string>
  notify (userId: string | null, body?: Record<string, unknown>): Promise<string>
}

// The same suite runs on both brokers: in-process here, and on a private
// Redis when delivery-redis.test.ts sets HERALD_TEST_BROKER=redis.
const redis = process.env.HERALD_TEST_BROKER === 'redis' ? await startRedis() : null
if (redis !== null) t.teardown(() => redis.stop())
const brokerEnv = (): Record<string, string> => redis !== null ? { REDIS_URL: redis.url } : {}

async function setup (t: Test): Promise<Setup> {
  const node = await startApp(brokerEnv())
  t.teardown(() => node.close())
  const open = async (path: string, tok: string, patterns: string[]): Promise<TestClient> => {
    const c = await connect(`${node.ws}${path}`, { token: tok })
    t.teardown(() => c.close())
    if (patterns.length > 0) await c.subscribe(patterns)
    return c
  }
  return {
    node,
    user: async (sub, patterns = []) => await open('/ws/events', userToken(sub), patterns),
    admin: async (sub = 'root', patterns = []) => await open('/ws/admin', adminToken(sub), patterns),
    async publish (body) {
      const r = await node.api('/api/events', { body })
      if (r.status !== 202) throw new Error(`publish refused: ${r.status} ${JSON.stringify(r.body)}`)
      return r.body.id as string
    },
    async notify (userId, body = { level: 'info', title: 'Hello', message: 'Something happened' }) {
      const path = userId === null ? '/api/notifications/broadcast' : `/api/notifications/users/${encodeURIComponent(userId)}`
      const r = await node.api(path, { body })
      if (r.status !== 202) throw new Error(`notify refused: ${r.status} ${JSON.stringify(r.body)}`)
      return r.body.id as string
    },
  }
}

const isEvent = (id: string) => (f: Frame): boolean => f.type === 'event' && f.payload?.id === id
const isNotification = (id: string) => (f: Frame): boolean => f.type === 'notification' && f.payload?.id === id

/** Waits for the sentinel on c, then asserts that none of `absent` arrived before it. */
async function absentBefore (t: Test, c: TestClient, sentinel: (f: Frame) => boolean, absent: Array<(f: Frame) => boolean>, label: string): Promise<void> {
  await c.next(sentinel)
  for (const [i, pred] of absent.entries()) t.notOk(c.frames.some(pred), `${label}${absent.length > 1 ? ` (#${i + 1})` : ''}`)
}

t.test('an event reaches its subscriber with the documented payload', async (t) => {
  const s = await setup(t)
  const alice = await s.user('alice', ['authentication.*'])
  const before = Date.now()
  const id = await s.publish({ type: 'authentication.login.success', userId: 'alice', sessionId: 'sess-9', data: { ip: '203.0.113.7', method: 'password', nested: { ok: true } } })
  const ev = await alice.next(isEvent(id))
  t.equal(ev.id, undefined, 'a push carries no request id')
  t.same(Object.keys(ev).sort(), ['payload', 'type'])
  t.same(Object.keys(ev.payload).sort(), ['data', 'epoch', 'id', 'offset', 'sessionId', 'stream', 'timestamp', 'type', 'userId'])
  t.match(ev.payload, { id, type: 'authentication.login.success', userId: 'alice', sessionId: 'sess-9', stream: 'user:alice', offset: Number, epoch: String })
  t.same(ev.payload.data, { ip: '203.0.113.7', method: 'password', nested: { ok: true } })
  const ts = Date.parse(ev.payload.timestamp)
  t.ok(ts >= before - 1000 && ts <= Date.now() + 1000, 'timestamp is the publish time')
  t.equal(new Date(ts).toISOString(), ev.payload.timestamp, 'timestamp is ISO 8601')

  // No data: data is {}; no sessionId: the key is absent.
  const id2 = await s.publish({ type: 'authentication.logout', userId: 'alice' })
  const ev2 = await alice.next(isEvent(id2))
  t.same(ev2.payload.data, {})
  t.notOk('sessionId' in ev2.payload)
  // Ids from one node sort in publish order.
  t.ok(id2 > id, 'later event, larger id')
})

t.test('wildcard subscriptions, end to end', async (t) => {
  const s = await setup(t)
  const types = [
    'authentication.login.success', 'authentication.login', 'authentication.logout', 'session.login.failed.twice',
    'a.b.c', 'a.b.x.c', 'a.c', 'authentication',
  ]
  const expected: Record<string, string[]> = {
    '*.login.*': ['authentication.login.success', 'session.login.failed.twice'],
    'a.*.c': ['a.b.c'],
    'authentication.*': ['authentication.login.success', 'authentication.login', 'authentication.logout'],
    '*': types,
    'authentication.login': ['authentication.login'],
    '*.*': ['authentication.login.success', 'authentication.login', 'authentication.logout', 'session.login.failed.twice', 'a.b.c', 'a.b.x.c', 'a.c'],
  }
  const clients = new Map<string, TestClient>()
  for (const pattern of Object.keys(expected)) clients.set(pattern, await s.user('wanda', [pattern, 'zz.sentinel']))
  for (const type of types) await s.publish({ type, userId: 'wanda' })
  const sentinel = await s.publish({ type: 'zz.sentinel', userId: 'wanda' })
  for (const [pattern, c] of clients) {
    await c.next(isEvent(sentinel))
    const got = c.frames.filter((f) => f.type === 'event' && f.payload.type !== 'zz.sentinel').map((f) => f.payload.type)
    t.same(got, expected[pattern], `${pattern} receives exactly its matches, in order`)
  }
})

t.test('a user never receives another user\'s event, even subscribed to *', async (t) => {
  const s = await setup(t)
  const alice = await s.user('alice', ['*'])
  const bob = await s.user('bob', ['*'])
  const absent: Array<(f: Frame) => boolean> = []
  for (const [userId, type] of [['bob', 'authentication.login.success'], ['bob', 'security.password.changed'], ['ALICE', 'authentication.login.success'], ['alic', 'session.created'], ['alice ', 'session.created'], ['alice2', 'session.created'], ['alice:x', 'session.created']] as const) {
    const id = await s.publish({ type, userId })
    absent.push(isEvent(id))
    if (userId === 'bob') t.equal((await bob.next(isEvent(id))).payload.userId, 'bob', 'the owner receives it')
  }
  const sentinel = await s.publish({ type: 'session.created', userId: 'alice' })
  await absentBefore(t, alice, isEvent(sentinel), absent, 'alice does not receive it')
  t.notOk(alice.frames.some((f) => f.type === 'event' && f.payload.userId !== undefined && f.payload.userId !== 'alice'), 'alice saw no event of any other user')
})

t.test('system.* reaches every subscribed user and admin, and nobody unsubscribed', async (t) => {
  const s = await setup(t)
  const alice = await s.user('alice', ['system.*'])
  const bob = await s.user('bob', ['*'])
  const carol = await s.user('carol', ['authentication.*'])
  const admin = await s.admin('root', ['system.*'])
  const quietAdmin = await s.admin('root2', ['authentication.*'])

  const id = await s.publish({ type: 'system.maintenance.scheduled', data: { at: '02:00' } })
  for (const [name, c] of [['alice', alice], ['bob', bob], ['admin', admin]] as const) {
    const ev = await c.next(isEvent(id))
    t.same(ev.payload.data, { at: '02:00' }, `${name} receives it`)
  }
  // A system event naming a user is that user's (and admins'): it carries her data.
  const withUser = await s.publish({ type: 'system.notice', userId: 'alice', data: { secret: 'alice only' } })
  t.same((await alice.next(isEvent(withUser))).payload.data, { secret: 'alice only' }, 'the named user receives it')
  await admin.next(isEvent(withUser))

  const sentinel = await s.publish({ type: 'authentication.login.success', userId: 'carol' })
  const bobSentinel = await s.publish({ type: 'authentication.login.success', userId: 'bob' })
  await absentBefore(t, bob, isEvent(bobSentinel), [isEvent(withUser)], 'bob (subscribed to *) does not receive alice\'s system event')
  await absentBefore(t, carol, isEvent(sentinel), [isEvent(id), isEvent(withUser)], 'carol (not subscribed to system.*) does not receive it')
  await absentBefore(t, quietAdmin, isEvent(sentinel), [isEvent(id), isEvent(withUser)], 'an admin not subscribed to system.* does not receive it')
})

t.test('admin.* reaches admins only, never a user subscribed to *', async (t) => {
  const s = await setup(t)
  const alice = await s.user('alice', ['*', 'admin.*'])
  const admin = await s.admin('root', ['*'])
  const adminNarrow = await s.admin('root2', ['admin.user.*'])
  const withUser = await s.publish({ type: 'admin.user.banned', userId: 'alice', data: { by: 'root' } })
  const noUser = await s.publish({ type: 'admin.config.changed' })
  t.equal((await admin.next(isEvent(withUser))).payload.userId, 'alice')
  await admin.next(isEvent(noUser))
  await adminNarrow.next(isEvent(withUser))
  const sentinel = await s.publish({ type: 'authentication.login.success', userId: 'alice' })
  await absentBefore(t, alice, isEvent(sentinel), [isEvent(withUser), isEvent(noUser)], 'alice does not receive admin.* events, even about herself')
  const narrowSentinel = await s.publish({ type: 'admin.user.sentinel' })
  await absentBefore(t, adminNarrow, isEvent(narrowSentinel), [isEvent(noUser)], 'the narrow admin receives only what its pattern matches')
})

t.test('an event with no userId that is not system.* reaches admins only', async (t) => {
  const s = await setup(t)
  const alice = await s.user('alice', ['*'])
  const bob = await s.user('bob', ['security.*'])
  const admin = await s.admin('root', ['security.*'])
  const id = await s.publish({ type: 'security.alert.raised', data: { severity: 'high' } })
  t.same((await admin.next(isEvent(id))).payload.data, { severity: 'high' })
  t.notOk('userId' in (await admin.next(isEvent(id))).payload)
  const sa = await s.publish({ type: 'security.login', userId: 'alice' })
  const sb = await s.publish({ type: 'security.login', userId: 'bob' })
  await absentBefore(t, alice, isEvent(sa), [isEvent(id)], 'alice (subscribed to *) does not receive it')
  await absentBefore(t, bob, isEvent(sb), [isEvent(id)], 'bob (subscribed to security.*) does not receive it')
})

t.test('admins subscribed receive every user\'s events; unsubscribed admins do not', async (t) => {
  const s = await setup(t)
  await s.user('alice', ['authentication.*'])
  const admin = await s.admin('root', ['authentication.*'])
  const quiet = await s.admin('root2', ['session.*'])
  const ids: string[] = []
  for (const userId of ['alice', 'bob', 'nobody-connected']) ids.push(await s.publish({ type: 'authentication.login.failure', userId }))
  for (const [i, id] of ids.entries()) t.equal((await admin.next(isEvent(id))).payload.userId, ['alice', 'bob', 'nobody-connected'][i])
  const sentinel = await s.publish({ type: 'session.created', userId: 'bob' })
  await absentBefore(t, quiet, isEvent(sentinel), ids.map(isEvent), 'admin subscribed to session.* only gets no authentication events')
  // And the admin's own subscription is what is matched.
  await absentBefore(t, admin, isEvent(await s.publish({ type: 'authentication.sentinel', userId: 'carol' })), [isEvent(sentinel)], 'admin does not receive session.* it is not subscribed to')
})

t.test('overlapping patterns deliver once', async (t) => {
  const s = await setup(t)
  const overlap = ['*', '*.*', 'authentication.*', 'authentication.login.*', '*.login.*', 'authentication.login.success', 'system.*']
  const a1 = await s.user('alice', overlap)
  const a2 = await s.user('alice', overlap)
  const admin = await s.admin('root', overlap)
  const userEv = await s.publish({ type: 'authentication.login.success', userId: 'alice' })
  const sysEv = await s.publish({ type: 'system.restart' })
  const sentinel = await s.publish({ type: 'zz.end', userId: 'alice' })
  for (const [name, c] of [['alice #1', a1], ['alice #2', a2], ['admin', admin]] as const) {
    await c.next(isEvent(sentinel))
    t.equal(c.count(isEvent(userEv)), 1, `${name}: user event once`)
    t.equal(c.count(isEvent(sysEv)), 1, `${name}: system event once`)
  }
})

t.test('unsubscribed types are not delivered, and unsubscribe stops delivery', async (t) => {
  const s = await setup(t)
  const alice = await s.user('alice', ['authentication.*', 'session.*'])
  const other = await s.publish({ type: 'security.password.changed', userId: 'alice' })
  const got = await s.publish({ type: 'session.created', userId: 'alice' })
  await alice.next(isEvent(got))
  const r = await alice.request('unsubscribe', { eventTypes: ['session.*'] })
  t.same(r.payload.eventTypes, ['authentication.*'])
  const after = await s.publish({ type: 'session.ended', userId: 'alice' })
  const sentinel = await s.publish({ type: 'authentication.logout', userId: 'alice' })
  await absentBefore(t, alice, isEvent(sentinel), [isEvent(other), isEvent(after)], 'not delivered')
  // Unsubscribing everything: nothing arrives, but notifications still do.
  await alice.request('unsubscribe', { eventTypes: ['authentication.*'] })
  const none = await s.publish({ type: 'authentication.logout', userId: 'alice' })
  const note = await s.notify('alice')
  await absentBefore(t, alice, isNotification(note), [isEvent(none)], 'no events once no pattern is held')
})

t.test('a user notification reaches only that user\'s /ws/events connections, without a subscription', async (t) => {
  const s = await setup(t)
  const a1 = await s.user('alice')
  const a2 = await s.user('alice', ['authentication.*'])
  const bob = await s.user('bob', ['*'])
  const adminAlice = await s.admin('alice', ['*'])
  const before = Date.now()
  const id = await s.notify('alice', { level: 'warning', title: 'New sign-in', message: 'From a new device', data: { device: 'phone' } })
  for (const c of [a1, a2]) {
    const n = await c.next(isNotification(id))
    t.equal(n.id, undefined)
    t.same(Object.keys(n.payload).sort(), ['data', 'epoch', 'id', 'level', 'message', 'offset', 'stream', 'timestamp', 'title'])
    t.match(n.payload, { id, level: 'warning', title: 'New sign-in', message: 'From a new device', data: { device: 'phone' } })
    t.ok(Date.parse(n.payload.timestamp) >= before - 1000)
  }
  // Without data the key is absent.
  const plain = await s.notify('alice', { level: 'critical', title: 't', message: 'm' })
  t.notOk('data' in (await a1.next(isNotification(plain))).payload)

  const bobSentinel = await s.notify('bob')
  await absentBefore(t, bob, isNotification(bobSentinel), [isNotification(id), isNotification(plain)], 'bob does not receive alice\'s notification')
  const adminSentinel = await s.publish({ type: 'authentication.login.success', userId: 'alice' })
  await absentBefore(t, adminAlice, isEvent(adminSentinel), [(f) => f.type === 'notification'], 'an admin connection of the same user receives no notification')
  // Every documented level (docs/protocol.md).
  for (const level of ['info', 'success', 'warning', 'error', 'critical']) {
    const n = await s.notify('alice', { level, title: level, message: level })
    t.equal((await a1.next(isNotification(n))).payload.level, level)
  }
})

t.test('a broadcast notification reaches every /ws/events connection and no admin', async (t) => {
  const s = await setup(t)
  const users = [await s.user('alice'), await s.user('bob', ['*']), await s.user('carol', ['authentication.*']), await s.user('alice')]
  const admin = await s.admin('root', ['*'])
  const id = await s.notify(null, { level: 'info', title: 'Maintenance', message: 'Tonight at 02:00' })
  for (const [i, c] of users.entries()) {
    const n = await c.next(isNotification(id))
    t.match(n.payload, { id, level: 'info', title: 'Maintenance', message: 'Tonight at 02:00' }, `connection ${i + 1} receives it`)
    t.equal(c.count(isNotification(id)), 1, `connection ${i + 1}: once`)
  }
  const sentinel = await s.publish({ type: 'security.sentinel' })
  await absentBefore(t, admin, isEvent(sentinel), [(f) => f.type === 'notification'], 'the admin receives no notification')
})

t.test('a user\'s connections come and go: each one left still receives, the last one out releases the user', async (t) => {
  // The node's registry holds a user's single connection as is and a set from the second:
  // every step between the two forms must keep delivery to who is left.
  const s = await setup(t)
  const registry = s.node.app.herald.connections
  const held = (userId: string): number => { let n = 0; registry.forEachOfUser(userId, () => n++); return n }
  const first = await s.user('dora', ['authentication.*'])
  const second = await s.user('dora', ['authentication.*'])
  const third = await s.user('dora', ['authentication.*'])
  const both = await s.publish({ type: 'authentication.login.success', userId: 'dora' })
  for (const c of [first, second, third]) await c.next(isEvent(both))
  t.equal(held('dora'), 3)
  const note = await s.notify('dora')
  for (const c of [first, second, third]) await c.next(isNotification(note))

  first.close()
  await first.closed
  second.close()
  await second.closed
  await waitFor('the node to hold one connection of dora', () => held('dora'), (n) => n === 1, { timeoutMs: 2000, intervalMs: 10 })
  const after = await s.publish({ type: 'authentication.login.success', userId: 'dora' })
  const broadcast = await s.notify(null)
  await third.next(isEvent(after))
  await third.next(isNotification(broadcast))
  t.equal(third.count(isEvent(after)), 1, 'once')

  const again = await s.user('dora', ['authentication.*'])
  t.equal(held('dora'), 2, 'a set again from the second connection')
  third.close()
  await third.closed
  await waitFor('the node to hold one connection of dora', () => held('dora'), (n) => n === 1, { timeoutMs: 2000, intervalMs: 10 })
  const last = await s.publish({ type: 'authentication.login.success', userId: 'dora' })
  await again.next(isEvent(last))
  again.close()
  await again.closed
  await waitFor('the node to let dora go', () => held('dora'), (n) => n === 0, { timeoutMs: 2000, intervalMs: 10 })
  t.equal(registry.users, 0)
})

t.test('a `guest` role in a JWT makes nobody an anonymous guest', async (t) => {
  // Guests (ALLOW_ANONYMOUS) are filed apart in the hub and skip the user
  // channel; a token must not be able to opt into that, or out of its events.
  const node = await startApp({ ALLOW_ANONYMOUS: 'true', ...brokerEnv() })
  t.teardown(() => node.close())
  const tok = userToken('gina', 'gina-session', { roles: ['guest'] })
  const gina = await connect(`${node.ws}/ws/events`, { token: tok })
  t.teardown(() => gina.close())
  t.equal((await gina.nextOfType('welcome')).payload.userId, 'gina', 'the token\'s subject, not a guest id')
  await gina.subscribe(['authentication.*'])
  const ev = await node.api('/api/events', { body: { type: 'authentication.login.success', userId: 'gina' } })
  await gina.next(isEvent(ev.body.id))
  const note = await node.api('/api/notifications/users/gina', { body: { level: 'info', title: 'for gina', message: 'x' } })
  await gina.next(isNotification(note.body.id))

  // Refreshing to a token that claims `guest` changes nothing either: on close
  // the connection leaves the user's set and the user's channel is dropped.
  gina.send({ type: 'refresh', id: 'gina-refresh', payload: { token: userToken('gina', 'gina-session', { roles: ['guest'], exp: Math.floor(Date.now() / 1000) + 7200 }) } })
  t.equal((await gina.next((f) => f.id === 'gina-refresh')).type, 'refreshed')
  gina.close()
  await gina.closed
  const registry = node.app.herald.connections
  let held = 0
  await waitFor('the node to let gina go', () => { held = 0; registry.forEachOfUser('gina', () => held++); return held }, (n) => n === 0, { timeoutMs: 2000, intervalMs: 10 })
  t.equal(registry.users, 0)
})
