// The gateway's own events across three node processes on one private Redis,
// each produced by driving its real trigger on one node and received by the
// user's other connection (on another node) and by an admin (on a third):
// session.created (WebSocket and Socket.IO), a user over the message limit
// (security.rate_limit.exceeded, then the 4029 close: suspicious abuse_close),
// a fourth connection at MAX_CONNECTIONS_PER_USER=3 refused
// (session.concurrent_limit), a token expiring on a live socket
// (session.expired), a revocation through the API (session.revoked), bad
// frames (security.validation.failed, and the window's summary with its
// folded count), and a burst of forged tokens from one IP (validation.failed,
// forged_token, refusal_burst: admins only). No token or secret anywhere.
import t from 'tap'
import { connect, type TestClient } from '../helpers/client.js'
import { attempt, startCluster } from '../helpers/cluster.js'
import { sioConnect } from '../helpers/sio.js'
import { token } from '../helpers/tokens.js'
import { carries, gw, name, noSecrets, observer, Secrets } from './helpers.js'

const WINDOW_MS = 2000
const PER_MINUTE = 20
const SUSPICIOUS = 5

t.test('gateway events across three nodes', { timeout: 120_000 }, async (t) => {
  const { nodes } = await startCluster(t, {
    GATEWAY_EVENTS: 'session,security',
    TRUSTED_PROXIES: '127.0.0.1',
    MAX_CONNECTIONS_PER_USER: '3',
    USER_CONNECTION_POLICY: 'refuse',
    MAX_MESSAGES_PER_MINUTE: String(PER_MINUTE),
    GATEWAY_EVENTS_WINDOW: String(WINDOW_MS),
    SUSPICIOUS_REFUSALS: String(SUSPICIOUS),
    AUTH_EXPIRY_WARNING: '0',
  })
  const [A, B, C] = nodes as [typeof nodes[0], typeof nodes[0], typeof nodes[0]]
  const secrets = new Secrets()
  // Each client its own forwarded address: the per-IP message limit stays out of the way.
  let ipSeq = 0
  const ip = (): Record<string, string> => ({ 'x-forwarded-for': `198.51.100.${++ipSeq}` })
  const admin = await observer(t, `${B.ws}/ws/admin`, secrets.admin(name('admin')), ip())
  const clients: TestClient[] = [admin]
  const watch = async (user: string, sid = `${user}-watcher`): Promise<TestClient> => {
    const c = await observer(t, `${A.ws}/ws/events`, secrets.user(user, sid), ip())
    clients.push(c)
    return c
  }
  const open = async (node: typeof A, tok: string, headers = ip()): Promise<TestClient> => {
    const c = await connect(`${node.ws}/ws/events`, { token: tok, headers })
    t.teardown(() => c.close())
    return c
  }

  t.test('session.created: a WebSocket and a Socket.IO session', async (t) => {
    const u = name('created')
    const mine = await watch(u)
    const c = await open(C, secrets.user(u, `${u}-s1`))
    const connectionId = c.frames[0]!.payload.connectionId
    for (const [who, cl] of [['the user', mine], ['the admin', admin]] as const) {
      const e = (await cl.next(gw('session.created', (e) => e.data.connectionId === connectionId))).payload
      carries(t, e, C, u, who)
      t.match(e.data, { sessionId: `${u}-s1`, transport: 'ws', endpoint: 'events', ip: /^198\.51\.100\./ }, `${who}: the session's fields`)
    }
    const s = await sioConnect(C.http, { auth: { token: secrets.user(u, `${u}-s2`) }, transports: ['websocket'], extraHeaders: ip() })
    t.teardown(() => s.client.close())
    const e = (await mine.next(gw('session.created', (e) => e.data.transport === 'socket.io'))).payload
    t.equal(e.data.sessionId, `${u}-s2`, 'the Socket.IO session reached the user too')
    await admin.next(gw('session.created', (e) => e.data.transport === 'socket.io' && e.userId === u))
  })

  t.test('a user over the message limit: rate_limit.exceeded, then the 4029 close as abuse_close', async (t) => {
    const u = name('chatty')
    const mine = await watch(u)
    const c = await open(C, secrets.user(u, `${u}-s1`))
    for (let i = 0; i < PER_MINUTE + 12; i++) c.send({ type: 'ping', id: `p${i}` })
    t.equal((await c.closed).code, 4029, 'closed 4029 past the limit')
    for (const [who, cl] of [['the user', mine], ['the admin', admin]] as const) {
      const e = (await cl.next(gw('security.rate_limit.exceeded', (e) => e.userId === u))).payload
      carries(t, e, C, u, who)
      t.match(e.data, { scope: 'message-user', limit: PER_MINUTE, connectionId: c.frames[0]!.payload.connectionId }, `${who}: scope, limit, connection`)
      const s = (await cl.next(gw('security.suspicious.activity', (e) => e.userId === u && e.data.reason === 'abuse_close'))).payload
      carries(t, s, C, u, `${who}, abuse_close`)
      t.equal(s.data.code, 4029, `${who}: the close code`)
    }
  })

  t.test('a fourth connection with the limit at three: refused, session.concurrent_limit', async (t) => {
    const u = name('many')
    const mine = await watch(u)
    await open(B, secrets.user(u, `${u}-s1`))
    await open(C, secrets.user(u, `${u}-s2`))
    const fourth = await attempt(`${C.ws}/ws/events`, { token: secrets.user(u, `${u}-s3`), headers: ip() })
    t.notOk(fourth.ok, 'the fourth is refused')
    if (!fourth.ok) t.equal(fourth.refusal.body.error.code, 'CONNECTION_LIMIT')
    for (const [who, cl] of [['the user', mine], ['the admin', admin]] as const) {
      const e = (await cl.next(gw('session.concurrent_limit', (e) => e.userId === u))).payload
      carries(t, e, C, u, who)
      t.match(e.data, { policy: 'refuse', limit: 3, endpoint: 'events', transport: 'ws' }, `${who}: policy and limit`)
    }
  })

  t.test('a token expiring on a live socket: session.expired', async (t) => {
    const u = name('expiring')
    const mine = await watch(u)
    const exp = Math.floor(Date.now() / 1000) + 2
    const c = await open(C, secrets.add(token({ sub: u, sid: `${u}-short`, roles: ['user'], exp })))
    t.equal((await c.closed).code, 4001, 'closed 4001 at exp')
    for (const [who, cl] of [['the user', mine], ['the admin', admin]] as const) {
      const e = (await cl.next(gw('session.expired', (e) => e.userId === u), 10_000)).payload
      carries(t, e, C, u, who)
      t.match(e.data, { code: 4001, sessionId: `${u}-short`, connectionId: c.frames[0]!.payload.connectionId }, `${who}: code, session, connection`)
    }
  })

  t.test('a revocation through the API: session.revoked on the user\'s other device', async (t) => {
    const u = name('revoked')
    const mine = await watch(u, `${u}-phone`)
    const c = await open(C, secrets.user(u, `${u}-laptop`))
    const r = await A.api(`/api/sessions/${u}-laptop/revoke`, { method: 'POST' })
    t.equal(r.status, 200, 'revoked')
    t.equal((await c.closed).code, 4004)
    for (const [who, cl] of [['the user', mine], ['the admin', admin]] as const) {
      const e = (await cl.next(gw('session.revoked', (e) => e.userId === u))).payload
      carries(t, e, C, u, who)
      t.match(e.data, { revoked: 'session', sessionId: `${u}-laptop`, code: 4004 }, `${who}: which session, revoked as a session`)
    }
    t.equal(mine.closeInfo, null, 'the other device stays connected')
    // The whole user now: every connection goes, each reported as revoked with its user.
    t.equal((await A.api(`/api/users/${u}/revoke`, { method: 'POST' })).status, 200)
    t.equal((await mine.closed).code, 4004, 'the other device closed too')
    const all = (await admin.next(gw('session.revoked', (e) => e.userId === u && e.data.revoked === 'user'))).payload
    carries(t, all, A, u, 'a user revocation')
    t.equal(all.data.sessionId, `${u}-phone`, 'naming the session it closed')
  })

  t.test('bad frames: security.validation.failed, then the window\'s summary with what it folded', async (t) => {
    const u = name('garbled')
    const mine = await watch(u)
    const c = await open(C, secrets.user(u, `${u}-s1`))
    c.send('this is not json')
    c.send({ type: 'no_such_command', id: 'x' })
    c.send({ type: 'subscribe', id: 'y', payload: { eventTypes: 'not-a-list' } })
    await c.next((f) => f.type === 'error' && f.id === 'y')
    for (const [who, cl] of [['the user', mine], ['the admin', admin]] as const) {
      const e = (await cl.next(gw('security.validation.failed', (e) => e.userId === u))).payload
      carries(t, e, C, u, who)
      t.match(e.data, { reason: 'frame', error: 'BAD_JSON', connectionId: c.frames[0]!.payload.connectionId }, `${who}: the first frame's error`)
      const sum = (await cl.next(gw('security.validation.failed', (e) => e.userId === u && e.data.folded !== undefined), WINDOW_MS + 5000)).payload
      t.equal(sum.data.folded, 2, `${who}: the summary folds the other two`)
      t.equal(sum.data.error, 'INVALID_PAYLOAD', `${who}: and carries the last one`)
    }
  })

  t.test('a burst of forged tokens from one IP: validation.failed, forged_token, refusal_burst, to admins only', async (t) => {
    const u = name('victim')
    const mine = await watch(u)
    const forged = secrets.add(token({ sub: u, roles: ['user'] }, { key: 'not-the-secret-but-at-least-32-characters' }))
    const from = { 'x-forwarded-for': '203.0.113.77' }
    const tries = await Promise.all(Array.from({ length: SUSPICIOUS * 2 }, async () => await attempt(`${C.ws}/ws/events`, { token: forged, headers: from })))
    t.ok(tries.every((a) => !a.ok && a.refusal.status === 401), 'every forged token refused 401')
    const v = (await admin.next(gw('security.validation.failed', (e) => e.data.ip === '203.0.113.77'))).payload
    carries(t, v, C, undefined, 'validation.failed')
    t.match(v.data, { reason: 'token', error: 'TOKEN_INVALID', detail: 'signature', endpoint: 'events' })
    const f = (await admin.next(gw('security.suspicious.activity', (e) => e.data.ip === '203.0.113.77' && e.data.reason === 'forged_token'))).payload
    carries(t, f, C, undefined, 'forged_token')
    t.equal(f.data.detail, 'signature')
    const b = (await admin.next(gw('security.suspicious.activity', (e) => e.data.ip === '203.0.113.77' && e.data.reason === 'refusal_burst'))).payload
    carries(t, b, C, undefined, 'refusal_burst')
    t.match(b.data, { count: SUSPICIOUS, threshold: SUSPICIOUS, windowMs: 60_000 })
    // An algorithm the node does not accept is forged too; an expired token is not.
    const none = `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ sub: u, exp: 9999999999 })).toString('base64url')}.`
    const expired = secrets.add(token({ sub: u, roles: ['user'], exp: Math.floor(Date.now() / 1000) - 3600 }))
    await attempt(`${B.ws}/ws/events`, { token: none, headers: { 'x-forwarded-for': '203.0.113.78' } })
    await attempt(`${B.ws}/ws/events`, { token: expired, headers: { 'x-forwarded-for': '203.0.113.79' } })
    const alg = (await admin.next(gw('security.suspicious.activity', (e) => e.data.ip === '203.0.113.78'))).payload
    t.match(alg.data, { reason: 'forged_token', detail: 'algorithm' }, 'alg none: forged_token (algorithm)')
    const late = (await admin.next(gw('security.validation.failed', (e) => e.data.ip === '203.0.113.79'))).payload
    t.match(late.data, { error: 'TOKEN_EXPIRED', detail: 'expired' }, 'an expired token: validation.failed only')
    t.notOk(admin.frames.some(gw('security.suspicious.activity', (e) => e.data.ip === '203.0.113.79')), 'and no suspicious activity for it')
    t.notOk(mine.frames.some((fr) => fr.type === 'event' && fr.payload.userId !== u), 'the user named in the forged token saw none of it')
  })

  t.test('every event a user connection received was its own; nothing secret anywhere', async (t) => {
    for (const c of clients.slice(1)) {
      const own = c.frames.filter((f) => f.type === 'event').map((f) => f.payload.userId as string | undefined)
      t.ok(own.every((x) => x !== undefined && x === own[0]), 'one user, always present')
    }
    // What was published, as history keeps it: the admin stream (events about nobody) and the users' streams.
    const stored: string[] = []
    const users = new Set(clients.slice(1).flatMap((c) => c.frames.filter((f) => f.type === 'event').map((f) => f.payload.userId as string)))
    for (const s of ['admin', ...[...users].map((x) => `user:${x}`)]) {
      const r = await A.api(`/api/streams/${encodeURIComponent(s)}/events`)
      t.equal(r.status, 200, `history of ${s} read`)
      stored.push(JSON.stringify(r.body))
    }
    t.ok(stored.some((s) => s.includes('"source":"gateway"')), 'gateway events are in history')
    t.same(secrets.foundIn(stored.join('\n')), [], 'no token or secret in history')
    noSecrets(t, secrets, clients, nodes)
  })
})
