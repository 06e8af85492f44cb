// The client SDK (src/client/index.ts) on Node with the `ws` WebSocket,
// against three node processes and a private Redis: connect, subscribe,
// events, requests; in-band refresh without a disconnect; the close-code
// policy (4004 and 4003 stop, 4001 reconnects with a new token); subscriptions
// kept exact across reconnects (invalid patterns refused locally, a refused
// subscribe, calls made mid-restore) and connect() in every state, with a
// balancer in front of one node cutting connections; and 1,000 clients behind
// a small round-robin load balancer surviving a SIGKILLed node and then a
// drained one, with their reconnects spread out.
import t, { type Test } from 'tap'
import WebSocket from 'ws'
import { HeraldClient, HeraldError, type ClientOptions, type ClientState, type HeraldEvent } from '../../src/client/index.js'
import { startBalancer, type Balancer } from '../helpers/balancer.js'
import { connect } from '../helpers/client.js'
import { startCluster } from '../helpers/cluster.js'
import type { NodeProc } from '../helpers/node.js'
import { sdk, untilState, user, type Probe } from '../helpers/sdk.js'
import { adminToken, token, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const DRAIN_TIMEOUT = 2000
/** patterns per connection, set low so that a test can pass it */
const MAX_SUBSCRIPTIONS = 8
const { nodes } = await startCluster(t, { AUTH_EXPIRY_WARNING: '2000', DRAIN_TIMEOUT: String(DRAIN_TIMEOUT), MAX_SUBSCRIPTIONS: String(MAX_SUBSCRIPTIONS) }, 3)
const [A, B, C] = nodes as [NodeProc, NodeProc, NodeProc]

async function publish (node: NodeProc, body: Record<string, unknown>): Promise<string> {
  const r = await node.api('/api/events', { body })
  if (r.status !== 202) throw new Error(`publish on ${node.serverId} answered ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.id as string
}

const gotEvent = (p: Probe, id: string): Promise<HeraldEvent> => waitFor(`event ${id}`, () => p.events.find((e) => e.id === id), (e) => e !== undefined, { timeoutMs: 5000, intervalMs: 10 }) as Promise<HeraldEvent>

t.test('connect, subscribe, receive events and notifications; requests carry ids; ping', { timeout: 20_000 }, async (t) => {
  const u = user('basic')
  const p = sdk(t, { url: `${A.ws}/ws/events`, getToken: () => userToken(u, `${u}-sid`), eventTypes: ['session.*'] })
  t.equal(p.client.state, 'disconnected')
  const w = await p.client.connect()
  t.match(w, { serverId: A.serverId, userId: u, sessionId: `${u}-sid` })
  t.equal(p.client.state, 'connected')
  t.same(p.states, ['connecting', 'connected'])
  t.equal(p.client.connects, 1)
  // The constructor's patterns were subscribed before `connected`.
  t.same((await p.client.request('get_subscriptions')).payload.eventTypes, ['session.*'])
  t.same(await p.client.subscribe(['authentication.*']), ['session.*', 'authentication.*'])
  t.same(p.client.subscriptions, ['session.*', 'authentication.*'])

  const id1 = await publish(B, { type: 'authentication.login.success', userId: u, data: { ip: '203.0.113.9' } })
  const id2 = await publish(C, { type: 'session.created', userId: u, sessionId: 'sx' })
  t.match(await gotEvent(p, id1), { id: id1, type: 'authentication.login.success', userId: u, data: { ip: '203.0.113.9' } })
  t.match(await gotEvent(p, id2), { type: 'session.created', sessionId: 'sx' })
  const n = await C.api(`/api/notifications/users/${u}`, { body: { level: 'info', title: 'hi', message: 'there' } })
  await waitFor('the notification', () => p.notifications.find((x) => x.id === n.body.id))
  t.same(await p.client.unsubscribe(['session.*']), ['authentication.*'])

  // Concurrent requests: each reply matched to its own request by id.
  const before = p.frames.length
  const [subs, rtts, pong] = await Promise.all([
    p.client.request('get_subscriptions'),
    Promise.all([p.client.ping(), p.client.ping(), p.client.ping()]),
    p.client.request('ping'),
  ])
  t.same(subs.payload.eventTypes, ['authentication.*'])
  t.equal(pong.type, 'pong')
  for (const ms of rtts) t.ok(ms >= 0 && ms < 5000, `ping ${ms} ms`)
  const replies = p.frames.slice(before).filter((f) => f.id !== undefined)
  t.equal(replies.length, 5)
  t.equal(new Set(replies.map((f) => f.id)).size, 5, 'distinct request ids')
  t.ok(replies.every((f) => /^c\d+$/.test(f.id!)), 'ids the SDK chose')
  await t.rejects(p.client.request('subscribe', { eventTypes: ['NOT VALID'] }), { name: 'HeraldError', code: 'INVALID_PATTERN' }, 'an error reply rejects the request with HeraldError')
  await t.rejects(p.client.subscribe(['also not valid!']), { name: 'HeraldError', code: 'INVALID_PATTERN' }, 'subscribe() checks patterns itself')
  t.equal(p.client.state, 'connected', 'errors leave the connection up')

  p.client.close()
  t.equal(p.client.state, 'closed')
  await t.rejects(p.client.request('ping'), /not connected/)
  await t.rejects(p.client.connect(), /closed/)
  t.same(p.disconnects, [], 'a local close is no disconnect to report')
})

t.test('an expiring token is refreshed in-band: no disconnect, events still arrive after the original exp', { timeout: 20_000 }, async (t) => {
  const u = user('refresh')
  const exp = Math.floor(Date.now() / 1000) + 4 // 3-4 s; AUTH_EXPIRY_WARNING is 2 s
  let calls = 0
  const p = sdk(t, {
    url: `${B.ws}/ws/events`,
    eventTypes: ['authentication.*'],
    getToken: () => ++calls === 1 ? token({ sub: u, sid: `${u}-sid`, roles: ['user'], exp }) : userToken(u, `${u}-sid`),
  })
  const w = await p.client.connect()
  t.equal(w.expiresAt, new Date(exp * 1000).toISOString())
  await waitFor('the in-band refresh', () => p.refreshed.length, (n) => n === 1, { timeoutMs: 5000, intervalMs: 20 })
  t.equal(calls, 2, 'getToken called once more, on auth_expiring')
  t.ok(Date.parse(p.refreshed[0]!) > exp * 1000 + 3000_000, `refreshed until ${p.refreshed[0]}`)
  t.ok(p.frames.some((f) => f.type === 'auth_expiring'), 'the server warned first')
  await waitFor('the original exp has passed', () => Date.now(), (now) => now > exp * 1000 + 500, { timeoutMs: 6000, intervalMs: 50 })
  const id = await publish(A, { type: 'authentication.token.refresh', userId: u })
  await gotEvent(p, id)
  t.same(p.disconnects, [], 'no disconnect')
  t.equal(p.client.connects, 1, 'still the first connection')
  t.equal(p.client.state, 'connected')
  t.notOk(p.frames.some((f) => f.type === 'auth_expired'))
})

t.test('4004: a revoked session stops the client (state closed, revoked fired, no reconnect)', { timeout: 20_000 }, async (t) => {
  const u = user('revoked')
  const sid = `${u}-sid`
  const p = sdk(t, { url: `${C.ws}/ws/events`, getToken: () => userToken(u, sid), maxDelayMs: 100 })
  await p.client.connect()
  const r = await A.api(`/api/sessions/${sid}/revoke`, { body: {} })
  t.equal(r.status, 200)
  await untilState(p.client, 'closed', 3000)
  t.same(p.revoked, ['session revoked'], 'revoked fired with the reason')
  t.match(p.disconnects, [{ code: 4004, delayMs: null }], 'the disconnect says it will not retry')
  t.same(p.states, ['connecting', 'connected', 'closed'])
  // Any retry would call getToken within maxDelayMs (100 ms); give it ten times that.
  const retried = new Promise<void>((resolve) => p.client.on('state', () => resolve()))
  await t.rejects(within(1000, 'a reconnect attempt', retried), /did not finish/, 'no reconnect attempt')
  t.equal(p.tokens.length, 1, 'getToken never called again')
})

t.test('4003: disconnected by an administrator stops the client too, without `revoked`', { timeout: 20_000 }, async (t) => {
  const u = user('kicked')
  const p = sdk(t, { url: `${A.ws}/ws/events`, getToken: () => userToken(u), maxDelayMs: 100 })
  await p.client.connect()
  const admin = await connect(`${B.ws}/ws/admin`, { token: adminToken(user('admin')) })
  t.teardown(() => admin.close())
  t.equal((await admin.request('disconnect', { userId: u })).type, 'disconnected')
  await untilState(p.client, 'closed', 3000)
  t.match(p.disconnects, [{ code: 4003, delayMs: null }])
  t.same(p.revoked, [])
  const retried = new Promise<void>((resolve) => p.client.on('state', () => resolve()))
  await t.rejects(within(1000, 'a reconnect attempt', retried), /did not finish/, 'no reconnect attempt')
  t.equal(p.tokens.length, 1)
})

t.test('4001: a short token that cannot be refreshed expires, and the client reconnects with a fresh one', { timeout: 25_000 }, async (t) => {
  const exp = Math.floor(Date.now() / 1000) + 3 // 2-3 s
  // X: the token source can only hand out the same short token until exp.
  const ux = user('short-same')
  let xCalls = 0
  const x = sdk(t, {
    url: `${A.ws}/ws/events`, eventTypes: ['authentication.*'], baseDelayMs: 200,
    getToken: () => { xCalls++; return Date.now() < exp * 1000 ? token({ sub: ux, sid: `${ux}-sid`, roles: ['user'], exp }) : userToken(ux, `${ux}-sid`) },
  })
  // Y: the token source is down when the refresh is due.
  const uy = user('short-fails')
  let yCalls = 0
  const y = sdk(t, {
    url: `${B.ws}/ws/events`, eventTypes: ['authentication.*'], baseDelayMs: 200,
    getToken: () => {
      yCalls++
      if (yCalls === 1) return token({ sub: uy, sid: `${uy}-sid`, roles: ['user'], exp })
      if (yCalls === 2) throw new Error('identity provider unavailable')
      return userToken(uy, `${uy}-sid`)
    },
  })
  await Promise.all([x.client.connect(), y.client.connect()])

  for (const [name, p, u] of [['X', x, ux], ['Y', y, uy]] as const) {
    await waitFor(`${name} reconnected`, () => p.client.connects, (n) => n === 2, { timeoutMs: 8000, intervalMs: 20 })
    t.match(p.disconnects, [{ code: 4001 }], `${name}: one disconnect, 4001`)
    const d = p.disconnects[0]!
    t.ok(d.delayMs !== null && d.delayMs <= 200, `${name}: reconnect scheduled within baseDelayMs (${Math.round(d.delayMs ?? -1)} ms)`)
    t.ok(d.at >= exp * 1000 - 50, `${name}: not before exp`)
    t.ok(p.frames.some((f) => f.type === 'auth_expired'), `${name}: auth_expired before the close`)
    t.equal(p.welcomes.length, 2)
    t.ok(Date.parse(p.welcomes[1]!.expiresAt!) > exp * 1000 + 3000_000, `${name}: the new connection runs on a fresh token`)
    t.equal(p.client.state, 'connected')
    // Resubscribed after the reconnect.
    const id = await publish(C, { type: 'authentication.login.success', userId: u })
    await gotEvent(p, id)
  }
  t.equal(xCalls, 3, 'X: connect, refresh (same short token), reconnect')
  t.equal(x.refreshed.length, 1, 'X: the refresh with the same token was accepted but did not extend exp')
  t.equal(yCalls, 3, 'Y: connect, failed refresh, reconnect')
  t.match(y.errors, [{ message: 'identity provider unavailable' }], 'Y: the failed refresh surfaced as an error event')
  t.same(y.refreshed, [])
})

t.test('4029: a rate-limited client backs off for at least rateLimitDelayMs and keeps trying', { timeout: 25_000 }, async (t) => {
  // Its own Redis and node with a tiny message limit (the per-IP count is shared by every client on 127.0.0.1).
  const [F] = (await startCluster(t, { MAX_MESSAGES_PER_MINUTE: '5' }, 1)).nodes as [NodeProc]
  const u = user('flood')
  const p = sdk(t, { url: `${F.ws}/ws/events`, getToken: () => userToken(u), maxDelayMs: 100, rateLimitDelayMs: 1500 })
  await p.client.connect()
  const results = await Promise.allSettled(Array.from({ length: 20 }, async () => await p.client.ping()))
  const limited = results.filter((r) => r.status === 'rejected' && (r.reason as HeraldError).code === 'RATE_LIMITED').length
  t.ok(limited >= 1, `${limited} requests answered RATE_LIMITED`)
  await waitFor('the 4029 close', () => p.disconnects.length, (n) => n >= 1, { timeoutMs: 5000, intervalMs: 10 })
  t.match(p.disconnects[0], { code: 4029 })
  t.ok(p.disconnects[0]!.delayMs! >= 1500, `backed off ${Math.round(p.disconnects[0]!.delayMs!)} ms, at least rateLimitDelayMs (the base backoff is 50 ms)`)
  t.equal(p.client.state, 'reconnecting', 'not closed: it will try again')
})

// ----------------------------------------------------------------------------
// Subscriptions across reconnects, and connect() in every state. A balancer in
// front of node A alone cuts the client's connection (1006) while A stays up.

/** A balancer in front of node A alone, without health checks: setAlive(A.port, false) refuses new connections at once. */
async function frontOfA (t: Test): Promise<Balancer> {
  const lb = await startBalancer([A.port], { healthIntervalMs: 0 })
  t.teardown(() => lb.close())
  return lb
}

/** What node A holds for the client's current connection. */
const serverSet = async (p: Probe): Promise<string[]> => ((await p.client.request('get_subscriptions')).payload.eventTypes as string[]).slice().sort()

/** Cuts the connection and resolves once the client is connected again. */
async function reconnect (lb: Balancer, p: Probe): Promise<void> {
  const n = p.client.connects
  lb.cut()
  await untilState(p.client, 'reconnecting')
  await untilState(p.client, 'connected')
  if (p.client.connects !== n + 1) throw new Error(`expected connect #${n + 1}, the client counts ${p.client.connects}`)
}

t.test('an invalid pattern is refused locally with the server\'s INVALID_PATTERN, before connect and after: nothing is sent or kept', { timeout: 20_000 }, async (t) => {
  const lb = await frontOfA(t)
  const u = user('bad-pattern')
  const url = `${lb.ws}/ws/events`
  t.throws(() => new HeraldClient({ url, WebSocket: WebSocket as unknown as ClientOptions['WebSocket'], getToken: () => userToken(u), eventTypes: ['authentication.*', 'Bad Pattern'] }),
    { name: 'HeraldError', code: 'INVALID_PATTERN', message: /"Bad Pattern"/ }, 'the constructor throws on a bad eventTypes')
  const p = sdk(t, { url, getToken: () => userToken(u), eventTypes: ['authentication.*'] })
  await t.rejects(p.client.subscribe(['security.*', 'NOT.valid']), { name: 'HeraldError', code: 'INVALID_PATTERN', message: /"NOT\.valid"/ }, 'before connect: rejected at once, naming the pattern')
  t.equal(p.client.state, 'disconnected', 'without connecting')
  t.same(p.client.subscriptions, ['authentication.*'], 'all or nothing, as on the server: the valid pattern of the call is not kept either')
  t.same(await p.client.subscribe(['session.*']), ['authentication.*', 'session.*'], 'a valid call before connect is kept')
  await p.client.connect()
  t.same(await serverSet(p), ['authentication.*', 'session.*'], 'the first connection holds exactly the kept patterns')

  const before = p.frames.length
  await t.rejects(p.client.subscribe(['system.*', 'a..b']), { name: 'HeraldError', code: 'INVALID_PATTERN' }, 'connected: rejected the same way')
  t.same(await serverSet(p), ['authentication.*', 'session.*'], 'nothing changed on the server')
  t.same(p.frames.slice(before).map((f) => f.type), ['subscriptions'], 'no reply but to get_subscriptions: the subscribe was never sent')
  t.same(p.client.subscriptions, ['authentication.*', 'session.*'])

  await reconnect(lb, p)
  t.same(await serverSet(p), ['authentication.*', 'session.*'], 'restored after a reconnect')
  t.same(p.errors, [], 'no error event: the calls were told')
  const id = await publish(C, { type: 'session.created', userId: u, sessionId: 's1' })
  await gotEvent(p, id)
})

t.test('a subscribe the server refuses (TOO_MANY_SUBSCRIPTIONS) changes nothing: every reconnect restores the held patterns and events keep flowing', { timeout: 20_000 }, async (t) => {
  const lb = await frontOfA(t)
  const u = user('too-many')
  const p = sdk(t, { url: `${lb.ws}/ws/events`, getToken: () => userToken(u), eventTypes: ['authentication.*'] })
  await p.client.connect()
  // Valid patterns, one more than the node allows next to the one held: the server takes a subscribe all or nothing.
  const many = Array.from({ length: MAX_SUBSCRIPTIONS }, (_x, i) => `billing.p${i}.*`)
  await t.rejects(p.client.subscribe(many), { name: 'HeraldError', code: 'TOO_MANY_SUBSCRIPTIONS' }, 'the server refuses the whole request')
  t.same(p.client.subscriptions, ['authentication.*'], 'the refused patterns were not kept')
  t.same(await serverSet(p), ['authentication.*'], 'nor held by the server')
  for (const round of [1, 2]) {
    await reconnect(lb, p)
    t.same(await serverSet(p), ['authentication.*'], `reconnect ${round}: the held pattern is held again`)
    const id = await publish(B, { type: 'authentication.login.success', userId: u, data: { round } })
    await gotEvent(p, id)
  }
  t.equal(p.disconnects.length, 2)
  t.match(p.disconnects, [{ code: 1006 }, { code: 1006 }])
  t.same(p.errors, [], 'no error on the reconnects')
})

t.test('subscribe and unsubscribe made while a reconnect restores subscriptions reach the server', { timeout: 20_000 }, async (t) => {
  const lb = await frontOfA(t)
  const u = user('mid-restore')
  const p = sdk(t, { url: `${lb.ws}/ws/events`, getToken: () => userToken(u), eventTypes: ['authentication.*', 'session.*'] })
  await p.client.connect()
  // On the next welcome, as an app reacting to it would: one call before the
  // resubscription is sent, the others while it is on the wire.
  const calls: Array<Promise<string[]>> = []
  const statesAtCall: ClientState[] = []
  const off = p.client.on('welcome', () => {
    off()
    statesAtCall.push(p.client.state)
    calls.push(p.client.subscribe(['security.*']))
    void Promise.resolve().then(() => {
      statesAtCall.push(p.client.state)
      calls.push(p.client.unsubscribe(['session.*']))
      calls.push(p.client.subscribe(['system.*']))
    })
  })
  await reconnect(lb, p)
  t.same(statesAtCall, ['reconnecting', 'reconnecting'], 'the calls were made before the client was connected again')
  const results = await within(5000, 'the calls', Promise.all(calls))
  t.same(results.at(-1)!.slice().sort(), ['authentication.*', 'security.*', 'system.*'], 'each resolves with what the server holds')
  t.same(p.client.subscriptions.slice().sort(), ['authentication.*', 'security.*', 'system.*'])
  t.same(await serverSet(p), p.client.subscriptions.slice().sort(), 'the server holds exactly what the client keeps')
  const gone = await publish(B, { type: 'session.created', userId: u, sessionId: 'sx' })
  const kept = await publish(B, { type: 'security.high_risk.detected', userId: u })
  await gotEvent(p, kept)
  t.notOk(p.events.some((e) => e.id === gone), 'the unsubscribed pattern no longer delivers')
})

t.test('connect(): at once when connected, one shared promise while connecting, and waits through a reconnect', { timeout: 20_000 }, async (t) => {
  const lb = await frontOfA(t)
  const u = user('connect-twice')
  const p = sdk(t, { url: `${lb.ws}/ws/events`, getToken: () => userToken(u) })
  const first = p.client.connect()
  t.equal(p.client.connect(), first, 'while connecting: the same promise')
  const w = await within(5000, 'the first connect', first)
  t.equal(await within(1000, 'connect() while connected', p.client.connect()), w, 'while connected: resolves at once with the welcome')
  t.equal(p.client.connects, 1, 'and opens nothing new')
  // The network goes away for a while: the connection is cut and new ones are refused.
  lb.setAlive(A.port, false)
  lb.cut()
  await untilState(p.client, 'reconnecting', 3000)
  const again = p.client.connect()
  t.equal(p.client.connect(), again, 'while reconnecting: the same promise')
  lb.setAlive(A.port, true)
  const w2 = await within(5000, 'connect() through the reconnect', again)
  t.not(w2.connectionId, w.connectionId, 'resolved with the new connection')
  t.equal(p.client.state, 'connected')
})

// ----------------------------------------------------------------------------
// 1,000 clients through a load balancer: SIGKILL one node, then drain another.

const CLIENTS = 1000
const BATCH = 50

interface Mass {
  i: number
  userId: string
  client: HeraldClient
  serverIds: string[]
  connectedAt: number[]
  disconnects: Array<{ code: number, delayMs: number | null, at: number }>
  got: Set<string>
  closed: boolean
}

const pct = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.round(q * (s.length - 1))))]!
}
const summary = (xs: number[]): { n: number, min: number, p10: number, median: number, p90: number, max: number } =>
  ({ n: xs.length, min: Math.min(...xs), p10: pct(xs, 0.1), median: pct(xs, 0.5), p90: pct(xs, 0.9), max: Math.max(...xs) })

t.test(`${CLIENTS} SDK clients behind a load balancer survive a SIGKILLed node and a drained one`, { timeout: 100_000 }, async (t) => {
  const lb = await startBalancer([A.port, B.port, C.port], { healthIntervalMs: 250 })
  t.teardown(() => lb.close())
  const all: Mass[] = []
  t.teardown(() => { for (const m of all) m.client.close() })

  const open = async (i: number): Promise<void> => {
    const userId = `mass-${i}`
    const client = new HeraldClient({
      url: `${lb.ws}/ws/events`, WebSocket: WebSocket as unknown as ClientOptions['WebSocket'],
      getToken: () => userToken(userId), eventTypes: ['system.*', 'authentication.*'],
      baseDelayMs: 200, maxDelayMs: 3000, drainJitterMs: 2000,
    })
    const m: Mass = { i, userId, client, serverIds: [], connectedAt: [], disconnects: [], got: new Set(), closed: false }
    all.push(m)
    client.on('welcome', (w) => m.serverIds.push(w.serverId))
    client.on('state', (s) => {
      if (s === 'connected') m.connectedAt.push(Date.now())
      if (s === 'closed') m.closed = true
    })
    client.on('disconnect', (d) => m.disconnects.push({ code: d.code, delayMs: d.delayMs, at: Date.now() }))
    client.on('event', (e) => m.got.add(e.id))
    await client.connect()
  }
  const t0 = Date.now()
  for (let i = 0; i < CLIENTS; i += BATCH) await within(30_000, `batch ${i}`, Promise.all(Array.from({ length: Math.min(BATCH, CLIENTS - i) }, async (_x, k) => await open(i + k))))
  const connectMs = Date.now() - t0
  const on = (n: NodeProc): Mass[] => all.filter((m) => m.serverIds.at(-1) === n.serverId)
  const perNode = [A, B, C].map((n) => on(n).length)
  t.comment(`${CLIENTS} clients connected in ${connectMs} ms; per node ${JSON.stringify(perNode)}`)
  t.ok(perNode.every((n) => n >= CLIENTS / 3 - 10), 'round-robin spread them over the three nodes')

  /** Publishes a system.* event (reaches every subscribed user) and waits for all clients to have it. */
  const everyoneGets = async (via: NodeProc, what: string): Promise<void> => {
    const id = await publish(via, { type: 'system.maintenance.scheduled', data: { what } })
    await waitFor(`all ${CLIENTS} clients receive ${what}`, () => all.filter((m) => !m.got.has(id)).length, (missing) => missing === 0, { timeoutMs: 15_000, intervalMs: 50 })
  }
  /** One authentication event per user of `group`; each must reach exactly its user's client. */
  const eachUserGets = async (via: NodeProc, group: Mass[]): Promise<void> => {
    const ids = new Map<Mass, string>()
    for (let i = 0; i < group.length; i += 25) {
      await Promise.all(group.slice(i, i + 25).map(async (m) => { ids.set(m, await publish(via, { type: 'authentication.login.success', userId: m.userId })) }))
    }
    await waitFor(`each of ${group.length} users receives its own event`, () => group.filter((m) => !m.got.has(ids.get(m)!)).length, (missing) => missing === 0, { timeoutMs: 15_000, intervalMs: 50 })
  }
  await everyoneGets(B, 'baseline')

  // --- SIGKILL: no goodbye, the TCP connections just die.
  const victims = on(A)
  const others = all.filter((m) => !victims.includes(m))
  const killedAt = Date.now()
  A.proc.kill('SIGKILL')
  await waitFor('every client of the killed node reconnected', () => victims.filter((m) => m.connectedAt.length < 2).length, (n) => n === 0, { timeoutMs: 30_000, intervalMs: 50 })
  const afterKill = victims.map((m) => m.connectedAt[1]! - killedAt)
  const killStats = summary(afterKill)
  t.comment(`MEASURED after SIGKILL: ${victims.length} clients back in ${killStats.max} ms; reconnect ms min ${killStats.min} p10 ${killStats.p10} median ${killStats.median} p90 ${killStats.p90} max ${killStats.max}; p90-p10 ${killStats.p90 - killStats.p10} ms`)
  // When each client actually tried again (its close plus the delay the SDK chose): a
  // thundering herd would have them all at the same instant. Reconnect *completion*
  // times alone cannot tell: the surviving nodes' queueing spreads even a herd.
  const attempts = victims.map((m) => m.disconnects[0]!.at + m.disconnects[0]!.delayMs! - killedAt)
  const attemptStats = summary(attempts.map(Math.round))
  t.comment(`MEASURED first retry attempts after SIGKILL (ms): ${JSON.stringify(attemptStats)}; p90-p10 ${attemptStats.p90 - attemptStats.p10} ms`)
  t.ok(victims.every((m) => m.disconnects[0]!.code === 1006), 'the kill was seen as an abnormal close (1006)')
  t.ok(victims.every((m) => m.serverIds.at(-1) !== A.serverId), 'all moved to the surviving nodes')
  t.ok(all.every((m) => !m.closed), 'no client reached state closed')
  t.ok(others.every((m) => m.connectedAt.length === 1 && m.disconnects.length === 0), 'clients of the other nodes were untouched')
  // Full jitter over baseDelayMs (200): uniform retries have p90-p10 of about 160 ms.
  t.ok(attemptStats.p90 - attemptStats.p10 >= 100, `not a thundering herd: retry attempts spread over the jittered base delay (p90-p10 ${attemptStats.p90 - attemptStats.p10} ms)`)
  t.ok(attemptStats.max <= 200 + 1000, 'and all within the first backoff window (plus the time to notice the kill)')
  t.ok(killStats.max < 10_000, `all back within 10 s (${killStats.max} ms)`)
  await everyoneGets(C, 'after-kill')
  await eachUserGets(B, victims)

  // --- SIGTERM drain of B: 1001 spread over DRAIN_TIMEOUT, clients come back within drainJitterMs.
  const drained = on(B)
  const stayed = on(C)
  const drainAt = Date.now()
  B.proc.kill('SIGTERM')
  await waitFor('every client of the drained node reconnected', () => drained.filter((m) => m.serverIds.at(-1) !== C.serverId || m.client.state !== 'connected').length, (n) => n === 0, { timeoutMs: 30_000, intervalMs: 50 })
  const drainBack = drained.map((m) => m.connectedAt.at(-1)! - drainAt)
  const drainStats = summary(drainBack)
  const drainCloses = drained.map((m) => m.disconnects.find((d) => d.at >= drainAt)!)
  const closeTimes = summary(drainCloses.map((d) => d.at - drainAt))
  t.comment(`MEASURED after SIGTERM drain: ${drained.length} clients back in ${drainStats.max} ms; reconnect ms min ${drainStats.min} p10 ${drainStats.p10} median ${drainStats.median} p90 ${drainStats.p90} max ${drainStats.max}; p90-p10 ${drainStats.p90 - drainStats.p10} ms; 1001 closes from ${closeTimes.min} to ${closeTimes.max} ms`)
  t.ok(drainCloses.every((d) => d.code === 1001), 'every drained client was closed with 1001')
  t.ok(drainCloses.every((d) => d.delayMs !== null && d.delayMs <= 2000), 'and retried within drainJitterMs')
  const drainDelays = summary(drainCloses.map((d) => Math.round(d.delayMs!)))
  t.comment(`MEASURED retry delays after 1001 (ms): ${JSON.stringify(drainDelays)}`)
  // Uniform over drainJitterMs (2000): p90-p10 of about 1600 ms.
  t.ok(drainDelays.p90 - drainDelays.p10 >= 1000, `the SDK spread its own retries over drainJitterMs (p90-p10 ${drainDelays.p90 - drainDelays.p10} ms)`)
  t.ok(closeTimes.max - closeTimes.min >= DRAIN_TIMEOUT / 2, 'the node spread its closes over the drain window')
  t.ok(drainStats.p90 - drainStats.p10 > 300, `reconnects spread out (p90-p10 ${drainStats.p90 - drainStats.p10} ms)`)
  t.ok(all.every((m) => !m.closed), 'no client reached state closed')
  t.ok(stayed.every((m) => m.disconnects.every((d) => d.at < drainAt)), 'clients of C were untouched by the drain')
  t.same(await within(15_000, 'B exits', B.exit), { code: 0, signal: null }, 'the drained node exited cleanly')
  t.equal(all.filter((m) => m.client.state === 'connected' && m.serverIds.at(-1) === C.serverId).length, CLIENTS, `all ${CLIENTS} on the last node`)
  await everyoneGets(C, 'after-drain')
  await eachUserGets(C, drained)
})
