// Outbound webhooks against real HTTP receivers on loopback (node:http in
// this process), delivered by an in-process node: signatures checked with an
// independent implementation of Standard Webhooks (the `standardwebhooks`
// package, which hashes with fast-sha256, not node:crypto); failures retried
// with the same webhook-id on the schedule (its base made small here, as
// WEBHOOK_RETRY_BASE allows) and after Retry-After; timeouts; 410; redirects
// not followed; dead letters and replay; the breaker; one endpoint that
// hangs never holding up another, nor WebSocket clients.
import t, { type Test } from 'tap'
import { Webhook } from 'standardwebhooks'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect, type TestClient } from '../helpers/client.js'
import { startReceiver, type Receiver } from '../helpers/receiver.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const LOOPBACK = { WEBHOOK_ALLOW_PRIVATE: '127.0.0.0/8', WEBHOOK_ALLOW_HTTP: 'true' }

async function node (t: Test, env: Record<string, string> = {}): Promise<RunningApp> {
  const app = await startApp({ ...LOOPBACK, WEBHOOK_RETRY_BASE: '1', WEBHOOK_TIMEOUT: '1000', ...env })
  t.teardown(() => app.close())
  return app
}

async function admin (t: Test, app: RunningApp): Promise<TestClient> {
  const a = await connect(`${app.ws}/ws/admin`, { token: adminToken('wh-admin') })
  t.teardown(() => a.close())
  await a.subscribe(['admin.webhook.*'])
  return a
}

async function create (app: RunningApp, body: Record<string, unknown>): Promise<{ id: string, secret: string }> {
  const r = await app.api('/api/webhooks', { body })
  if (r.status !== 201) throw new Error(`create answered ${r.status} ${JSON.stringify(r.body)}`)
  return r.body
}

async function publish (app: RunningApp, type = 'authentication.login.success', userId = 'wh-user', data: Record<string, unknown> = {}): Promise<string> {
  const r = await app.api('/api/events', { body: { type, userId, data } })
  if (r.status !== 202) throw new Error(`publish answered ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.id
}

const idOf = (eventId: string, endpointId: string): string => `msg_${eventId}_${endpointId}`

t.test('signed per Standard Webhooks: verified by an independent implementation, both secrets during a rotation; the body is the event as clients receive it', async (t) => {
  const app = await node(t)
  const rx = await startReceiver(t)
  const { id, secret } = await create(app, { url: rx.url, eventTypes: ['authentication.*'] })
  t.match(secret, /^whsec_[A-Za-z0-9+/]+=*$/, 'a generated whsec_ secret, returned once')
  t.notOk('secret' in (await app.api(`/api/webhooks/${id}`)).body, 'and never shown again')
  const user = await connect(`${app.ws}/ws/events`, { token: userToken('wh-user') })
  t.teardown(() => user.close())
  await user.subscribe(['authentication.*'])

  const eventId = await publish(app, 'authentication.login.success', 'wh-user', { ip: '203.0.113.9' })
  const [got] = await rx.count(1)
  const frame = await user.next((f) => f.payload?.id === eventId)
  t.same(JSON.parse(got!.body), frame.payload, 'the body is the payload the user\'s WebSocket received, stream, offset and epoch included')
  t.match(JSON.parse(got!.body), { stream: 'user:wh-user', offset: 1 })
  t.equal(got!.headers['webhook-id'], idOf(eventId, id))
  t.equal(got!.headers['content-type'], 'application/json')
  const ts = Number(got!.headers['webhook-timestamp'])
  t.ok(Math.abs(ts - Date.now() / 1000) < 5, 'webhook-timestamp: the attempt\'s time, in seconds')
  t.match(got!.headers['webhook-signature'], /^v1,[A-Za-z0-9+/]+=*$/, 'one v1 signature')
  t.same(new Webhook(secret).verify(got!.body, got!.headers as Record<string, string>), frame.payload, 'standardwebhooks verifies it')
  const forged = { ...got!.headers, 'webhook-id': got!.headers['webhook-id'] + 'x' } as unknown as Record<string, string>
  t.throws(() => new Webhook(secret).verify(got!.body, forged), 'and refuses it with another id')

  const rotated = await app.api(`/api/webhooks/${id}`, { method: 'PATCH', body: { rotateSecret: true } })
  t.equal(rotated.status, 200)
  const next = rotated.body.secret as string
  t.ok(next.startsWith('whsec_') && next !== secret, 'a new secret, returned once')
  t.ok(typeof rotated.body.secretRotation?.previousExpiresAt === 'string', 'the previous one still signs, until a stated time')
  await publish(app)
  const [, second] = await rx.count(2)
  const sigs = (second!.headers['webhook-signature'] as string).split(' ')
  t.equal(sigs.length, 2, 'two signatures during the overlap')
  t.doesNotThrow(() => new Webhook(next).verify(second!.body, second!.headers as Record<string, string>), 'the new secret verifies it')
  t.doesNotThrow(() => new Webhook(secret).verify(second!.body, second!.headers as Record<string, string>), 'and so does the old one')
})

t.test('a secret rotation with no overlap signs with the new secret alone', async (t) => {
  const app = await node(t, { WEBHOOK_SECRET_OVERLAP: '0' })
  const rx = await startReceiver(t)
  const given = 'whsec_' + Buffer.alloc(32, 7).toString('base64')
  const { id, secret } = await create(app, { url: rx.url, eventTypes: ['*'], secret: given })
  t.equal(secret, given, 'a given secret is kept')
  const other = 'whsec_' + Buffer.alloc(32, 9).toString('base64')
  t.equal((await app.api(`/api/webhooks/${id}`, { method: 'PATCH', body: { secret: other } })).status, 200)
  await publish(app)
  const [got] = await rx.count(1)
  t.equal((got!.headers['webhook-signature'] as string).split(' ').length, 1)
  t.doesNotThrow(() => new Webhook(other).verify(got!.body, got!.headers as Record<string, string>))
  t.match((await app.api('/api/webhooks', { body: { url: rx.url, eventTypes: ['*'], secret: 'whsec_short' } })), { status: 400, body: { error: { code: 'VALIDATION' } } }, 'a secret that is no 24-64 byte key is refused')
})

t.test('500s then 200: retried with the same webhook-id, each attempt listed', async (t) => {
  const app = await node(t)
  const rx = await startReceiver(t)
  rx.answer = (_r, n) => ({ status: n <= 2 ? 500 : 200 })
  const { id } = await create(app, { url: rx.url, eventTypes: ['authentication.*'] })
  const eventId = await publish(app)
  const got = await rx.count(3)
  t.same(got.map((g) => g.headers['webhook-id']), [1, 2, 3].map(() => idOf(eventId, id)), 'three attempts, one webhook-id')
  t.same(new Set(got.map((g) => g.body)).size, 1, 'the same body each time')
  const attempts = await waitFor('the attempts listed', async () => (await app.api(`/api/webhooks/${id}/attempts`)).body.attempts as any[], (a) => a.length === 3)
  t.same(attempts.map((a) => [a.attempt, a.outcome, a.status]), [[3, 'success', 200], [2, 'server_error', 500], [1, 'server_error', 500]], 'newest first')
  t.ok(attempts[1].retryInMs >= 0 && attempts[2].retryInMs >= 0, 'each failure says when the next attempt is due')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(rx.received.length, 3, 'nothing more after the success')
  t.match((await app.api(`/api/webhooks/${id}`)).body.queue, { depth: 0, oldestAgeMs: null, breaker: 'closed' })
})

t.test('Retry-After is honoured', async (t) => {
  const app = await node(t)
  const rx = await startReceiver(t)
  rx.answer = (_r, n) => n === 1 ? { status: 503, headers: { 'retry-after': '2' } } : { status: 200 }
  await create(app, { url: rx.url, eventTypes: ['*'] })
  await publish(app)
  const [first, second] = await rx.count(2, undefined, 10_000)
  const gap = second!.at - first!.at
  t.ok(gap >= 1900, `the second attempt came ${gap} ms after the first: after Retry-After (2 s), not the schedule's 1 ms`)
  t.ok(gap < 4000, 'and not much later')
})

t.test('a slow receiver and one that never answers time out, and are tried again', async (t) => {
  const app = await node(t, { WEBHOOK_TIMEOUT: '500' })
  const slow = await startReceiver(t)
  const mute = await startReceiver(t)
  slow.answer = (_r, n) => n === 1 ? { status: 200, delayMs: 1500 } : { status: 200 }
  mute.answer = (_r, n) => n === 1 ? 'hang' : { status: 200 }
  const a = await create(app, { url: slow.url, eventTypes: ['*'] })
  const b = await create(app, { url: mute.url, eventTypes: ['*'] })
  const eventId = await publish(app)
  const [s1, s2] = await slow.count(2)
  const [m1, m2] = await mute.count(2)
  t.equal(s2!.headers['webhook-id'], s1!.headers['webhook-id'])
  t.equal(m2!.headers['webhook-id'], idOf(eventId, b.id))
  for (const { id } of [a, b]) {
    const attempts = (await waitFor('the attempts', async () => (await app.api(`/api/webhooks/${id}/attempts`)).body.attempts as any[], (x) => x.length === 2))
    t.match(attempts.map((x) => x.outcome), ['success', 'timeout'], `${id}: timed out, then delivered`)
    t.ok(attempts[1].durationMs >= 450 && attempts[1].durationMs < 1500, `after the 500 ms timeout (${attempts[1].durationMs as number} ms)`)
  }
})

t.test('410 disables the endpoint: admin.webhook.disabled, its delivery and its queue are dead letters, replayable once enabled again', async (t) => {
  const app = await node(t)
  const watcher = await admin(t, app)
  const rx = await startReceiver(t)
  rx.answer = () => ({ status: 410 })
  const { id } = await create(app, { url: rx.url, eventTypes: ['authentication.*'] })
  const eventId = await publish(app)
  const event = await watcher.next((f) => f.type === 'event' && f.payload.type === 'admin.webhook.disabled')
  t.match(event.payload.data, { endpointId: id, url: rx.url, reason: 'gone' }, 'admins are told')
  t.match((await app.api(`/api/webhooks/${id}`)).body, { enabled: false, disabledReason: 'gone' })
  await publish(app)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(rx.received.length, 1, 'nothing is delivered to it any more')
  const dead = (await app.api(`/api/webhooks/${id}/dead-letters`)).body.deadLetters as any[]
  t.match(dead, [{ webhookId: idOf(eventId, id), reason: 'gone', attempts: 1, type: 'authentication.login.success', payload: { id: eventId } }])

  rx.answer = () => ({ status: 200 })
  t.equal((await app.api(`/api/webhooks/${id}`, { method: 'PATCH', body: { enabled: true } })).status, 200)
  const replay = await app.api(`/api/webhooks/${id}/dead-letters/replay`, { body: {} })
  t.same([replay.status, replay.body], [202, { replayed: 1 }])
  const again = await rx.count(2)
  t.equal(again[1]!.headers['webhook-id'], idOf(eventId, id), 'replayed with its webhook-id')
  t.match((await watcher.next((f) => f.type === 'event' && f.payload.type === 'admin.webhook.recovered')).payload.data, { endpointId: id }, 'its first success after being enabled again is a recovery')
  t.same((await app.api(`/api/webhooks/${id}/dead-letters`)).body.deadLetters, [])
})

t.test('dead letters over the API come in pages: limit, then next as the from of the following page', async (t) => {
  const app = await node(t)
  const rx = await startReceiver(t)
  // Held 300 ms, then 410: the five are in flight together, and all become dead letters.
  rx.answer = () => ({ status: 410, delayMs: 300 })
  const { id } = await create(app, { url: rx.url, eventTypes: ['authentication.*'] })
  const ids: string[] = []
  for (let i = 0; i < 5; i++) ids.push(await publish(app))
  const list = async (q: string): Promise<{ deadLetters: Array<{ eventId: string }>, next?: number }> => (await app.api(`/api/webhooks/${id}/dead-letters${q}`)).body
  await waitFor('five dead letters', async () => (await list('')).deadLetters.length, (n) => n === 5)
  const first = await list('?limit=2')
  t.same([first.deadLetters.length, first.next], [2, 2], 'two, and where the next page starts')
  const second = await list(`?limit=2&from=${first.next!}`)
  const third = await list(`?limit=2&from=${second.next!}`)
  t.same([second.deadLetters.length, second.next, third.deadLetters.length, third.next], [2, 4, 1, undefined], 'the last page has no next')
  t.same([...first.deadLetters, ...second.deadLetters, ...third.deadLetters].map((d) => d.eventId).sort(), [...ids].sort(), 'each once')
  t.match(await app.api(`/api/webhooks/${id}/dead-letters?from=-1`), { status: 400, body: { error: { code: 'VALIDATION' } } })
})

t.test('redirects are not followed', async (t) => {
  const app = await node(t)
  const target = await startReceiver(t)
  const rx = await startReceiver(t)
  rx.answer = () => ({ status: 307, headers: { location: target.url } })
  const { id } = await create(app, { url: rx.url, eventTypes: ['*'] })
  await publish(app)
  await rx.count(2)
  const attempts = (await app.api(`/api/webhooks/${id}/attempts`)).body.attempts as any[]
  t.match(attempts.at(-1), { outcome: 'redirect', status: 307 })
  t.equal(target.received.length, 0, 'the Location was never requested')
})

t.test('every attempt failing: a dead letter after the last, listed and replayed', { timeout: 60_000 }, async (t) => {
  const app = await node(t)
  const rx = await startReceiver(t)
  rx.answer = () => ({ status: 500 })
  const { id } = await create(app, { url: rx.url, eventTypes: ['*'] })
  const eventId = await publish(app)
  // The schedule at a 1 ms base: 1, 60, 360, 1440, 3600, 7200, 7200 ms (±10 %).
  const dead = await waitFor('the dead letter', async () => (await app.api(`/api/webhooks/${id}/dead-letters`)).body.deadLetters as any[], (d) => d.length === 1, { timeoutMs: 40_000, intervalMs: 200 })
  t.match(dead[0], { webhookId: idOf(eventId, id), reason: 'exhausted', attempts: 8 })
  t.equal(rx.of(idOf(eventId, id)).length, 8, 'eight attempts, all with its webhook-id')
  rx.answer = () => ({ status: 204 })
  t.same((await app.api(`/api/webhooks/${id}/dead-letters/replay`, { body: { webhookIds: [idOf(eventId, id)] } })).body, { replayed: 1 })
  await rx.count(9)
  t.equal(rx.received.at(-1)!.headers['webhook-id'], idOf(eventId, id))
})

t.test('the breaker: failures open it (admin.webhook.disabled, circuit_open), one probe after the cool-down, recovered', { timeout: 30_000 }, async (t) => {
  const app = await node(t, { WEBHOOK_BREAKER_COOLDOWN: '1000', WEBHOOK_RETRY_BASE: '60000' })
  const watcher = await admin(t, app)
  const rx = await startReceiver(t)
  rx.answer = () => ({ status: 503 })
  const { id } = await create(app, { url: rx.url, eventTypes: ['authentication.*'] })
  for (let i = 0; i < 10; i++) await publish(app)
  const opened = await watcher.next((f) => f.type === 'event' && f.payload.type === 'admin.webhook.disabled', 10_000)
  t.match(opened.payload.data, { endpointId: id, reason: 'circuit_open' })
  t.match((await app.api(`/api/webhooks/${id}`)).body.queue, { breaker: 'open' })
  const before = rx.received.length
  rx.answer = () => ({ status: 200 })
  for (let i = 0; i < 5; i++) await publish(app)
  await new Promise((resolve) => setTimeout(resolve, 500))
  t.equal(rx.received.length, before, 'nothing is tried while it is open')
  await watcher.next((f) => f.type === 'event' && f.payload.type === 'admin.webhook.recovered', 10_000)
  await rx.count(before + 5, undefined, 10_000)
  t.pass('after the probe succeeded, what waited was delivered')
  t.match((await app.api(`/api/webhooks/${id}`)).body.queue, { breaker: 'closed' })
})

t.test('one endpoint that hangs does not delay another, nor WebSocket clients', { timeout: 30_000 }, async (t) => {
  const app = await node(t, { WEBHOOK_TIMEOUT: '10000', WEBHOOK_CONCURRENCY: '4' })
  const hung = await startReceiver(t)
  const fine = await startReceiver(t)
  hung.answer = () => 'hang'
  await create(app, { url: hung.url, eventTypes: ['authentication.*'] })
  await create(app, { url: fine.url, eventTypes: ['authentication.*'] })
  const user = await connect(`${app.ws}/ws/events`, { token: userToken('wh-user') })
  t.teardown(() => user.close())
  await user.subscribe(['authentication.*'])
  const started = Date.now()
  const ids: string[] = []
  for (let i = 0; i < 40; i++) ids.push(await publish(app))
  await within(2000, 'the healthy endpoint\'s 40 deliveries', fine.count(40, undefined, 2000))
  await within(1000, 'the WebSocket client\'s 40 events', user.collect((f) => f.type === 'event', 40, 1000))
  const took = Date.now() - started
  t.ok(took < 3000, `all 40 reached the healthy endpoint and the WebSocket client in ${took} ms, while the other hangs (its timeout: 10 s)`)
  t.equal(hung.received.length, 4, 'the hanging endpoint holds its 4 slots (WEBHOOK_CONCURRENCY), no more')
})

t.test('private destinations: refused unless allowlisted, names resolved at connect time included', async (t) => {
  const app = await node(t, { WEBHOOK_ALLOW_PRIVATE: '' })
  const rx = await startReceiver(t)
  for (const url of [rx.url, `http://[::ffff:127.0.0.1]:${rx.port}/hook`, `http://[::1]:${rx.port}/hook`, 'http://169.254.169.254/latest/meta-data', 'http://10.0.0.1/hook']) {
    t.match(await app.api('/api/webhooks', { body: { url, eventTypes: ['*'] } }), { status: 400, body: { error: { code: 'WEBHOOK_URL_REFUSED' } } }, `${url}: refused when created`)
  }
  // A name is judged on what it resolves to when the connection is made.
  const { id } = await create(app, { url: `http://localhost:${rx.port}/hook`, eventTypes: ['*'] })
  await publish(app)
  const attempts = await waitFor('a blocked attempt', async () => (await app.api(`/api/webhooks/${id}/attempts`)).body.attempts as any[], (a) => a.length > 0)
  t.match(attempts[0], { outcome: 'blocked', error: /localhost resolves only to refused addresses: .*loopback/ })
  t.equal(rx.received.length, 0, 'the receiver on 127.0.0.1 got nothing')

  const allowed = await node(t, { WEBHOOK_ALLOW_PRIVATE: '127.0.0.0/8' })
  await create(allowed, { url: `http://localhost:${rx.port}/hook`, eventTypes: ['*'] })
  await create(allowed, { url: `http://[::ffff:127.0.0.1]:${rx.port}/hook`, eventTypes: ['*'] })
  await publish(allowed)
  await rx.count(2)
  t.pass('allowlisted: delivered, by name and by an IPv4-mapped literal')
  const noHttp = await node(t, { WEBHOOK_ALLOW_HTTP: 'false' })
  t.match(await noHttp.api('/api/webhooks', { body: { url: rx.url, eventTypes: ['*'] } }), { status: 400, body: { error: { code: 'WEBHOOK_URL_REFUSED', message: /plain http is not allowed/ } } }, 'https only unless plain http is allowed')
})

t.test('the API: validation, 404s, listing, patterns with the subscription matcher, delete', async (t) => {
  const app = await node(t)
  const rx = await startReceiver(t)
  t.match(await app.api('/api/webhooks', { body: { url: rx.url, eventTypes: ['Bad Pattern'] } }), { status: 400, body: { error: { code: 'VALIDATION', message: /pattern/ } } }, 'a pattern the subscription matcher would refuse')
  t.match(await app.api('/api/webhooks', { body: { url: rx.url, eventTypes: [] } }), { status: 400 })
  t.match(await app.api('/api/webhooks', { body: { url: 'ftp://x/y', eventTypes: ['*'] } }), { status: 400, body: { error: { code: 'WEBHOOK_URL_REFUSED' } } })
  t.match(await app.api('/api/webhooks', { body: { url: rx.url, eventTypes: ['*'] }, key: '' }), { status: 401 })
  t.match(await app.api('/api/webhooks/nope'), { status: 404, body: { error: { code: 'WEBHOOK_NOT_FOUND' } } })
  t.match(await app.api('/api/webhooks/nope', { method: 'PATCH', body: { enabled: false } }), { status: 404 })
  t.match(await app.api('/api/webhooks/nope', { method: 'DELETE' }), { status: 404 })
  const one = await create(app, { url: rx.url, eventTypes: ['*.login.*'], description: 'logins' })
  const two = await create(app, { url: rx.url + '?b', eventTypes: ['system'] })
  const list = (await app.api('/api/webhooks')).body.webhooks as any[]
  t.same(list.map((w) => [w.id, w.description ?? null, w.queue.depth]), [[one.id, 'logins', 0], [two.id, null, 0]])
  const login = await publish(app, 'authentication.login.success')
  await publish(app, 'authentication.logout')
  await publish(app, 'system.maintenance', 'wh-user')
  const sys = (await app.api('/api/events', { body: { type: 'system' } })).body.id
  const got = await rx.count(2)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.same(rx.received.map((r) => [r.path, JSON.parse(r.body).id]).sort(), [['/hook', login], ['/hook?b', sys]].sort(), '*.login.* matched the login only; system matched system only')
  t.ok(got.length === 2)
  t.equal((await app.api(`/api/webhooks/${one.id}`, { method: 'DELETE' })).status, 204)
  await publish(app, 'authentication.login.success')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(rx.received.length, 2, 'a deleted endpoint gets nothing')
  t.same((await app.api('/api/webhooks')).body.webhooks.map((w: any) => w.id), [two.id])
})

t.test('seeded from configuration (WEBHOOKS), with the operator\'s id and secret', async (t) => {
  const rx = await startReceiver(t)
  const secret = 'whsec_' + Buffer.alloc(24, 3).toString('base64')
  const app = await node(t, { WEBHOOKS: JSON.stringify([{ id: 'chat-bot', url: rx.url, eventTypes: ['session.*'], secret, description: 'n8n' }]) })
  t.match((await app.api('/api/webhooks/chat-bot')).body, { id: 'chat-bot', url: rx.url, eventTypes: ['session.*'], enabled: true, seeded: true, description: 'n8n' })
  await publish(app, 'session.created')
  const [got] = await rx.count(1)
  t.doesNotThrow(() => new Webhook(secret).verify(got!.body, got!.headers as Record<string, string>))
})

t.test('a deleted endpoint\'s metric series go with it; another\'s stay', { timeout: 30_000 }, async (t) => {
  const app = await node(t)
  const rx = await startReceiver(t)
  const gone = await create(app, { url: rx.url, eventTypes: ['authentication.*'] })
  const kept = await create(app, { url: rx.url + '?kept', eventTypes: ['authentication.*'] })
  await publish(app)
  await rx.count(2)
  const scrape = async (): Promise<string> => await (await fetch(`${app.http}/metrics`)).text()
  const seriesOf = (text: string, id: string): string[] => text.split('\n').filter((l) => l.startsWith('herald_webhook_') && l.includes(`endpoint="${id}"`) && !/_(queue_depth|oldest_pending_seconds|breaker_state)\{/.test(l))
  await waitFor('both endpoints\' attempt series', scrape, (s) => seriesOf(s, gone.id).length > 0 && seriesOf(s, kept.id).length > 0)
  t.equal((await app.api(`/api/webhooks/${gone.id}`, { method: 'DELETE' })).status, 204)
  // The series are removed at the next sample of the queues (every 2 s).
  const after = await waitFor('the deleted endpoint\'s series removed', scrape, (s) => seriesOf(s, gone.id).length === 0, { timeoutMs: 10_000 })
  t.match(after, new RegExp(`herald_webhook_attempts_total\\{endpoint="${kept.id}",outcome="success"[^}]*\\} 1\n`), 'the kept endpoint\'s count is still there')
  t.ok(seriesOf(after, kept.id).some((l) => l.startsWith('herald_webhook_attempt_duration_seconds_count')), 'and its durations')
})

t.test('a create Redis answers too late is a 503 that says to list before creating again; it applied all the same', { timeout: 30_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  // The probe would call Redis unreachable within its interval: a long one leaves the deadline to answer.
  const app = await node(t, { REDIS_URL: redis.url, HEALTH_PROBE_INTERVAL: '60000' })
  const rx = await startReceiver(t)
  redis.pause()
  t.teardown(() => redis.resume())
  const late = await app.api('/api/webhooks', { body: { url: rx.url, eventTypes: ['*'] } })
  t.match(late, { status: 503, body: { error: { code: 'BACKEND_UNAVAILABLE', message: /list the endpoints \(GET \/api\/webhooks\) before creating it again/ } } })
  t.notMatch(late.body.error.message, /idempotent/, 'not told a retry is harmless')
  redis.resume()
  const list = await waitFor('the create to apply', async () => (await app.api('/api/webhooks')).body.webhooks as any[], (l) => l.length === 1)
  t.equal(list[0].url, rx.url, 'the endpoint was created after all: a blind retry would have made a second')
})
