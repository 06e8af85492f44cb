// The SDK (src/client/index.ts) when a handshake is refused before the
// upgrade, and when the server stops answering without closing TCP. Node
// processes on a private Redis; on Node the `ws` WebSocket shows the HTTP
// status and body of a refusal, and a WebSocket with only the standard API
// (what a browser has) shows a bare 1006, so both paths are driven here.
import t from 'tap'
import WebSocket from 'ws'
import { ClientCloseCodes, CloseCodes, type WebSocketLike } from '../../src/client/index.js'
import { startBalancer } from '../helpers/balancer.js'
import { connect, refusal } from '../helpers/client.js'
import { startCluster } from '../helpers/cluster.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { sdk, untilState, user } from '../helpers/sdk.js'
import { token, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const { redis, nodes } = await startCluster(t, {}, 2)
const [N1, N2] = nodes as [NodeProc, NodeProc]

t.test('revoked while disconnected: the reconnect is refused with SESSION_REVOKED, the client emits revoked and stops', { timeout: 20_000 }, async (t) => {
  // A balancer in front of N1 alone, without health checks: marking N1 down refuses new connections.
  const lb = await startBalancer([N1.port], { healthIntervalMs: 0 })
  t.teardown(() => lb.close())
  const u = user('revoked-away')
  const sid = `${u}-sid`
  const p = sdk(t, { url: `${lb.ws}/ws/events`, getToken: () => userToken(u, sid) })
  await p.client.connect()
  // The network goes away: the client retries, and cannot get through.
  lb.setAlive(N1.port, false)
  lb.cut()
  await waitFor('a failed retry', () => p.disconnects.length, (n) => n >= 2, { timeoutMs: 3000, intervalMs: 10 })
  t.equal(p.client.state, 'reconnecting')
  // Meanwhile the session is revoked through another node: the 4004 is sent to nobody.
  const r = await N2.api(`/api/sessions/${sid}/revoke`, { body: {} })
  t.equal(r.status, 200)
  lb.setAlive(N1.port, true)
  await untilState(p.client, 'closed')
  t.equal(p.revoked.length, 1, 'revoked fired once')
  t.match(p.disconnects.at(-1), { status: 401, error: { code: 'SESSION_REVOKED' }, delayMs: null }, 'the refusal was read from the HTTP response')
  t.same(p.states, ['connecting', 'connected', 'reconnecting', 'closed'])
  await t.rejects(p.client.connect(), { name: 'HeraldError', code: 'SESSION_REVOKED' }, 'connect() says why')
  // Proving an absence takes a window: any retry would come within maxDelayMs (200 ms); wait five times that.
  const attempts = p.tokens.length
  await new Promise((resolve) => setTimeout(resolve, 1000))
  t.equal(p.tokens.length, attempts, 'no attempt after the stop')
})

t.test('429 connection limit: the retry waits for Retry-After (plus jitter), then succeeds', { timeout: 30_000 }, async (t) => {
  const L = await startNode({ REDIS_URL: redis.url, MAX_CONNECTIONS_PER_USER: '1', USER_CONNECTION_POLICY: 'refuse' })
  t.teardown(() => L.stop())
  const u = user('limited')
  const first = sdk(t, { url: `${L.ws}/ws/events`, getToken: () => userToken(u) })
  await first.client.connect()
  const second = sdk(t, { url: `${L.ws}/ws/events`, getToken: () => userToken(u) })
  void second.client.connect().catch(() => {})
  await waitFor('the refusal', () => second.disconnects.length, (n) => n >= 1, { timeoutMs: 5000, intervalMs: 10 })
  const refusal = second.disconnects[0]!
  t.match(refusal, { code: 1006, status: 429, error: { code: 'CONNECTION_LIMIT' } })
  // The node asks for 5 s; the jitter adds up to max(baseDelayMs, a quarter of that).
  t.ok(refusal.delayMs! >= 5000 && refusal.delayMs! <= 5000 + 1250, `retry scheduled after ${Math.round(refusal.delayMs!)} ms`)
  t.equal(second.client.state, 'reconnecting')
  first.client.close()
  await untilState(second.client, 'connected', 10_000)
  const connectedAt = Date.now()
  t.ok(connectedAt - refusal.at >= 5000, `connected ${connectedAt - refusal.at} ms after the refusal, not before Retry-After`)
  t.equal(second.tokens.length, 2, 'exactly one retry')
  t.equal(second.disconnects.length, 1)
})

t.test('503 NODE_FULL and DRAINING: "try another node" retries at once within drainJitterMs, not after backoff; refused past soonRetries in a row, it backs off', { timeout: 40_000 }, async (t) => {
  // The SDK used to treat every 503 as an outage and back off (here 10 s, half
  // of baseDelayMs); these two say the next node will do, and a load balancer
  // sends the retry there.
  const full = await startNode({ REDIS_URL: redis.url, WEBSOCKET_MAX_CONNECTIONS: '1' })
  t.teardown(() => full.stop())
  const holder = await connect(`${full.ws}/ws/events`, { token: userToken(user('holder')) })
  t.teardown(() => holder.close())
  const draining = await startNode({ REDIS_URL: redis.url, DRAIN_TIMEOUT: '20000' })
  t.teardown(() => draining.stop())
  // Two connections keep it draining (they are closed over DRAIN_TIMEOUT) while it refuses upgrades.
  const kept = [await connect(`${draining.ws}/ws/events`, { token: userToken(user('kept')) }), await connect(`${draining.ws}/ws/events`, { token: userToken(user('kept')) })]
  t.teardown(() => { for (const k of kept) void k.close() })
  draining.proc.kill('SIGTERM')
  await waitFor('the node draining', async () => (await refusal(`${draining.ws}/ws/events?token=${userToken(user('probe'))}`)).body?.error?.code, (c) => c === 'DRAINING', { timeoutMs: 5000, intervalMs: 50 })

  for (const [node, code] of [[full, 'NODE_FULL'], [draining, 'DRAINING']] as const) {
    // Round-robin: the first attempt goes to the refusing node, the retry to N1.
    const lb = await startBalancer([node.port, N1.port], { healthIntervalMs: 0 })
    t.teardown(() => lb.close())
    const p = sdk(t, { url: `${lb.ws}/ws/events`, getToken: () => userToken(user('elsewhere')), random: () => 0.5, baseDelayMs: 20_000, maxDelayMs: 60_000, drainJitterMs: 400 })
    await within(5000, `connect() after ${code}`, p.client.connect())
    t.match(p.disconnects, [{ code: 1006, status: 503, error: { code }, delayMs: 200 }], `${code}: one refusal, retried after random() * drainJitterMs (200 ms), not after backoff (10 s)`)
    t.equal(p.welcomes[0]?.serverId, N1.serverId, `${code}: the retry reached another node`)
    t.same(p.errors, [], `${code}: no error reported`)
  }

  // Straight at the full node: the first soonRetries refusals retry soon, the ones after back off (full jitter over 300, 600 ms).
  const q = sdk(t, { url: `${full.ws}/ws/events`, getToken: () => userToken(user('all-full')), random: () => 0.5, baseDelayMs: 300, maxDelayMs: 60_000, drainJitterMs: 100, soonRetries: 2 })
  void q.client.connect().catch(() => {})
  await waitFor('four refusals', () => q.disconnects.length, (n) => n >= 4, { timeoutMs: 5000, intervalMs: 10 })
  t.same(q.disconnects.slice(0, 4).map((d) => [d.status, d.error?.code, d.delayMs]), [[503, 'NODE_FULL', 50], [503, 'NODE_FULL', 50], [503, 'NODE_FULL', 150], [503, 'NODE_FULL', 300]], 'soon soonRetries times, then backoff: a cluster full everywhere is not hammered')
  q.client.close()
})

t.test('403: a refusal that retrying cannot fix stops the client with the error', { timeout: 20_000 }, async (t) => {
  const u = user('not-admin')
  const p = sdk(t, { url: `${N1.ws}/ws/admin`, getToken: () => userToken(u) })
  await t.rejects(within(5000, 'connect()', p.client.connect()), { name: 'HeraldError', code: 'ROLE_FORBIDDEN' }, 'connect() rejects with the refusal')
  t.equal(p.client.state, 'closed', 'stopped: no timer left to retry')
  t.match(p.errors, [{ code: 'ROLE_FORBIDDEN' }])
  t.match(p.disconnects, [{ status: 403, delayMs: null }])
  t.equal(p.tokens.length, 1, 'one attempt')
})

t.test('401: a refused token is replaced from getToken; refusals in a row are bounded', { timeout: 20_000 }, async (t) => {
  // Recovers: the first token has expired, the next one is good.
  const u = user('stale-token')
  const ok = sdk(t, { url: `${N1.ws}/ws/events`, getToken: (req) => req.reason === 'connect' ? token({ sub: u, sid: `${u}-sid`, roles: ['user'], exp: Math.floor(Date.now() / 1000) - 60 }) : userToken(u) })
  await within(5000, 'connect()', ok.client.connect())
  t.match(ok.tokens, [{ reason: 'connect', failures: 0 }, { reason: 'refused', failures: 1 }], 'getToken was told the last token was refused')
  t.match(ok.disconnects, [{ status: 401, error: { code: 'TOKEN_EXPIRED' } }])
  t.same(ok.errors, [])

  // Gives up: every token is signed with the wrong key.
  const v = user('bad-key')
  const bad = sdk(t, { url: `${N1.ws}/ws/events`, maxAuthRefusals: 3, getToken: () => token({ sub: v, roles: ['user'] }, { key: 'not-the-secret-of-this-cluster-0123456789' }) })
  await t.rejects(within(5000, 'connect()', bad.client.connect()), { code: 'TOKEN_INVALID' })
  t.same(bad.tokens.map((x) => x.reason), ['connect', 'refused', 'refused'], 'three tokens, the last two asked for after a refusal')
  t.match(bad.errors, [{ code: 'TOKEN_INVALID', message: /3 times in a row/ }])
  t.same(bad.disconnects.map((d) => [d.status, d.delayMs === null]), [[401, false], [401, false], [401, true]])
  t.equal(bad.client.state, 'closed', 'stopped: no timer left to retry')
})

/** A WebSocket with only the standard API, as in a browser: no access to a refused handshake's response. */
class StandardWebSocket implements WebSocketLike {
  private readonly ws: WebSocket
  onopen: WebSocketLike['onopen'] = null
  onmessage: WebSocketLike['onmessage'] = null
  onclose: WebSocketLike['onclose'] = null
  onerror: WebSocketLike['onerror'] = null
  constructor (url: string) {
    this.ws = new WebSocket(url)
    this.ws.onopen = (e) => this.onopen?.(e)
    this.ws.onmessage = (e) => this.onmessage?.({ data: e.data })
    this.ws.onclose = (e) => this.onclose?.({ code: e.code, reason: e.reason })
    this.ws.onerror = (e) => this.onerror?.(e)
  }

  get readyState (): number { return this.ws.readyState }
  send (data: string): void { this.ws.send(data) }
  close (code?: number, reason?: string): void { this.ws.close(code, reason) }
}

t.test('without the HTTP status (browsers): getToken sees the failures in a row and ends a revoked session by returning null', { timeout: 20_000 }, async (t) => {
  const u = user('browser-revoked')
  const sid = `${u}-sid`
  t.equal((await N2.api(`/api/sessions/${sid}/revoke`, { body: {} })).status, 200)
  // The app's glue: after a few failures it asks its own backend, which knows the session is over.
  const p = sdk(t, { url: `${N1.ws}/ws/events`, WebSocket: StandardWebSocket, getToken: (req) => req.failures >= 3 ? null : userToken(u, sid) })
  await t.rejects(within(5000, 'connect()', p.client.connect()), { code: 'NO_TOKEN' })
  t.same(p.tokens.map((x) => x.failures), [0, 1, 2, 3])
  t.equal(p.disconnects.length, 4, 'three failed attempts and the stop')
  t.ok(p.disconnects.slice(0, 3).every((d) => d.code === 1006 && d.status === undefined && d.delayMs !== null), 'three bare 1006 closes, each retried')
  t.match(p.disconnects[3], { code: ClientCloseCodes.NO_SOCKET, reason: 'no token', delayMs: null }, 'then the stop, with no socket opened')
  t.match(p.errors, [{ code: 'HANDSHAKE_FAILED' }, { code: 'NO_TOKEN' }], 'the failures in a row were reported, then the stop')
  t.equal(p.client.state, 'closed')
})

t.test('watchdog: a server that stops answering without closing TCP is noticed, and the client reconnects when it is back', { timeout: 30_000 }, async (t) => {
  // Its own node (in-process backend) with a short heartbeat; SIGSTOP freezes it with its sockets open.
  const H = await startNode({ WEBSOCKET_HEARTBEAT_INTERVAL: '500' })
  t.teardown(async () => { H.proc.kill('SIGCONT'); await H.stop() })
  const u = user('watchdog')
  const p = sdk(t, { url: `${H.ws}/ws/events`, connectTimeoutMs: 1000, getToken: () => userToken(u) })
  const w = await p.client.connect()
  t.equal(w.heartbeatInterval, 500)
  // Idle but alive: the watchdog's pings are answered and nothing is dropped.
  await waitFor('two watchdog pongs', () => p.frames.filter((f) => f.type === 'pong' && /^w/.test(f.id ?? '')).length, (n) => n >= 2, { timeoutMs: 8000, intervalMs: 20 })
  t.same(p.errors, [], 'their replies are not reported')
  t.same(p.disconnects, [], 'an idle, healthy connection stays up')

  const stoppedAt = Date.now()
  H.proc.kill('SIGSTOP')
  // Silence for 500 + 1000 ms, then a ping and 2000 ms for an answer.
  await untilState(p.client, 'reconnecting', 8000)
  const noticed = Date.now() - stoppedAt
  t.ok(noticed < 6000, `noticed in ${noticed} ms`)
  t.match(p.disconnects[0], { code: CloseCodes.HEARTBEAT_TIMEOUT, reason: /heartbeat timeout/ })
  H.proc.kill('SIGCONT')
  await untilState(p.client, 'connected', 10_000)
  t.equal(p.client.connects, 2)
  t.not(p.client.welcome!.connectionId, w.connectionId, 'on a new connection')
})
