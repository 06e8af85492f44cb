// Revocation across the cluster: a revoked session (sid), or a user
// revoked after a token's iat, is refused on connect by every node and
// disconnected everywhere (session_revoked, then 4004) within a second.
//
// Nodes A, B, C run with REVOCATION_SYNC_INTERVAL at its maximum so the only
// way they can hear of a revocation in time is the pub/sub fast path; node D,
// started after the first revocations, re-reads the log every 500 ms and is the
// node that "missed the message" when a revocation is written straight to Redis.
import t, { type Test } from 'tap'
import { connect, refusal, type TestClient } from '../helpers/client.js'
import { startCluster } from '../helpers/cluster.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { adminToken, serviceToken, token, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const PREFIX = 'herald:'
const FAST_PATH_BOUND_MS = 1000
const SYNC_MS = 500

const c = await startCluster(t, { REVOCATION_SYNC_INTERVAL: '600000' })
const { rc, redis } = c
const [A, B, C] = c.nodes as [NodeProc, NodeProc, NodeProc]
let D: NodeProc | undefined
t.teardown(async () => { await D?.stop() })

const nowS = (): number => Math.floor(Date.now() / 1000)
const q = (tok: string): string => `?token=${encodeURIComponent(tok)}`
const latencies: number[] = [] // close time minus API reply time (negative: closed before the reply arrived)
const fromRequest: number[] = [] // close time minus the moment the API request was sent

/** A connection that timestamps its session_revoked frame and its close. */
interface Watched { c: TestClient, where: string, revokedAt?: number, closedAt?: number }
async function watched (t: Test, node: NodeProc, tok: string, where: string): Promise<Watched> {
  const cl = await connect(`${node.ws}/ws/events`, { token: tok })
  t.teardown(() => cl.close())
  const w: Watched = { c: cl, where }
  cl.ws.on('message', (d) => { if (w.revokedAt === undefined && JSON.parse(d.toString()).type === 'session_revoked') w.revokedAt = Date.now() })
  cl.ws.on('close', () => { w.closedAt = Date.now() })
  return w
}

/** Asserts session_revoked then 4004, both within FAST_PATH_BOUND_MS of the API reply. */
async function revokedInTime (t: Test, w: Watched, sentAt: number, repliedAt: number, reason: RegExp): Promise<void> {
  const closed = await within(FAST_PATH_BOUND_MS + 2000, `${w.where} to close`, w.c.closed)
  t.equal(closed.code, 4004, `${w.where}: closed 4004`)
  const f = w.c.frames.find((x) => x.type === 'session_revoked')
  t.ok(f, `${w.where}: session_revoked before the close`)
  t.match(f?.payload?.reason, reason, `${w.where}: reason "${String(f?.payload?.reason)}"`)
  const after = w.closedAt! - repliedAt
  latencies.push(after)
  fromRequest.push(w.closedAt! - sentAt)
  t.ok(after <= FAST_PATH_BOUND_MS, `${w.where}: closed ${after} ms after the API reply (bound ${FAST_PATH_BOUND_MS} ms)`)
}

t.test('session revoke on A: every s1 connection on A, B, C is closed 4004 within a second; s2 untouched', async (t) => {
  const s1 = [await watched(t, A, userToken('u1', 's1'), 's1 on A'), await watched(t, B, userToken('u1', 's1'), 's1 on B'), await watched(t, C, userToken('u1', 's1'), 's1 on C')]
  const s2 = await watched(t, C, userToken('u1', 's2'), 's2 on C')
  const other = await watched(t, B, userToken('u-other', 's1-lookalike'), 'another user')

  const sentAt = Date.now()
  const r = await A.api('/api/sessions/s1/revoke', { method: 'POST' })
  const repliedAt = Date.now()
  t.equal(r.status, 200, 'the API answers 200')
  t.match(r.body, { revoked: 'session', id: 's1', revokedAt: String })
  for (const w of s1) await revokedInTime(t, w, sentAt, repliedAt, /session revoked/)
  t.comment(`s1 closes after the API reply: ${s1.map((w) => `${w.where} ${w.closedAt! - repliedAt} ms`).join(', ')}; the API call took ${repliedAt - sentAt} ms`)

  t.equal((await s2.c.request('ping')).type, 'pong', 'the s2 connection still answers ping')
  t.equal((await other.c.request('ping')).type, 'pong', 'another user is untouched')
  t.equal(s2.c.closeInfo, null)
  t.notOk(s2.c.frames.some((f) => f.type === 'session_revoked'), 's2 got no session_revoked')

  // New connections with sid s1 (fresh tokens) are refused on every node.
  for (const [where, n] of [['A', A], ['B', B], ['C', C]] as const) {
    const no = await refusal(`${n.ws}/ws/events${q(userToken('u1', 's1'))}`)
    t.equal(no.status, 401, `${where}: 401`)
    t.equal(no.body?.error?.code, 'SESSION_REVOKED', `${where}: SESSION_REVOKED`)
  }
  t.equal(await rc.exists(`${PREFIX}rev:s:s1`), 1, 'stored durably in Redis')
})

let userRevokedAt = 0

t.test('user revoke on B: all of u1\'s connections close 4004; iat before is refused, iat a second after is accepted', async (t) => {
  const ws = [
    await watched(t, A, userToken('u1', 's3'), 'u1/s3 on A'),
    await watched(t, B, userToken('u1', 's4'), 'u1/s4 on B'),
    await watched(t, C, userToken('u1', 's5'), 'u1/s5 on C'),
  ]
  const bystander = await watched(t, A, userToken('u2', 's6'), 'u2 on A')

  const sentAt = Date.now()
  const r = await B.api('/api/users/u1/revoke', { method: 'POST' })
  const repliedAt = Date.now()
  t.equal(r.status, 200)
  t.match(r.body, { revoked: 'user', id: 'u1', revokedAt: String })
  userRevokedAt = Date.parse(r.body.revokedAt)
  for (const w of ws) await revokedInTime(t, w, sentAt, repliedAt, /user revoked/)
  t.equal((await bystander.c.request('ping')).type, 'pong', 'another user is untouched')

  const at = Math.floor(userRevokedAt / 1000)
  const exp = nowS() + 3600
  // iat before the revocation, and iat in the revocation's own second (second precision).
  for (const iat of [at - 30, at]) {
    for (const [where, n] of [['A', A], ['B', B], ['C', C]] as const) {
      const no = await refusal(`${n.ws}/ws/events${q(token({ sub: 'u1', sid: 's-new', roles: ['user'], iat, exp }))}`)
      t.equal(no.status, 401, `iat ${iat - at} s from the revocation, on ${where}: 401`)
      t.equal(no.body?.error?.code, 'SESSION_REVOKED', `on ${where}: SESSION_REVOKED`)
    }
  }
  // A token issued at least one second after is a new login: accepted everywhere.
  const later = token({ sub: 'u1', sid: 's-new', roles: ['user'], iat: at + 1, exp })
  for (const [where, n] of [['A', A], ['B', B], ['C', C]] as const) {
    const ok = await connect(`${n.ws}/ws/events`, { token: later })
    t.teardown(() => ok.close())
    t.match(ok.frames[0], { type: 'welcome', payload: { userId: 'u1', sessionId: 's-new' } }, `iat +1 s accepted on ${where}`)
  }
})

t.test('a node started after the revocations refuses them (durable)', async (t) => {
  D = await startNode({ REDIS_URL: redis.url, NODE_TTL: '3000', REVOCATION_SYNC_INTERVAL: String(SYNC_MS) })
  const s1 = await refusal(`${D.ws}/ws/events${q(userToken('u1', 's1'))}`)
  t.equal(s1.status, 401)
  t.equal(s1.body?.error?.code, 'SESSION_REVOKED', 'the revoked session')
  const at = Math.floor(userRevokedAt / 1000)
  const old = await refusal(`${D.ws}/ws/events${q(token({ sub: 'u1', sid: 'whatever', roles: ['user'], iat: at - 5, exp: nowS() + 600 }))}`)
  t.equal(old.body?.error?.code, 'SESSION_REVOKED', 'the revoked user (old iat)')
  const fine = await connect(`${D.ws}/ws/events`, { token: userToken('u3', 's7') })
  t.teardown(() => fine.close())
  t.equal(fine.frames[0]?.type, 'welcome', 'others are accepted')
})

t.test('a node that missed the pub/sub message catches up from the log within a few REVOCATION_SYNC_INTERVALs', async (t) => {
  if (D === undefined) throw new Error('node D did not start')
  const sess = await watched(t, D, userToken('m1', 'ms1'), 'ms1 on D')
  const usr = await watched(t, D, token({ sub: 'm2', sid: 'ms2', roles: ['user'], iat: nowS() - 10 }), 'm2 on D')
  const keep = await watched(t, D, userToken('m3', 'ms3'), 'm3 on D')

  // Written straight into Redis, as a revoking node would, but nothing is published.
  const at = Date.now()
  await rc.multi()
    .set(`${PREFIX}rev:s:ms1`, String(at), 'PX', 3_600_000)
    .set(`${PREFIX}rev:u:m2`, String(at), 'PX', 3_600_000)
    .zadd(`${PREFIX}rev:log`, at, `s:${at}:ms1`, at, `u:${at}:m2`)
    .exec()
  const bound = 4 * SYNC_MS
  for (const [w, reason] of [[sess, /session revoked/], [usr, /user revoked/]] as const) {
    const closed = await within(bound + 2000, `${w.where} to close`, w.c.closed)
    t.equal(closed.code, 4004, `${w.where}: 4004`)
    t.match(w.c.frames.find((f) => f.type === 'session_revoked')?.payload?.reason, reason)
    const took = w.closedAt! - at
    t.ok(took <= bound, `${w.where}: closed ${took} ms after the write (bound ${bound} ms, sync every ${SYNC_MS} ms)`)
    t.comment(`missed pub/sub: ${w.where} closed ${took} ms after the Redis write`)
  }
  t.equal((await keep.c.request('ping')).type, 'pong', 'a connection not covered stays open')
})

t.test('the revocation API requires a service credential', async (t) => {
  const live = await watched(t, A, userToken('victim', 'vs1'), 'victim on A')
  const attacker = userToken('attacker', 'as1')
  for (const path of ['/api/sessions/vs1/revoke', '/api/users/victim/revoke']) {
    const asUser = await A.api(path, { method: 'POST', key: attacker })
    t.equal(asUser.status, 403, `${path} with a user JWT: 403`)
    t.equal(asUser.body?.error?.code, 'ROLE_FORBIDDEN')
    const none = await A.api(path, { method: 'POST', key: '' })
    t.equal(none.status, 401, `${path} without a credential: 401`)
    t.equal(none.body?.error?.code, 'CREDENTIAL_MISSING')
    const bad = await A.api(path, { method: 'POST', key: 'not-a-key-not-a-token-0123456789' })
    t.equal(bad.status, 401, `${path} with a wrong key: 401`)
  }
  t.equal(await rc.exists(`${PREFIX}rev:s:vs1`, `${PREFIX}rev:u:victim`), 0, 'nothing was stored')
  t.equal((await live.c.request('ping')).type, 'pong', 'the victim is still connected')

  // A JWT with role service (and an admin's) is a service credential.
  const svc = await B.api('/api/sessions/vs1/revoke', { method: 'POST', key: serviceToken() })
  t.equal(svc.status, 200, 'a service JWT may revoke')
  t.equal((await within(3000, 'the victim to close', live.c.closed)).code, 4004)
  const adm = await C.api('/api/sessions/other-session/revoke', { method: 'POST', key: adminToken() })
  t.equal(adm.status, 200, 'an admin JWT may revoke')
})

t.teardown(() => {
  if (latencies.length > 0) console.error(`# revocation fast path over ${latencies.length} connections on 3 nodes: max ${Math.max(...latencies)} ms after the API reply, max ${Math.max(...fromRequest)} ms after the request was sent`)
})
