// Streams over the HTTP API, as a backend service uses them: every publish
// answers with the stream and position it got, and a service catches up on a
// stream with GET /api/streams/:stream/events, a page at a time. Refusals
// say what was wrong: an unknown stream, a bad offset or limit, a cluster
// with history off, a credential that is not a service's.
import t from 'tap'
import { startApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, serviceToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const ALICE = `alice-${process.pid}`

t.test('publishes answer with their stream and position; GET /api/streams reads each stream back, as clients received it', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startApp({ REDIS_URL: redis.url, HEALTH_PROBE_INTERVAL: '200' })
  t.teardown(() => node.close())
  await waitFor('the node ready', async () => (await node.api('/ws/health', { key: '' })).status, (s) => s === 200, { timeoutMs: 10_000 })
  const alice = await connect(`${node.ws}/ws/events`, { token: userToken(ALICE) })
  t.teardown(() => alice.close())
  await alice.subscribe(['*'])

  const published = [
    await node.api('/api/events', { body: { type: 'authentication.login.success', userId: ALICE, data: { n: 1 } } }),
    await node.api('/api/events', { body: { type: 'session.created', userId: ALICE, sessionId: 's1' } }),
    await node.api(`/api/notifications/users/${ALICE}`, { body: { level: 'info', title: 'Hi', message: 'there' } }),
    await node.api('/api/events', { body: { type: 'billing.invoice.created', userId: ALICE, data: { n: 4 } } }),
  ]
  t.same(published.map((r) => r.status), [202, 202, 202, 202])
  const epoch = published[0]!.body.epoch as string
  t.match(epoch, /^[A-Za-z0-9_-]{8}$/)
  t.same(published.map((r) => ({ stream: r.body.stream, offset: r.body.offset, epoch: r.body.epoch })), [1, 2, 3, 4].map((offset) => ({ stream: `user:${ALICE}`, offset, epoch })), 'events and notifications to a user share its stream, +1 each')
  const others = {
    system: await node.api('/api/events', { body: { type: 'system.maintenance.scheduled', data: {} } }),
    broadcast: await node.api('/api/notifications/broadcast', { body: { level: 'warning', title: 'All', message: 'of you' } }),
    admin: await node.api('/api/events', { body: { type: 'admin.user.updated', userId: ALICE } }),
    nobody: await node.api('/api/events', { body: { type: 'security.suspicious.activity', data: {} } }),
  }
  t.match(others.system.body, { stream: 'broadcast', offset: 1 }, 'system.* naming no user: the broadcast stream')
  t.match(others.broadcast.body, { stream: 'broadcast', offset: 2 }, 'a broadcast notification: the broadcast stream too')
  // The broadcast, an operator action, was audited first: admin.notification.broadcast is offset 1 of the admin stream.
  t.match(others.admin.body, { stream: 'admin', offset: 2 }, 'admin.*, even naming a user: the admin stream')
  t.match(others.nobody.body, { stream: 'admin', offset: 3 }, 'an event no user may receive: the admin stream')

  const lastId = published[3]!.body.id as string
  await alice.next((f) => f.payload?.id === lastId)
  const received = alice.frames.filter((f) => f.type === 'event' || f.type === 'notification').map((f) => f.payload).filter((p) => p.stream === `user:${ALICE}`)

  const all = await node.api(`/api/streams/user:${ALICE}/events`)
  t.equal(all.status, 200)
  t.same(all.body, { stream: `user:${ALICE}`, epoch, top: 4, events: received }, 'every retained message of the stream, exactly as the client received it')
  t.same((await node.api(`/api/streams/${encodeURIComponent(`user:${ALICE}`)}/events`)).body, all.body, 'the name percent-encoded reads the same')

  const first = await node.api(`/api/streams/user:${ALICE}/events?limit=3`)
  t.same([first.body.events.map((e: { offset: number }) => e.offset), first.body.next], [[1, 2, 3], 3], 'a page of 3, and where the next starts')
  const second = await node.api(`/api/streams/user:${ALICE}/events?after=${first.body.next}&limit=3`)
  t.same(second.body.events.map((e: { offset: number }) => e.offset), [4])
  t.notOk('next' in second.body, 'the last page has no next')
  t.same((await node.api(`/api/streams/user:${ALICE}/events?after=4`)).body, { stream: `user:${ALICE}`, epoch, top: 4, events: [] }, 'nothing after the top')
  t.equal((await node.api(`/api/streams/user:${ALICE}/events?limit=1000`)).status, 200, 'a page of up to 1000')

  t.same((await node.api('/api/streams/broadcast/events')).body.events.map((e: { id: string }) => e.id), [others.system.body.id, others.broadcast.body.id], 'the broadcast stream')
  const admin = (await node.api('/api/streams/admin/events')).body.events as Array<{ id: string, type: string, data: Record<string, unknown> }>
  t.match(admin[0], { type: 'admin.notification.broadcast', data: { notificationId: others.broadcast.body.id } }, 'the admin stream: the broadcast\'s audit event')
  t.same(admin.slice(1).map((e) => e.id), [others.admin.body.id, others.nobody.body.id], 'then the admin-only events')

  const fresh = await node.api(`/api/streams/user:nobody-${process.pid}/events`)
  t.match(fresh.body, { stream: `user:nobody-${process.pid}`, top: 0, events: [] }, 'a stream nothing was published on yet: empty, at top 0')
  const later = await node.api('/api/events', { body: { type: 'authentication.login.success', userId: `nobody-${process.pid}` } })
  t.same([later.body.offset, later.body.epoch], [1, fresh.body.epoch], 'and its first message counts in the epoch the reader was given')
  t.equal((await node.api('/api/events', { body: { type: 'authentication.login.success', userId: `nobody-${process.pid}` }, key: serviceToken() })).status, 202, 'a service JWT publishes too')
  t.equal((await node.api(`/api/streams/user:${ALICE}/events`, { key: serviceToken() })).status, 200, 'and reads')
})

t.test('refusals: unknown streams, bad offsets and limits, credentials that are not a service\'s, a frozen Redis', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startApp({ REDIS_URL: redis.url, HEALTH_PROBE_INTERVAL: '200' })
  t.teardown(() => node.close())
  await waitFor('the node ready', async () => (await node.api('/ws/health', { key: '' })).status, (s) => s === 200, { timeoutMs: 10_000 })

  for (const name of ['foo', 'user:', 'users:alice', 'group:', 'group:a%20b', 'group:a%7Bb%7D', 'Broadcast', 'user:a%09b', 'admin%20']) {
    const r = await node.api(`/api/streams/${name}/events`)
    t.same([r.status, r.body.error?.code], [404, 'UNKNOWN_STREAM'], `${decodeURIComponent(name)}: 404 UNKNOWN_STREAM`)
    t.match(r.body.error.message, /user:<userId>, group:<name>, broadcast and admin/, 'saying which streams there are')
  }
  const query: Array<[string, RegExp]> = [
    ['after=-1', /querystring\.after "-1" is not an offset/],
    ['after=01', /querystring\.after "01" is not an offset/],
    ['after=x', /is not an offset/],
    ['limit=0', /querystring\.limit "0" must be a whole number from 1 to 1000/],
    ['limit=1001', /from 1 to 1000/],
  ]
  for (const [q, says] of query) {
    const r = await node.api(`/api/streams/broadcast/events?${q}`)
    t.same([r.status, r.body.error?.code], [400, 'VALIDATION'], `${q}: 400 VALIDATION`)
    t.match(r.body.error.message, says)
  }
  const creds: Array<[string, string, number, string]> = [
    ['no credential', '', 401, 'CREDENTIAL_MISSING'],
    ['a user\'s token', userToken('someone'), 403, 'ROLE_FORBIDDEN'],
    ['an admin\'s token', adminToken('operator'), 403, 'ROLE_FORBIDDEN'],
  ]
  for (const [what, key, status, code] of creds) {
    const r = await node.api('/api/streams/broadcast/events', { key })
    t.same([r.status, r.body.error?.code], [status, code], `${what}: ${status} ${code}`)
  }

  redis.pause()
  t.teardown(() => redis.resume())
  await waitFor('the node to notice', async () => (await node.api('/ws/health', { key: '' })).status, (s) => s === 503, { timeoutMs: 5000 })
  const started = Date.now()
  const frozen = await node.api('/api/streams/broadcast/events')
  t.same([frozen.status, frozen.body.error?.code], [503, 'BACKEND_UNAVAILABLE'], 'Redis frozen: 503 BACKEND_UNAVAILABLE')
  t.ok(Date.now() - started < 4000, 'in seconds, not when Redis comes back')
})

t.test('history off (HISTORY_SIZE=0 or HISTORY_TTL=0): no stream, no position anywhere, and reading is 404 HISTORY_OFF', { timeout: 30_000 }, async (t) => {
  for (const off of [{ HISTORY_SIZE: '0' }, { HISTORY_TTL: '0' }] as Array<Record<string, string>>) {
    const node = await startApp(off)
    t.teardown(() => node.close())
    const alice = await connect(`${node.ws}/ws/events`, { token: userToken(ALICE) })
    t.teardown(() => alice.close())
    await alice.subscribe(['*'])
    const label = Object.keys(off)[0]!
    const ev = await node.api('/api/events', { body: { type: 'authentication.login.success', userId: ALICE } })
    const note = await node.api(`/api/notifications/users/${ALICE}`, { body: { level: 'info', title: 'Hi', message: 'there' } })
    t.same([ev.status, Object.keys(ev.body)], [202, ['id']], `${label}: an event answers {id} alone`)
    t.same(Object.keys(note.body), ['id'], `${label}: a notification too`)
    const got = await alice.next((f) => f.payload?.id === note.body.id)
    const frames = [alice.frames.find((f) => f.payload?.id === ev.body.id)!, got]
    t.ok(frames.every((f) => !('stream' in f.payload) && !('offset' in f.payload) && !('epoch' in f.payload)), `${label}: what clients receive has no stream or position`)
    const r = await node.api(`/api/streams/user:${ALICE}/events`)
    t.same([r.status, r.body.error?.code], [404, 'HISTORY_OFF'], `${label}: reading a stream is 404 HISTORY_OFF`)
  }
})
