// Socket.IO on the same port and the same pipeline as /ws/events, driven with
// real socket.io-client and ws clients against three node processes and a
// private Redis: shared upgrade dispatch, admission (auth, origin, limits),
// subscriptions with acks, cross-node delivery and audience, exactly-once
// delivery through one Redis path, expiry and in-band refresh, revocation,
// registry and stats, drain, anonymous guests, node capacity and the per-IP
// limit across transports, disconnect codes (1009, 1006, 1000) and the
// README's reconnect-safe client.
import t, { type Test } from 'tap'
import { startBalancer } from '../helpers/balancer.js'
import { connect, refusal, type TestClient } from '../helpers/client.js'
import { attempt } from '../helpers/cluster.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { metric, parseMetrics, type Sample } from '../helpers/ops.js'
import { startRedis } from '../helpers/redis.js'
import { sio, sioAttempt, sioConnect, type SioClient, type SioOptions } from '../helpers/sio.js'
import { adminToken, token, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const ORIGIN = 'https://app.example.com'
const CLUSTER_ENV = {
  NODE_TTL: '3000',
  ALLOWED_ORIGINS: ORIGIN,
  MAX_CONNECTIONS_PER_USER: '2',
  AUTH_EXPIRY_WARNING: '2000',
  DRAIN_TIMEOUT: '1000',
}

const redis = await startRedis()
const nodes: NodeProc[] = []
t.teardown(async () => {
  await Promise.all(nodes.map(async (n) => await n.stop()))
  await redis.stop()
})
const addNode = async (env: Record<string, string> = {}): Promise<NodeProc> => {
  const n = await startNode({ REDIS_URL: redis.url, ...CLUSTER_ENV, ...env })
  nodes.push(n)
  return n
}
const [A, B, C] = await Promise.all(['a', 'b', 'c'].map(async (x) => await addNode({ SERVER_ID: `sio-${x}-${process.pid}` }))) as [NodeProc, NodeProc, NodeProc]
const rc = redis.client()

let uniq = 0
const user = (name: string): string => `${name}-${++uniq}`

/** A Socket.IO client torn down with the test. */
async function sioOn (t: Test, node: NodeProc | string, tok: string | undefined, opts: SioOptions = {}): Promise<{ client: SioClient, welcome: any }> {
  const r = await sioConnect(typeof node === 'string' ? node : node.http, { transports: ['websocket'], ...(tok !== undefined ? { auth: { token: tok } } : {}), ...opts })
  t.teardown(() => r.client.close())
  return r
}

async function wsOn (t: Test, node: NodeProc, tok: string | undefined, patterns: string[] | null = null): Promise<TestClient> {
  const c = await connect(`${node.ws}/ws/events`, tok !== undefined ? { token: tok } : {})
  t.teardown(() => c.close())
  if (patterns !== null) await c.subscribe(patterns)
  return c
}

async function adminOn (t: Test, node: NodeProc): Promise<TestClient> {
  const c = await connect(`${node.ws}/ws/admin`, { token: adminToken(user('admin')) })
  t.teardown(() => c.close())
  return c
}

async function publish (node: NodeProc, body: Record<string, unknown>): Promise<string> {
  const r = await node.api('/api/events', { body })
  if (r.status !== 202) throw new Error(`publish on ${node.serverId} answered ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.id as string
}

async function notify (node: NodeProc, userId: string | null, body: Record<string, unknown>): Promise<string> {
  const r = await node.api(userId === null ? '/api/notifications/broadcast' : `/api/notifications/users/${encodeURIComponent(userId)}`, { body })
  if (r.status !== 202) throw new Error(`notify on ${node.serverId} answered ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.id as string
}

async function numsub (channel: string): Promise<number> {
  const r = await rc.call('PUBSUB', 'NUMSUB', channel) as [string, number]
  return Number(r[1])
}

const sioEvent = (id: string) => (r: { event: string, payload: any }): boolean => r.event === 'event' && r.payload?.id === id
const sioNote = (id: string) => (r: { event: string, payload: any }): boolean => r.event === 'notification' && r.payload?.id === id
const deliveredIds = (c: SioClient): string[] => c.records.filter((r) => r.event === 'event' || r.event === 'notification').map((r) => r.payload.id as string)

t.test('one port, both handshakes: raw /ws/events and Socket.IO over polling, websocket and polling-then-upgrade, at once', { timeout: 30_000 }, async (t) => {
  const u = user('shared-port')
  const other = user('shared-port')
  const third = user('shared-port')
  // All on node A, all open at the same time.
  const raw = await wsOn(t, A, userToken(u), ['authentication.*'])
  const polling = await sioOn(t, A, userToken(u), { transports: ['polling'] })
  const websocket = await sioOn(t, A, userToken(other), { transports: ['websocket'] })
  const upgraded = await sioOn(t, A, userToken(third), { transports: ['polling', 'websocket'] })

  for (const [name, c] of [['polling', polling], ['websocket', websocket], ['default', upgraded]] as const) {
    t.equal(c.welcome.serverId, A.serverId, `${name}: welcome from A`)
    t.type(c.welcome.connectionId, 'string')
    t.ok(c.client.socket.connected, `${name}: connected`)
  }
  t.equal(polling.welcome.userId, u)
  t.equal(polling.client.socket.io.engine.transport.name, 'polling', 'the polling client stays on long-polling')
  t.equal(websocket.client.socket.io.engine.transport.name, 'websocket')
  // The default client starts on polling and upgrades through the shared `upgrade` dispatch.
  await waitFor('the default client upgraded to websocket', () => upgraded.client.socket.io.engine.transport.name, (n) => n === 'websocket', { timeoutMs: 10_000 })

  for (const c of [polling, websocket, upgraded]) t.same(await c.client.subscribe(['authentication.*']), ['authentication.*'], 'subscribe acknowledged')

  // Every client hears its own user's event, whatever its transport.
  const ids = {
    u: await publish(B, { type: 'authentication.login.success', userId: u }),
    other: await publish(B, { type: 'authentication.login.success', userId: other }),
    third: await publish(B, { type: 'authentication.login.success', userId: third }),
  }
  await raw.next((f) => f.type === 'event' && f.payload.id === ids.u)
  await polling.client.next(sioEvent(ids.u))
  await websocket.client.next(sioEvent(ids.other))
  await upgraded.client.next(sioEvent(ids.third))

  // Requests keep working on all four once the upgrade happened.
  t.equal((await raw.request('ping')).type, 'pong')
  for (const c of [polling, websocket, upgraded]) {
    const r = await c.client.request('ping')
    t.equal(r.type, 'pong')
    t.type(r.payload.timestamp, 'string')
  }

  // Plain HTTP on the same server still answers.
  const h = await A.api('/ws/health', { key: '' })
  t.equal(h.status, 200)
  t.equal(h.body.healthy, true)
  t.equal(h.body.serverId, A.serverId)
  // A plain GET of the WebSocket route is not swallowed by engine.io either.
  t.equal((await A.api('/ws/events', { key: '' })).status, 426)
  // And a health stream upgrade (Fastify's, not engine.io's) still opens.
  const stream = await connect(`${A.ws}/ws/health`, { waitWelcome: false })
  t.teardown(() => stream.close())
  t.ok((await stream.next(() => true, 10_000)).type, 'the health stream sends frames')
})

t.test('Socket.IO admission: token in auth.token; missing, garbage, expired tokens and a foreign Origin are refused', { timeout: 30_000 }, async (t) => {
  const u = user('auth')
  for (const transports of [['polling'], ['websocket']]) {
    const ok = await sioOn(t, B, userToken(u), { transports })
    t.equal(ok.welcome.userId, u, `${transports[0]}: auth.token accepted`)
    ok.client.close()

    const expired = token({ sub: u, sid: 's', roles: ['user'], exp: Math.floor(Date.now() / 1000) - 60 })
    for (const [what, opts, code] of [
      ['no token', {}, 'TOKEN_MISSING'],
      ['garbage token', { auth: { token: 'not.a.jwt' } }, 'TOKEN_INVALID'],
      ['wrong signature', { auth: { token: token({ sub: u, sid: 's' }, { key: 'another-secret-that-is-at-least-32-characters' }) } }, 'TOKEN_INVALID'],
      ['expired token', { auth: { token: expired } }, 'TOKEN_EXPIRED'],
    ] as const) {
      const r = await sioAttempt(B.http, { transports, ...opts })
      t.equal(r.ok, false, `${transports[0]}: ${what} refused`)
      if (r.ok) { r.client.close(); continue }
      t.match(r.data, { code, status: 401 }, `${transports[0]}: ${what} → ${code}`)
      t.type(r.message, 'string')
      t.ok(r.message.length > 0, 'with a message')
    }

    // A browser page on another origin (CSWSH) is refused before any session exists.
    const foreign = await sioAttempt(B.http, { transports, auth: { token: userToken(u) }, extraHeaders: { origin: 'https://evil.example.org' } })
    t.equal(foreign.ok, false, `${transports[0]}: foreign Origin refused`)
    if (!foreign.ok) {
      t.equal(foreign.error.type, 'TransportError', 'refused at the engine.io handshake')
      if (transports[0] === 'polling') t.equal(foreign.error.description, 403, 'HTTP 403')
    }
    const allowed = await sioOn(t, B, userToken(u), { transports, extraHeaders: { origin: ORIGIN } })
    t.equal(allowed.welcome.userId, u, `${transports[0]}: the allowed Origin is accepted`)
    allowed.client.close()
    // The ws endpoint refuses the same foreign Origin.
    if (transports[0] === 'websocket') {
      const r = await refusal(`${B.ws}/ws/events?token=${userToken(u)}`, { origin: 'https://evil.example.org' })
      t.equal(r.status, 403)
      t.equal(r.body.error.code, 'ORIGIN_FORBIDDEN')
    }
    // Slots of the closed clients are released before the next round.
    await waitFor('the user holds no connection', async () => (await connectionsOf(B, u)).length, (n) => n === 0, { timeoutMs: 5000 })
  }
})

/** The cluster-wide connection list of a user, from the admin API. */
async function connectionsOf (node: NodeProc, userId: string): Promise<any[]> {
  const r = await node.api(`/api/users/${encodeURIComponent(userId)}/connections`)
  if (r.status === 200) return r.body.connections as any[]
  throw new Error(`connections of ${userId}: ${r.status} ${JSON.stringify(r.body)}`)
}

t.test('Socket.IO counts toward the same cluster-wide per-user limit as /ws/events', { timeout: 30_000 }, async (t) => {
  const u = user('limit')
  const ws = await wsOn(t, A, userToken(u))
  const s = await sioOn(t, B, userToken(u))
  t.ok(ws && s, 'one raw ws and one Socket.IO connection fill the quota of 2')
  // A third, on any node and either transport, is refused.
  for (const node of [A, B, C]) {
    const viaSio = await sioAttempt(node.http, { transports: ['websocket'], auth: { token: userToken(u) } })
    t.equal(viaSio.ok, false, `Socket.IO on ${node.serverId} refused`)
    if (!viaSio.ok) t.match(viaSio.data, { code: 'CONNECTION_LIMIT', status: 429, retryAfter: Number }, 'CONNECTION_LIMIT with retryAfter')
    const viaPolling = await sioAttempt(node.http, { transports: ['polling'], auth: { token: userToken(u) } })
    t.equal(viaPolling.ok, false, `Socket.IO polling on ${node.serverId} refused`)
    if (!viaPolling.ok) t.match(viaPolling.data, { code: 'CONNECTION_LIMIT', status: 429 })
    const viaWs = await attempt(`${node.ws}/ws/events`, { token: userToken(u) })
    t.equal(viaWs.ok, false, `ws on ${node.serverId} refused`)
    if (!viaWs.ok) {
      t.equal(viaWs.refusal.status, 429)
      t.equal(viaWs.refusal.body.error.code, 'CONNECTION_LIMIT')
      t.ok(viaWs.refusal.headers['retry-after'], 'Retry-After')
    } else viaWs.client.ws.terminate()
  }
  // Closing the Socket.IO connection frees its slot for either transport.
  s.client.close()
  const again = await waitFor('a slot frees once the Socket.IO client left', async () => {
    const a = await attempt(`${C.ws}/ws/events`, { token: userToken(u) })
    return a
  }, (a) => a.ok, { timeoutMs: 15_000, intervalMs: 100 })
  if (again.ok) t.teardown(() => again.client.close())
  t.ok(again.ok, 'admitted after the Socket.IO slot was released')
  // Quota full again (raw on A, raw on C): Socket.IO is refused again.
  const fourth = await sioAttempt(A.http, { transports: ['websocket'], auth: { token: userToken(u) } })
  t.equal(fourth.ok, false)
  if (!fourth.ok) t.equal(fourth.data.code, 'CONNECTION_LIMIT')
})

t.test('subscriptions with acks; an event published on A reaches Socket.IO on B and ws on C; audience isolation; notifications', { timeout: 30_000 }, async (t) => {
  const u = user('deliver')
  const x = user('bystander')
  const onB = await sioOn(t, B, userToken(u))
  const onC = await wsOn(t, C, userToken(u), ['authentication.*', 'system.*'])
  const xOnB = await sioOn(t, B, userToken(x))

  // The protocol requests, each answered in its acknowledgement.
  t.same(await onB.client.request('subscribe', { eventTypes: ['authentication.*', 'security.*'] }), { type: 'subscribed', payload: { eventTypes: ['authentication.*', 'security.*'] } })
  t.same(await onB.client.request('subscribe', { eventTypes: ['system.*'] }), { type: 'subscribed', payload: { eventTypes: ['authentication.*', 'security.*', 'system.*'] } })
  t.same(await onB.client.request('unsubscribe', { eventTypes: ['security.*'] }), { type: 'unsubscribed', payload: { eventTypes: ['authentication.*', 'system.*'] } })
  t.same(await onB.client.request('get_subscriptions'), { type: 'subscriptions', payload: { eventTypes: ['authentication.*', 'system.*'] } })
  const bad = await onB.client.request('subscribe', { eventTypes: ['Not A Pattern'] })
  t.equal(bad.type, 'error')
  t.equal(bad.payload.code, 'INVALID_PATTERN', 'a bad pattern is answered in the ack')
  const unknown = await onB.client.request('fly', {})
  t.match(unknown, { type: 'error', payload: { code: 'UNKNOWN_TYPE' } })
  t.ok(onB.client.socket.connected, 'errors leave the connection open')
  await xOnB.client.subscribe(['*'])

  const id = await publish(A, { type: 'authentication.login.success', userId: u, sessionId: 's1', data: { ip: '203.0.113.7' } })
  const onSio = await onB.client.next(sioEvent(id))
  t.match(onSio.payload, { id, type: 'authentication.login.success', userId: u, sessionId: 's1', data: { ip: '203.0.113.7' } }, 'Socket.IO on B got the event object')
  t.type(onSio.payload.timestamp, 'string')
  const onWs = await onC.next((f) => f.type === 'event' && f.payload.id === id)
  t.same(onWs.payload, onSio.payload, 'the same event on both transports')

  // Not subscribed (security.* was removed): not delivered; then a user notification and a broadcast.
  const unsubscribed = await publish(A, { type: 'security.password.changed', userId: u })
  const userNote = await notify(A, u, { level: 'warning', title: 'for you', message: 'only u' })
  const broadcastNote = await notify(C, null, { level: 'info', title: 'everyone', message: 'hello all' })
  const system = await publish(B, { type: 'system.maintenance.scheduled', data: { at: '02:00' } })
  t.match((await onB.client.next(sioNote(userNote))).payload, { id: userNote, level: 'warning', title: 'for you', message: 'only u' })
  t.match((await onB.client.next(sioNote(broadcastNote))).payload, { level: 'info', title: 'everyone', message: 'hello all' })
  await onB.client.next(sioEvent(system))
  await onC.next((f) => f.type === 'notification' && f.payload.id === userNote)

  // The bystander on the same node, subscribed to everything, got none of u's events or notifications.
  const sentinel = await publish(A, { type: 'authentication.sentinel', userId: x })
  await xOnB.client.next(sioEvent(sentinel))
  t.same(deliveredIds(xOnB.client).sort(), [broadcastNote, system, sentinel].sort(), 'x got the broadcasts and its own event only')
  // u's Socket.IO client: in order, each once, and not the unsubscribed type.
  const sentinelU = await publish(A, { type: 'authentication.sentinel', userId: u })
  await onB.client.next(sioEvent(sentinelU))
  t.same(deliveredIds(onB.client), [id, userNote, broadcastNote, system, sentinelU], 'u on Socket.IO: everything it may see, once each, nothing unsubscribed')
  t.notOk(deliveredIds(onB.client).includes(unsubscribed))
})

t.test('exactly once: one ws and one Socket.IO client of a user on one node, one Redis subscription', { timeout: 30_000 }, async (t) => {
  const u = user('once')
  const channel = `herald:{u:${u}}`
  t.equal(await numsub(channel), 0, 'nobody listens for u yet')
  const raw = await wsOn(t, B, userToken(u), ['*'])
  const s = await sioOn(t, B, userToken(u))
  await s.client.subscribe(['authentication.*', '*'])
  t.equal(await numsub(channel), 1, 'one Redis subscription for the user on B, whatever the transports')
  // The Socket.IO adapter must not have added a path of its own for the user.
  const sioChannels = await rc.call('PUBSUB', 'CHANNELS', `*${u}*`) as string[]
  t.same(sioChannels, [channel], 'the only Redis channel naming u is Herald\'s user channel')

  const ids: string[] = []
  for (let i = 0; i < 20; i++) ids.push(await publish(i % 2 === 0 ? A : B, { type: 'authentication.login.success', userId: u, data: { i } }))
  const note = await notify(C, u, { level: 'info', title: 't', message: 'm' })
  const lastId = await publish(C, { type: 'authentication.sentinel', userId: u })
  await s.client.next(sioEvent(lastId), 10_000)
  await raw.next((f) => f.type === 'event' && f.payload.id === lastId, 10_000)
  const sioIds = s.client.records.filter((r) => r.event === 'event').map((r) => r.payload.id as string)
  const wsIds = raw.frames.filter((f) => f.type === 'event').map((f) => f.payload.id as string)
  t.same(sioIds, [...ids, lastId], 'Socket.IO: each event once (overlapping patterns too), in order')
  t.same(wsIds, [...ids, lastId], 'ws: each event once, in order')
  t.equal(s.client.count(sioNote(note)), 1, 'the notification once on Socket.IO')
  t.equal(raw.count((f) => f.type === 'notification' && f.payload.id === note), 1, 'the notification once on ws')

  // Leaving drops the subscription only when the last transport leaves.
  s.client.close()
  await waitFor('B still holds the user channel for the ws client', async () => await numsub(channel), (n) => n === 1)
  await raw.close()
  await waitFor('no subscription left for u', async () => await numsub(channel), (n) => n === 0)
})

t.test('expiry over Socket.IO: auth_expiring, refresh via the ack, auth_expired and close 4001 without it', { timeout: 30_000 }, async (t) => {
  const u = user('expiry')
  const exp = Math.floor(Date.now() / 1000) + 4 // 3-4 s from now; AUTH_EXPIRY_WARNING is 2 s
  const short = token({ sub: u, sid: `${u}-s1`, roles: ['user'], exp })
  const refresher = await sioOn(t, C, short)
  const idler = await sioOn(t, A, token({ sub: u, sid: `${u}-s2`, roles: ['user'], exp }))
  t.equal(refresher.welcome.expiresAt, new Date(exp * 1000).toISOString(), 'welcome carries exp')
  await refresher.client.subscribe(['authentication.*'])

  const warning = await refresher.client.nextOf('auth_expiring', 5000)
  t.equal(warning.expiresAt, new Date(exp * 1000).toISOString())
  t.ok(warning.expiresIn > 0 && warning.expiresIn <= 2000, `expiresIn ${warning.expiresIn} within the warning window`)
  // A token for someone else is refused, in the ack.
  const foreign = await refresher.client.request('refresh', { token: userToken(user('someone-else')) })
  t.match(foreign, { type: 'error', payload: { code: 'REFRESH_REJECTED' } })
  const fresh = token({ sub: u, sid: `${u}-s1`, roles: ['user'] }, { expiresInMs: 3600_000 })
  const r = await refresher.client.socket.timeout(5000).emitWithAck('refresh', { token: fresh })
  t.equal(r.type, 'refreshed')
  t.ok(Date.parse(r.payload.expiresAt) > exp * 1000 + 3000_000, 'the new expiry')

  // Without a refresh: auth_expired, close {code 4001}, then a server disconnect.
  await idler.client.nextOf('auth_expiring', 5000)
  const gone = await idler.client.disconnected(1, 6000)
  t.equal(gone.reason, 'io server disconnect')
  const seq = idler.client.records.map((x) => x.event)
  t.same(seq.slice(-3), ['auth_expiring', 'auth_expired', 'close'], 'auth_expired, then close, before the disconnect')
  t.match(idler.client.records.at(-1)!.payload, { code: 4001 })
  t.ok(gone.at >= exp * 1000 - 50, 'not before exp')

  // Past the original exp, the refreshed client is still connected and receives events.
  await waitFor('the original exp has passed', () => Date.now(), (now) => now > exp * 1000 + 300, { timeoutMs: 6000, intervalMs: 50 })
  const id = await publish(B, { type: 'authentication.token.refresh', userId: u })
  await refresher.client.next(sioEvent(id))
  t.ok(refresher.client.socket.connected)
  t.same(refresher.client.disconnects, [], 'no disconnect')
  t.equal(refresher.client.count((x) => x.event === 'auth_expired' || x.event === 'close'), 0, 'no auth_expired, no close')
})

t.test('revocation: session_revoked and close 4004, then io server disconnect; the session cannot come back', { timeout: 30_000 }, async (t) => {
  const u = user('revoked')
  const sid = `${u}-session`
  const target = await sioOn(t, B, userToken(u, sid), { reconnection: true, reconnectionDelay: 50, reconnectionDelayMax: 100 })
  const sameUserOtherSession = await sioOn(t, C, userToken(u, `${u}-other`))
  const r = await A.api(`/api/sessions/${encodeURIComponent(sid)}/revoke`, { body: {} })
  t.equal(r.status, 200, JSON.stringify(r.body))
  const t0 = Date.now()
  const gone = await target.client.disconnected(1, 3000)
  t.ok(gone.at - t0 < 1500, `disconnected ${gone.at - t0} ms after the revoke call`)
  t.equal(gone.reason, 'io server disconnect', 'a server disconnect: socket.io-client does not reconnect by itself')
  const events = target.client.records.map((x) => x.event)
  t.same(events.slice(-2), ['session_revoked', 'close'])
  t.match(target.client.records.at(-2)!.payload, { reason: 'session revoked' })
  t.match(target.client.records.at(-1)!.payload, { code: 4004 })
  t.equal(target.client.socket.active, false, 'the socket gave up (no automatic reconnection)')
  t.ok(sameUserOtherSession.client.socket.connected, 'the user\'s other session stays connected')
  // A new attempt with the revoked session is refused.
  const again = await sioAttempt(A.http, { transports: ['websocket'], auth: { token: userToken(u, sid) } })
  t.equal(again.ok, false)
  if (!again.ok) t.match(again.data, { code: 'SESSION_REVOKED', status: 401 })
})

t.test('registry and stats: list_connections shows Socket.IO connections; global.socketio.sockets adds up the nodes\' registry rows', { timeout: 30_000 }, async (t) => {
  const admin = await adminOn(t, A)
  // Nothing of the earlier tests is still open on Socket.IO.
  await waitFor('no Socket.IO socket left from earlier tests', async () => (await admin.request('get_stats')).payload.global.socketio?.sockets, (n) => n === 0, { timeoutMs: 8000, intervalMs: 200 })

  const u = user('listed')
  const s = await sioOn(t, C, userToken(u, `${u}-sid`), { transports: ['polling'] })
  const raw = await wsOn(t, B, userToken(u, `${u}-sid2`))
  const list = await admin.request('list_connections', { userId: u })
  t.equal(list.type, 'connections')
  const rows = list.payload.connections as any[]
  t.equal(rows.length, 2)
  const sioRow = rows.find((c) => c.connectionId === s.welcome.connectionId)
  t.match(sioRow, { connectionId: s.welcome.connectionId, serverId: C.serverId, userId: u, sessionId: `${u}-sid`, endpoint: 'events' }, 'the Socket.IO connection is in the registry')
  t.ok(rows.some((c) => c.serverId === B.serverId), 'next to the ws connection')
  t.ok(raw)

  // Five Socket.IO clients across three nodes: 2 on A, 1 on B, 2 on C (s is one of them).
  for (const node of [A, A, B, C]) await sioOn(t, node, userToken(user('counted')))
  const stats = await waitFor('get_stats counts 5 Socket.IO sockets', async () => (await admin.request('get_stats')).payload, (p) => p.global.socketio?.sockets === 5, { timeoutMs: 8000, intervalMs: 200 })
  t.equal(stats.global.socketio.sockets, 5, 'all Socket.IO sockets of the cluster, from the nodes\' registry rows')
  t.same(Object.fromEntries(stats.global.nodes.map((n: any) => [n.serverId, n.socketio])), { [A.serverId]: 2, [B.serverId]: 1, [C.serverId]: 2 }, 'per node')
  t.equal(stats.global.servers, 3)
  // Asked on another node: the same cluster-wide count, once A's next heartbeat carried its two.
  const admin2 = await adminOn(t, C)
  await waitFor('the same answer from C', async () => (await admin2.request('get_stats')).payload.global.socketio?.sockets, (n) => n === 5, { timeoutMs: 5000, intervalMs: 100 })
  const viaApi = await B.api('/api/stats')
  t.equal(viaApi.body.global.socketio.sockets, 5, 'and from GET /api/stats on B')
  s.client.close()
  await waitFor('4 after one left', async () => (await admin.request('get_stats')).payload.global.socketio?.sockets, (n) => n === 4, { timeoutMs: 8000, intervalMs: 200 })
  t.pass('the count follows closes')
})

t.test('drain: SIGTERM closes the Socket.IO transport (no server disconnect) and clients reconnect by themselves elsewhere', { timeout: 45_000 }, async (t) => {
  const D = await addNode({ SERVER_ID: `sio-d-${process.pid}`, DRAIN_TIMEOUT: '1000' })
  // A balancer that has not noticed the drain (no health checks): reconnects
  // are spread round-robin over D and B, so some land on D while it drains.
  const lb = await startBalancer([D.port, B.port], { healthIntervalMs: 0 })
  t.teardown(() => lb.close())
  const opts: SioOptions = { transports: ['websocket'], reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 400, randomizationFactor: 0.5 }
  const clients: Array<{ client: SioClient, welcome: any, userId: string }> = []
  for (let i = 0; i < 8; i++) {
    const u = user('drain')
    const c = await sioOn(t, lb.http, userToken(u), opts)
    // An application resubscribes on every welcome.
    c.client.socket.on('welcome', () => { c.client.socket.emit('subscribe', { eventTypes: ['authentication.*'] }) })
    await c.client.subscribe(['authentication.*'])
    clients.push({ ...c, userId: u })
  }
  const onD = clients.filter((c) => c.welcome.serverId === D.serverId)
  const onB = clients.filter((c) => c.welcome.serverId === B.serverId)
  t.equal(onD.length, 4, 'round-robin put half on D')
  t.equal(onB.length, 4)

  const t0 = Date.now()
  D.proc.kill('SIGTERM')
  for (const c of onD) {
    const d = await c.client.disconnected(1, 5000)
    t.equal(d.reason, 'transport close', 'a transport close, which socket.io-client reconnects by itself')
  }
  const spread = onD.map((c) => c.client.disconnects[0]!.at - t0).sort((a, b) => a - b)
  t.ok(spread.at(-1)! - spread[0]! >= 400, `closes spread over the drain window: ${spread.join(', ')} ms`)
  t.equal(onD.reduce((n, c) => n + c.client.count((r) => r.event === 'close'), 0), 0, 'no close {code} event: not a server disconnect')

  // Each of D's clients comes back on B (some after hitting the draining D), with no help from the app.
  for (const c of onD) {
    const w = await c.client.nextOf('welcome', 15_000, c.client.records.findIndex((r) => r.event === 'welcome') + 1)
    t.equal(w.serverId, B.serverId, `${c.userId} reconnected to B`)
    t.ok(c.client.socket.connected)
  }
  const hitDraining = onD.reduce((n, c) => n + c.client.connectErrors.length, 0)
  t.ok(hitDraining >= 1, `${hitDraining} reconnect attempt(s) landed on the draining node and were retried`)
  t.same(await within(15_000, 'D exits', D.exit), { code: 0, signal: null }, 'D exited cleanly after the drain')
  // Resubscribed: an event for each of D's former users arrives.
  for (const c of onD) {
    await waitFor(`${c.userId} resubscribed`, async () => (await c.client.request('get_subscriptions')).payload.eventTypes, (p) => p.includes('authentication.*'))
    const id = await publish(A, { type: 'authentication.login.success', userId: c.userId })
    await c.client.next(sioEvent(id))
  }
  t.same(onB.map((c) => c.client.disconnects.length), [0, 0, 0, 0], 'clients on B were never disconnected')
})

t.test('anonymous guests on both transports: broadcast audience only; refused without ALLOW_ANONYMOUS', { timeout: 30_000 }, async (t) => {
  // Without ALLOW_ANONYMOUS (nodes A, B, C): refused on both transports.
  const r = await refusal(`${A.ws}/ws/events`)
  t.equal(r.status, 401)
  t.equal(r.body.error.code, 'TOKEN_MISSING')
  const s = await sioAttempt(A.http, { transports: ['websocket'] })
  t.equal(s.ok, false)
  if (!s.ok) t.match(s.data, { code: 'TOKEN_MISSING', status: 401 })

  const G = await addNode({ SERVER_ID: `sio-g-${process.pid}`, ALLOW_ANONYMOUS: 'true' })
  const guestWs = await wsOn(t, G, undefined, ['*'])
  const guestSio = await sioOn(t, G, undefined)
  const wsWelcome = guestWs.frames.find((f) => f.type === 'welcome')!.payload
  t.match(wsWelcome, { userId: /^guest:/, serverId: G.serverId, expiresAt: null })
  t.match(guestSio.welcome, { userId: /^guest:/, serverId: G.serverId, expiresAt: null })
  t.not(wsWelcome.userId, guestSio.welcome.userId, 'each guest is its own identity')
  await guestSio.client.subscribe(['*'])
  // A real user on G, so G does hear that user's channel.
  const u = user('real')
  const real = await wsOn(t, G, userToken(u), ['*'])

  const userEvent = await publish(A, { type: 'authentication.login.success', userId: u })
  const userNote = await notify(B, u, { level: 'info', title: 'for u', message: 'private' })
  const atGuest = await publish(A, { type: 'authentication.login.success', userId: guestSio.welcome.userId })
  const noteAtGuest = await notify(A, wsWelcome.userId, { level: 'info', title: 'for the guest id', message: 'x' })
  const adminOnly = await publish(A, { type: 'admin.user.locked', userId: u })
  const noUser = await publish(A, { type: 'security.suspicious.activity' })
  const system = await publish(A, { type: 'system.maintenance.scheduled', data: { at: '03:00' } })
  const broadcast = await notify(A, null, { level: 'warning', title: 'all', message: 'everyone' })
  const sentinel = await publish(A, { type: 'system.sentinel' })

  await guestSio.client.next(sioEvent(sentinel))
  await guestWs.next((f) => f.type === 'event' && f.payload.id === sentinel)
  const wsIds = guestWs.frames.filter((f) => f.type === 'event' || f.type === 'notification').map((f) => f.payload.id as string)
  t.same(deliveredIds(guestSio.client), [system, broadcast, sentinel], 'Socket.IO guest: system.* and the broadcast notification only')
  t.same(wsIds, [system, broadcast, sentinel], 'ws guest: system.* and the broadcast notification only')
  for (const id of [userEvent, userNote, atGuest, noteAtGuest, adminOnly, noUser]) {
    t.notOk(wsIds.includes(id) || deliveredIds(guestSio.client).includes(id))
  }
  // The real user on the same node did get its own event and notification.
  await real.next((f) => f.type === 'notification' && f.payload.id === userNote)
  t.ok(real.frames.some((f) => f.type === 'event' && f.payload.id === userEvent))
  // G does not subscribe to any user channel for its guests.
  t.equal(await numsub(`herald:{u:${guestSio.welcome.userId}}`), 0)
  t.equal(await numsub(`herald:{u:${wsWelcome.userId}}`), 0)
  // A guest has no token to renew: a refresh says so, whatever the token.
  guestWs.send({ type: 'refresh', id: 'guest-refresh', payload: { token: userToken(u, undefined, { publish: ['chat.*'] }) } })
  const refused = await guestWs.next((f) => f.id === 'guest-refresh')
  t.match(refused, { type: 'error', payload: { code: 'REFRESH_REJECTED', message: /guest connection has no token to renew/ } }, 'a guest\'s refresh is refused as a guest\'s')
})

t.test('backend unreachable: a Socket.IO client is refused at the transport, keeps retrying by itself, and gets in once Redis is back', { timeout: 40_000 }, async (t) => {
  // Its own Redis and node: pausing Redis must not disturb the cluster above.
  const own = await startRedis()
  t.teardown(() => own.stop())
  const E = await startNode({ REDIS_URL: own.url, SERVER_ID: `sio-e-${process.pid}`, HEALTH_PROBE_INTERVAL: '200' })
  t.teardown(() => E.stop())
  own.pause()
  t.teardown(() => own.resume())
  await waitFor('readiness 503 while Redis is paused', async () => (await E.api('/ws/health', { key: '' })).status, (s) => s === 503, { timeoutMs: 5000, intervalMs: 50 })
  const c = sio(E.http, { transports: ['websocket'], auth: { token: userToken(user('outage')) }, reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 300 })
  t.teardown(() => c.close())
  await waitFor('refused a few times', () => c.connectErrors.length, (n) => n >= 2, { timeoutMs: 5000, intervalMs: 20 })
  t.ok(c.socket.active, 'the client is still trying (a transport refusal, not a final connect_error)')
  t.notOk(c.connectErrors.some((e) => e.data?.code === 'BACKEND_UNAVAILABLE'), 'no final middleware refusal')
  own.resume()
  const w = await c.nextOf('welcome', 15_000)
  t.equal(w.serverId, E.serverId, 'connected by itself once the backend was back')
})

t.test('node at capacity: a Socket.IO client is refused at the transport, keeps retrying, and gets in once a slot frees', { timeout: 30_000 }, async (t) => {
  const F = await addNode({ SERVER_ID: `sio-f-${process.pid}`, WEBSOCKET_MAX_CONNECTIONS: '1' })
  let holder = (await sioOn(t, F, userToken(user('first')))).client
  // A raw WebSocket is refused too: the capacity counts both transports.
  const ws = await refusal(`${F.ws}/ws/events?token=${userToken(user('raw'))}`)
  t.match(ws, { status: 503, body: { error: { code: 'NODE_FULL' } } })

  for (const transports of [['websocket'], ['polling']]) {
    const u = user('second')
    const c = sio(F.http, { transports, auth: { token: userToken(u) }, reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 })
    t.teardown(() => c.close())
    await waitFor(`${transports[0]}: refused a few times`, () => c.connectErrors.length, (n) => n >= 3, { timeoutMs: 8000, intervalMs: 20 })
    t.ok(c.socket.active, `${transports[0]}: still trying (a transport refusal, not a final connect_error)`)
    t.same(c.connectErrors.filter((e) => e.data !== undefined), [], 'no refusal carried data')
    t.equal(c.count((r) => r.event === 'welcome'), 0, 'not admitted while the node is full')
    holder.close()
    const w = await c.nextOf('welcome', 10_000)
    t.equal(w.userId, u, `${transports[0]}: admitted by itself once the slot freed`)
    t.equal(w.serverId, F.serverId)
    holder = c
  }
})

t.test('the per-IP limit counts both transports; a Socket.IO refusal is connect_error CONNECTION_LIMIT', { timeout: 60_000 }, async (t) => {
  // Its own Redis: the per-IP count is cluster-wide, and every test client is 127.0.0.1.
  const own = await startRedis()
  t.teardown(() => own.stop())
  const P = await startNode({ REDIS_URL: own.url, SERVER_ID: `sio-p-${process.pid}`, MAX_CONNECTIONS_PER_IP: '3' })
  t.teardown(() => P.stop())
  // One raw WebSocket and two Socket.IO clients fill the 3 slots of the IP (each helper throws if refused).
  const raw = await wsOn(t, P, userToken(user('ip')))
  await sioOn(t, P, userToken(user('ip')), { transports: ['websocket'] })
  const viaPolling = await sioOn(t, P, userToken(user('ip')), { transports: ['polling'] })

  for (const transports of [['websocket'], ['polling']]) {
    const r = await sioAttempt(P.http, { transports, auth: { token: userToken(user('ip')) } })
    t.equal(r.ok, false, `${transports[0]}: a fourth connection from the IP is refused`)
    if (!r.ok) {
      t.match(r.data, { code: 'CONNECTION_LIMIT', status: 429, retryAfter: Number }, 'connect_error with data.code CONNECTION_LIMIT')
      t.match(r.message, /per IP address/, 'the message names the IP limit')
    }
  }
  const w = await attempt(`${P.ws}/ws/events`, { token: userToken(user('ip')) })
  t.equal(w.ok, false, 'a raw WebSocket is refused too')
  if (!w.ok) t.match(w.refusal, { status: 429, body: { error: { code: 'CONNECTION_LIMIT' } } })
  else w.client.ws.terminate()

  // A Socket.IO slot freed lets a raw WebSocket in, and the other way round.
  // The slot frees when the node has seen the transport close and Redis has
  // taken the release: on a loaded machine that is seconds, not milliseconds.
  viaPolling.client.close()
  const again = await waitFor('a raw WebSocket admitted once the Socket.IO client left', async () => await attempt(`${P.ws}/ws/events`, { token: userToken(user('ip')) }), (a) => a.ok, { timeoutMs: 15_000, intervalMs: 100 })
  if (again.ok) t.teardown(() => again.client.close())
  const full = await sioAttempt(P.http, { transports: ['websocket'], auth: { token: userToken(user('ip')) } })
  t.equal(full.ok, false, 'full again')
  if (!full.ok) t.equal(full.data?.code, 'CONNECTION_LIMIT')
  await raw.close()
  const back = await waitFor('a Socket.IO client admitted once the raw WebSocket left', async () => await sioAttempt(P.http, { transports: ['websocket'], auth: { token: userToken(user('ip')) } }), (a) => a.ok, { timeoutMs: 15_000, intervalMs: 100 })
  if (back.ok) t.teardown(() => back.client.close())
  t.ok(back.ok)
})

t.test('disconnect codes: an oversized message is 1009 (the node and other clients carry on), a lost transport 1006, a client goodbye 1000', { timeout: 30_000 }, async (t) => {
  // MAX_PUBLISH_BYTES as low: the transport's own limit is the larger of the two (a message within it but over MAX_MESSAGE_BYTES gets `close` 1009: test/publish/cluster.test.ts).
  const H = await addNode({ SERVER_ID: `sio-h-${process.pid}`, MAX_MESSAGE_BYTES: '1024', MAX_PUBLISH_BYTES: '1024' })
  const scrape = async (): Promise<Sample[]> => parseMetrics((await H.api('/metrics', { key: '' })).body as string)
  const disconnects = async (code: string): Promise<number> => metric(await scrape(), 'herald_disconnects_total', { endpoint: 'events', code })
  const u = user('bystander')
  const bySio = await sioOn(t, H, userToken(u))
  await bySio.client.subscribe(['authentication.*'])
  const byWs = await wsOn(t, H, userToken(u), ['authentication.*'])
  const base = { 1009: await disconnects('1009'), 1006: await disconnects('1006'), 1000: await disconnects('1000') }

  // Just under MAX_MESSAGE_BYTES is fine.
  const fits = await sioOn(t, H, userToken(user('fits')))
  t.equal((await fits.client.request('ping', { pad: 'x'.repeat(900) })).type, 'pong', 'a 900-byte message is handled')

  let n = 0
  for (const transports of [['websocket'], ['polling']]) {
    const big = await sioOn(t, H, userToken(user('big')), { transports })
    big.client.socket.emit('subscribe', { eventTypes: ['authentication.*'], pad: 'x'.repeat(4096) })
    const gone = await big.client.disconnected(1, 5000)
    t.match(gone.reason, /^transport (close|error)$/, `${transports[0]}: dropped at the transport (${gone.reason}): Socket.IO has no close code to send`)
    t.equal(big.client.count((r) => r.event === 'subscribed' || r.event === 'close'), 0, 'nothing was handled, no close event')
    n++
    await waitFor(`${transports[0]}: counted as 1009`, async () => await disconnects('1009') - base[1009], (d) => d === n)
  }

  // The node and everyone else carry on.
  t.equal((await H.api('/ws/health', { key: '' })).status, 200, 'the node is up and ready')
  const id = await publish(A, { type: 'authentication.login.success', userId: u })
  await bySio.client.next(sioEvent(id))
  await byWs.next((f) => f.type === 'event' && f.payload.id === id)
  t.ok(bySio.client.socket.connected && fits.client.socket.connected, 'the other Socket.IO clients are still connected')

  // Lost without a goodbye (what a dropped network looks like to the server): 1006.
  const lost = await sioOn(t, H, userToken(user('lost')))
  lost.client.socket.io.engine.close()
  await waitFor('a lost transport counted as 1006', async () => await disconnects('1006') - base[1006], (d) => d === 1)
  // socket.disconnect() on the client: 1000.
  fits.client.close()
  await waitFor('a client goodbye counted as 1000', async () => await disconnects('1000') - base[1000], (d) => d === 1)
  t.equal(await disconnects('1009') - base[1009], 2, 'and nothing else counted as 1009')
})

t.test('the README example: auth as a callback and resubscribe on every welcome survive an automatic reconnect', { timeout: 30_000 }, async (t) => {
  const u = user('readme')
  let tokens = 0
  const getToken = (): string => { tokens++; return userToken(u) }
  const c = sio(B.http, {
    transports: ['websocket'],
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 200,
    auth: (cb: (data: object) => void) => cb({ token: getToken() }),
  })
  t.teardown(() => c.close())
  // Subscriptions belong to a connection: the new connection after a reconnect starts with none.
  const replies: Array<{ type: string }> = []
  c.socket.on('welcome', async () => {
    replies.push(await c.socket.timeout(5000).emitWithAck('subscribe', { eventTypes: ['authentication.*'] }))
  })
  await c.nextOf('welcome')
  await waitFor('subscribed', () => replies.length, (n) => n === 1)
  t.equal(replies[0]!.type, 'subscribed')
  const first = await publish(A, { type: 'authentication.login.success', userId: u })
  await c.next(sioEvent(first))

  // The connection drops; socket.io-client reconnects by itself, asking for a token again.
  c.socket.io.engine.close()
  await c.disconnected(1)
  const w2 = await c.nextOf('welcome', 10_000, c.records.findIndex((r) => r.event === 'welcome') + 1)
  t.equal(w2.userId, u, 'welcomed again')
  t.equal(tokens, 2, 'getToken was called for each connect')
  await waitFor('resubscribed on the new connection', () => replies.length, (n) => n === 2)
  t.equal(replies[1]!.type, 'subscribed')
  t.same((await c.request('get_subscriptions')).payload.eventTypes, ['authentication.*'], 'the new connection holds the subscription')
  const second = await publish(C, { type: 'authentication.login.success', userId: u })
  await c.next(sioEvent(second))
  t.pass('events flow again after the reconnect')
})
