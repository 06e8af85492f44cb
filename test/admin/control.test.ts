// Operator control: from /ws/admin on one node and over the
// HTTP API, an operator lists a user's connections on every node, disconnects
// one connection or a whole user, revokes a session or a user, and broadcasts.
// Every action is an admin.* audit event that another admin, on another node,
// receives with the actor. Three node processes on one private Redis.
import t, { type Test } from 'tap'
import { connect, refusal, type Frame, type TestClient } from '../helpers/client.js'
import type { NodeProc } from '../helpers/node.js'
import { opsCluster } from '../helpers/ops.js'
import { adminToken, token, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const NODE_TTL = 1500
const cl = await opsCluster(t, { NODE_TTL: String(NODE_TTL), ADMIN_METRICS_INTERVAL: '300' }, ['ctl-a', 'ctl-b', 'ctl-c'])
const [A, B, C] = cl.nodes as [NodeProc, NodeProc, NodeProc]
const names = cl.nodes.map((n) => n.serverId)

// The operator acts on C; the auditor watches admin.* on A.
const OPERATOR = 'operator-1'
const operator = await connect(`${C.ws}/ws/admin`, { token: adminToken(OPERATOR) })
const auditor = await connect(`${A.ws}/ws/admin`, { token: adminToken('auditor-1') })
await auditor.subscribe(['admin.*'])
t.teardown(() => Promise.all([operator.close(), auditor.close()]))

let uniq = 0
const user = (name: string): string => `${name}-${++uniq}`

interface Conn { client: TestClient, id: string, node: NodeProc }

async function events (t: Test, node: NodeProc, userId: string, sid = `${userId}-session`): Promise<Conn> {
  const client = await connect(`${node.ws}/ws/events`, { token: userToken(userId, sid) })
  t.teardown(() => client.close())
  await client.subscribe(['*'])
  return { client, id: client.frames[0]!.payload.connectionId as string, node }
}

/** The audit event of `type` matching `pred`, as the auditor on A receives it. */
async function audited (type: string, pred: (data: any, f: Frame) => boolean): Promise<Frame> {
  return await auditor.next((f) => f.type === 'event' && f.payload?.type === type && pred(f.payload.data, f), 5000)
}

/** Proves a connection is still served end to end: an event published on another node reaches it. */
async function stillOpen (t: Test, c: Conn, userId: string): Promise<void> {
  const from = c.node === A ? B : A
  const r = await from.api('/api/events', { body: { type: 'session.check', userId, data: { n: ++uniq } } })
  t.equal(r.status, 202)
  await c.client.next((f) => f.type === 'event' && f.payload.id === r.body.id, 5000)
  t.equal(c.client.closeInfo, null, `${c.id} on ${c.node.serverId} is still open`)
}

const listed = async (userId: string): Promise<any[]> => {
  const r = await operator.request('list_connections', { userId })
  if (r.type !== 'connections') throw new Error(`list_connections answered ${JSON.stringify(r)}`)
  return r.payload.connections
}

t.test('list_connections shows a user connected on A and B, with node, IP and connect time', async (t) => {
  const u = user('list')
  const before = Date.now()
  const onA = await events(t, A, u, 'list-s1')
  const onB = await events(t, B, u, 'list-s2')
  const r = await operator.request('list_connections', { userId: u })
  t.equal(r.type, 'connections')
  t.equal(r.payload.userId, u)
  const rows = r.payload.connections as any[]
  t.equal(rows.length, 2, 'both connections, from C where neither is')
  const byId = Object.fromEntries(rows.map((x) => [x.connectionId, x]))
  t.match(byId[onA.id], { serverId: A.serverId, userId: u, sessionId: 'list-s1', ip: '127.0.0.1', endpoint: 'events' })
  t.match(byId[onB.id], { serverId: B.serverId, userId: u, sessionId: 'list-s2', ip: '127.0.0.1', endpoint: 'events' })
  for (const x of rows) {
    const at = Date.parse(x.connectedAt)
    t.ok(at >= before - 1000 && at <= Date.now(), `connectedAt ${x.connectedAt} is when it connected`)
  }
  t.same(rows.map((x) => x.connectionId), [onA.id, onB.id], 'oldest first')
  t.same((await operator.request('list_connections', { userId: user('nobody') })).payload.connections, [], 'a user with no connection: empty list')
  t.match((await operator.request('list_connections', {})).payload, { code: 'INVALID_PAYLOAD' }, 'userId is required')
})

t.test('disconnect {connectionId} closes exactly that connection (4003) on its node', async (t) => {
  const u = user('one')
  const [a1, a2, b1] = [await events(t, A, u), await events(t, A, u), await events(t, B, u)]
  const r = await operator.request('disconnect', { connectionId: b1.id })
  t.same(r.payload, { connectionId: b1.id }, 'acknowledged')
  const closed = await within(3000, 'the close on B', b1.client.closed)
  t.same(closed, { code: 4003, reason: 'disconnected by an administrator' })
  await stillOpen(t, a1, u)
  await stillOpen(t, a2, u)
  const ev = await audited('admin.connection.disconnected', (d) => d.connectionId === b1.id)
  t.same(ev.payload.data.actor, { kind: 'admin', id: OPERATOR }, 'the audit event names the operator')
  t.same((await waitFor('the listing to drop it', () => listed(u), (rows) => rows.length === 2)).map((x) => x.connectionId), [a1.id, a2.id])
  // The one on A, from C too.
  await operator.request('disconnect', { connectionId: a1.id })
  t.equal((await within(3000, 'the close on A', a1.client.closed)).code, 4003)
  await stillOpen(t, a2, u)
})

t.test('disconnect {userId} closes all of the user\'s connections on every node; the token stays valid', async (t) => {
  const u = user('all')
  const other = user('bystander')
  const mine = [await events(t, A, u), await events(t, B, u), await events(t, C, u)]
  const bystander = await events(t, A, other)
  const r = await operator.request('disconnect', { userId: u })
  t.same(r.payload, { userId: u })
  const closes = await within(3000, 'every close', Promise.all(mine.map(async (c) => await c.client.closed)))
  t.same(closes.map((c) => c.code), [4003, 4003, 4003], 'closed 4003 on A, B and C')
  await stillOpen(t, bystander, other)
  const ev = await audited('admin.user.disconnected', (d) => d.targetUserId === u)
  t.same(ev.payload.data.actor, { kind: 'admin', id: OPERATOR })
  t.equal(ev.payload.userId, u, 'the event is about the user')
  await waitFor('the listing to be empty', () => listed(u), (rows) => rows.length === 0)
  const again = await events(t, B, u)
  t.equal(again.client.frames[0]!.type, 'welcome', 'a disconnected user may reconnect at once')
})

t.test('revoke_session closes that session everywhere (4004) and refuses it; other sessions stay', async (t) => {
  const u = user('rs')
  const s1 = [await events(t, A, u, `${u}-s1`), await events(t, B, u, `${u}-s1`)]
  const s2 = await events(t, C, u, `${u}-s2`)
  const r = await operator.request('revoke_session', { sessionId: `${u}-s1` })
  t.match(r, { type: 'revoked', payload: { revoked: 'session', id: `${u}-s1` } })
  for (const c of s1) {
    t.same(await within(3000, 'the close', c.client.closed), { code: 4004, reason: 'session revoked' })
    t.ok(c.client.frames.some((f) => f.type === 'session_revoked'), 'told why before the close')
  }
  await stillOpen(t, s2, u)
  for (const n of [A, B, C]) {
    const x = await refusal(`${n.ws}/ws/events?token=${userToken(u, `${u}-s1`)}`)
    t.match(x, { status: 401, body: { error: { code: 'SESSION_REVOKED' } } }, `the session is refused on ${n.serverId}`)
  }
  const ev = await audited('admin.session.revoked', (d) => d.sessionId === `${u}-s1`)
  t.same(ev.payload.data.actor, { kind: 'admin', id: OPERATOR })
})

t.test('revoke_user closes every connection of the user (4004) and refuses tokens issued up to then', async (t) => {
  const u = user('ru')
  const mine = [await events(t, A, u, `${u}-s1`), await events(t, B, u, `${u}-s2`)]
  const r = await operator.request('revoke_user', { userId: u })
  t.match(r.payload, { revoked: 'user', id: u })
  const revokedAt = Date.parse(r.payload.revokedAt)
  const closes = await within(3000, 'the closes', Promise.all(mine.map(async (c) => await c.client.closed)))
  t.same(closes.map((c) => c.code), [4004, 4004])
  // Issued in the revocation's own second: still covered (a later second would be a new login).
  const issuedThen = token({ sub: u, sid: `${u}-new`, roles: ['user'], iat: Math.floor(revokedAt / 1000) })
  for (const n of [A, B, C]) t.match(await refusal(`${n.ws}/ws/events?token=${issuedThen}`), { status: 401, body: { error: { code: 'SESSION_REVOKED' } } }, `refused on ${n.serverId}`)
  // A token issued after the revocation (next second) is a new login: accepted.
  const fresh = await connect(`${A.ws}/ws/events`, { token: token({ sub: u, sid: `${u}-s3`, roles: ['user'], iat: Math.floor(revokedAt / 1000) + 1 }) })
  t.teardown(() => fresh.close())
  t.equal(fresh.frames[0]!.type, 'welcome', 'a token issued after the revocation connects')
  const ev = await audited('admin.user.revoked', (d) => d.targetUserId === u)
  t.same(ev.payload.data.actor, { kind: 'admin', id: OPERATOR })
})

t.test('broadcast reaches /ws/events connections on every node', async (t) => {
  const clients = [await events(t, A, user('bc')), await events(t, B, user('bc')), await events(t, C, user('bc'))]
  const r = await operator.request('broadcast', { level: 'warning', title: 'Maintenance', message: 'at 02:00', data: { window: '30m' } })
  t.equal(r.type, 'broadcasted')
  for (const c of clients) {
    const f = await c.client.next((f) => f.type === 'notification' && f.payload.id === r.payload.id, 5000)
    t.match(f.payload, { level: 'warning', title: 'Maintenance', message: 'at 02:00', data: { window: '30m' } }, `delivered on ${c.node.serverId}`)
  }
  const ev = await audited('admin.notification.broadcast', (d) => d.notificationId === r.payload.id)
  t.match(ev.payload.data, { actor: { kind: 'admin', id: OPERATOR }, level: 'warning', title: 'Maintenance' })
  t.match((await operator.request('broadcast', { level: 'loud', title: 'x', message: 'y' })).payload, { code: 'INVALID_PAYLOAD' })
})

t.test('the same actions over HTTP, with an API key and with an admin JWT; a user JWT is refused 403', async (t) => {
  const KEY_ACTOR = { kind: 'api-key', id: /^key-[0-9a-f]{8}$/ }
  const ADMIN = 'http-admin'
  const adminJwt = adminToken(ADMIN)
  const ADMIN_ACTOR = { kind: 'admin', id: ADMIN }
  const u = user('http')
  const [a1, b1, c1] = [await events(t, A, u, `${u}-s1`), await events(t, B, u, `${u}-s2`), await events(t, C, u, `${u}-s3`)]

  for (const key of [undefined, adminJwt]) {
    const r = await B.api(`/api/users/${u}/connections`, { key })
    t.equal(r.status, 200, `listing with ${key === undefined ? 'an API key' : 'an admin JWT'}`)
    t.same(r.body.connections.map((x: any) => x.serverId), [A.serverId, B.serverId, C.serverId])
    t.same(r.body.connections.map((x: any) => x.connectionId), [a1.id, b1.id, c1.id])
  }

  // A user JWT is refused on every admin route, and nothing happens.
  const userJwt = userToken(u)
  for (const [method, path] of [['GET', `/api/users/${u}/connections`], ['POST', `/api/connections/${a1.id}/disconnect`], ['POST', `/api/users/${u}/disconnect`],
    ['POST', `/api/sessions/${u}-s1/revoke`], ['POST', `/api/users/${u}/revoke`]] as const) {
    const r = await B.api(path, { method, key: userJwt })
    t.match(r, { status: 403, body: { error: { code: 'ROLE_FORBIDDEN' } } }, `${method} ${path} with a user JWT`)
  }
  const nb = await B.api('/api/notifications/broadcast', { key: userJwt, body: { level: 'info', title: 't', message: 'm' } })
  t.match(nb, { status: 403, body: { error: { code: 'ROLE_FORBIDDEN' } } }, 'broadcast with a user JWT')
  await stillOpen(t, a1, u)

  // One connection, with an admin JWT.
  let r = await B.api(`/api/connections/${a1.id}/disconnect`, { method: 'POST', key: adminJwt })
  t.same([r.status, r.body], [202, { connectionId: a1.id }])
  t.equal((await within(3000, 'a1 closed', a1.client.closed)).code, 4003)
  t.match((await audited('admin.connection.disconnected', (d) => d.connectionId === a1.id)).payload.data.actor, ADMIN_ACTOR)
  await stillOpen(t, b1, u)

  // The whole user, with the API key.
  r = await B.api(`/api/users/${u}/disconnect`, { method: 'POST' })
  t.same([r.status, r.body], [202, { userId: u }])
  t.same((await within(3000, 'b1 and c1 closed', Promise.all([b1.client.closed, c1.client.closed]))).map((c) => c.code), [4003, 4003])
  const byKey = await audited('admin.user.disconnected', (d) => d.targetUserId === u)
  t.match(byKey.payload.data.actor, KEY_ACTOR)
  t.notOk(JSON.stringify(byKey.payload).includes('test-api-key'), 'the audit never carries the key itself')

  // Revoke a session with the admin JWT, the user with the API key.
  const s = await events(t, C, u, `${u}-s4`)
  r = await B.api(`/api/sessions/${u}-s4/revoke`, { method: 'POST', key: adminJwt })
  t.match(r, { status: 200, body: { revoked: 'session', id: `${u}-s4` } })
  t.equal((await within(3000, 'session closed', s.client.closed)).code, 4004)
  t.match((await audited('admin.session.revoked', (d) => d.sessionId === `${u}-s4`)).payload.data.actor, ADMIN_ACTOR)

  const v = user('http-v')
  const vc = await events(t, A, v)
  // Issued before the revocation: a token signed after it (a later second) is rightly accepted.
  const vOld = userToken(v)
  r = await B.api(`/api/users/${v}/revoke`, { method: 'POST' })
  t.match(r, { status: 200, body: { revoked: 'user', id: v } })
  t.equal((await within(3000, 'user closed', vc.client.closed)).code, 4004)
  t.match((await audited('admin.user.revoked', (d) => d.targetUserId === v)).payload.data.actor, KEY_ACTOR)
  t.match(await refusal(`${A.ws}/ws/events?token=${vOld}`), { status: 401 }, 'the revoked user is refused')

  // Broadcast with each credential.
  const watcher = await events(t, C, user('http-w'))
  for (const [key, actor] of [[undefined, KEY_ACTOR], [adminJwt, ADMIN_ACTOR]] as const) {
    const b = await A.api('/api/notifications/broadcast', { key, body: { level: 'info', title: 'HTTP', message: 'hello' } })
    t.equal(b.status, 202, `broadcast with ${key === undefined ? 'an API key' : 'an admin JWT'}`)
    await watcher.client.next((f) => f.type === 'notification' && f.payload.id === b.body.id, 5000)
    t.match((await audited('admin.notification.broadcast', (d) => d.notificationId === b.body.id)).payload.data.actor, actor)
  }
})

t.test('metrics pushes carry one row per live node: 3, then 2 once a node is killed and reclaimed', { timeout: 20_000 }, async (t) => {
  const rows = (f: Frame): string[] => f.payload.global.nodes.map((n: { serverId: string }) => n.serverId).sort()
  const from = operator.frames.length
  const first = await operator.next((f) => f.type === 'metrics', 3000, from)
  t.same(rows(first), [...names].sort(), 'one row per node')
  t.equal(first.payload.global.servers, 3)
  t.equal(first.payload.server.serverId, C.serverId)
  const second = await operator.next((f) => f.type === 'metrics', 3000, operator.frames.indexOf(first) + 1)
  t.ok(Date.parse(second.payload.timestamp) - Date.parse(first.payload.timestamp) >= 200, 'pushed about every ADMIN_METRICS_INTERVAL (300 ms)')

  const killedAt = Date.now()
  await B.stop('SIGKILL')
  const mark = operator.frames.length
  const two = await operator.next((f) => f.type === 'metrics' && f.payload.global.nodes.length === 2, NODE_TTL * 2 + 1000, mark)
  t.same(rows(two), [A.serverId, C.serverId].sort(), `B's row gone ${Date.now() - killedAt} ms after the kill`)
  t.equal(two.payload.global.servers, 2)
  await waitFor('B to be reclaimed', async () => await cl.rc.zrange('herald:{registry}:nodes', 0, -1), (ids) => !ids.includes(B.serverId), { timeoutMs: NODE_TTL * 2 })
  const after = await operator.next((f) => f.type === 'metrics', 3000, operator.frames.indexOf(two) + 1)
  t.same(rows(after), [A.serverId, C.serverId].sort(), 'and it stays gone')
  t.equal(auditor.closeInfo, null, 'the auditor on A never noticed')
})
