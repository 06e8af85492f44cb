// The cluster's connection registry: three node processes on one private
// Redis. A node killed with SIGKILL is noticed by the others within NODE_TTL
// plus a quarter of it, and its share of every per-user and per-IP limit is freed;
// a Redis that restarts empty gets every live connection written back by the
// node holding it, and the limits hold again.
//
// Clients present distinct addresses through X-Forwarded-For (TRUSTED_PROXIES
// is the loopback), so per-IP limits can be tested although every client runs
// on 127.0.0.1.
import t, { type Test } from 'tap'
import { connect, refusal, type TestClient } from '../helpers/client.js'
import type { NodeProc } from '../helpers/node.js'
import { health, mustStayUp, opsCluster } from '../helpers/ops.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const NODE_TTL = 1500
const PER_USER = 2
const PER_IP = 3
const ENV = {
  NODE_TTL: String(NODE_TTL),
  MAX_CONNECTIONS_PER_USER: String(PER_USER),
  MAX_CONNECTIONS_PER_IP: String(PER_IP),
  TRUSTED_PROXIES: '127.0.0.1',
}
const PREFIX = 'herald:'
const userKey = (u: string): string => `${PREFIX}conn:u:${u}`
const ipKey = (ip: string): string => `${PREFIX}conn:ip:${ip}`
const nodeKey = (id: string): string => `${PREFIX}node:conns:${id}`
const REGISTRY = `${PREFIX}{registry}:nodes`

const cl = await opsCluster(t, ENV, ['reg-a', 'reg-b', 'reg-c'])
const { rc, redis } = cl
const [A, B, C] = cl.nodes as [NodeProc, NodeProc, NodeProc]
for (const n of [A, B]) mustStayUp(t, n)

let uniq = 0
const ipOf = (): string => `198.51.100.${++uniq}`

interface Open { client: TestClient, connectionId: string, node: NodeProc }

async function open (t: Test, node: NodeProc, userId: string, ip: string, path = '/ws/events'): Promise<Open> {
  const client = await connect(`${node.ws}${path}`, { token: path === '/ws/admin' ? adminToken(userId) : userToken(userId), headers: { 'x-forwarded-for': ip } })
  t.teardown(() => client.close())
  const welcome = client.frames[0]!
  return { client, connectionId: welcome.payload.connectionId as string, node }
}

async function refused (node: NodeProc, userId: string, ip: string): Promise<{ status: number, code: string, message: string }> {
  const r = await refusal(`${node.ws}/ws/events?token=${userToken(userId)}`, { 'x-forwarded-for': ip })
  return { status: r.status, code: r.body?.error?.code, message: r.body?.error?.message }
}

const members = async (key: string): Promise<string[]> => (await rc.zrange(key, 0, -1)).sort()
const member = (o: Open): string => `${o.node.serverId}|${o.connectionId}`
const servers = async (n: NodeProc): Promise<number> => (await n.api('/api/stats')).body.global.servers as number

t.test('a node killed with SIGKILL: its slots are reclaimed within NODE_TTL + NODE_TTL/4', { timeout: 30_000 }, async (t) => {
  const U = 'reclaim-u'
  const X = ipOf() // U's address: both of U's slots and a third connection from X sit on C
  const onC = [await open(t, C, U, X), await open(t, C, U, X), await open(t, C, 'reclaim-v', X)]
  const survivor = await open(t, A, 'reclaim-w', ipOf())

  t.same(await members(userKey(U)), onC.slice(0, 2).map(member).sort(), "U's set holds its two slots on C")
  t.same(await members(ipKey(X)), onC.map(member).sort(), "X's set holds its three slots on C")
  t.same(Object.keys(await rc.hgetall(nodeKey(C.serverId))).sort(), onC.map((o) => o.connectionId).sort(), "C's record hash lists its connections")
  await waitFor('A to count three servers', () => servers(A), (n) => n === 3, { timeoutMs: 5000 })

  // Both limits are full, cluster-wide: a live node refuses U, and anyone from X.
  t.match(await refused(A, U, ipOf()), { status: 429, code: 'CONNECTION_LIMIT', message: /per user/ }, 'U refused on A before C dies')
  t.match(await refused(B, 'reclaim-y', X), { status: 429, code: 'CONNECTION_LIMIT', message: /per IP/ }, 'X refused on B before C dies')

  const killedAt = Date.now()
  await C.stop('SIGKILL')
  // C's heartbeat key outlives it by at least NODE_TTL - NODE_TTL/3: still nobody may take U's slots.
  t.match(await refused(A, U, ipOf()), { status: 429, code: 'CONNECTION_LIMIT' }, 'U still refused right after the kill')
  t.ok(Date.now() - killedAt < NODE_TTL / 2, 'that refusal happened before C could count as dead')

  const reclaimed = await waitFor('C\'s slots to be reclaimed', async () => {
    const [u, ip, hash, registry] = await Promise.all([members(userKey(U)), members(ipKey(X)), rc.exists(nodeKey(C.serverId)), rc.zrange(REGISTRY, 0, -1)])
    return { u, ip, hash, inRegistry: registry.includes(C.serverId) }
  }, (s) => s.u.length === 0 && s.ip.length === 0 && s.hash === 0 && !s.inRegistry, { timeoutMs: NODE_TTL * 3, intervalMs: 20 })
  const reclaimMs = Date.now() - killedAt
  t.same(reclaimed, { u: [], ip: [], hash: 0, inRegistry: false }, `reclaimed ${reclaimMs} ms after the kill`)
  t.comment(`MEASURED reclaim time: ${reclaimMs} ms (NODE_TTL ${NODE_TTL}, bound ${NODE_TTL * 1.25})`)
  // Detection needs the heartbeat key to lapse (NODE_TTL after the last beat) and a sweep (every NODE_TTL/4).
  // 500 ms of slack for a loaded machine.
  t.ok(reclaimMs <= NODE_TTL * 1.25 + 1000, `within NODE_TTL + NODE_TTL/4 (+1 s slack for a loaded machine): ${reclaimMs} ms`)
  t.ok(reclaimMs >= NODE_TTL / 2, 'not before the heartbeat could have lapsed')

  t.equal(await waitFor('servers to drop to 2', async () => await servers(A), (n) => n === 2, { timeoutMs: 2000 }), 2, 'global servers is 2 on A')
  t.equal(await servers(B), 2, 'and on B')
  t.notOk((await A.api('/api/stats')).body.global.nodes.some((n: { serverId: string }) => n.serverId === C.serverId), 'C has no row')

  // Exactly one live node did the reclaim (the claim), and it logged what it freed.
  const isReclaim = (l: string): boolean => l.includes('reclaimed a dead node') && l.includes(C.serverId)
  const lines = [...A.lines, ...B.lines].filter(isReclaim)
  t.equal(lines.length, 1, 'one node reclaimed C')
  t.equal(JSON.parse(lines[0]!).connections, 3, 'it freed C\'s three connections')

  // A live node's slot is untouched.
  t.same(await members(userKey('reclaim-w')), [member(survivor)], "A's own connection keeps its slot")
  t.equal(survivor.client.closeInfo, null, 'and stays open')

  // U and X may connect again, on the live nodes, up to the limits and no further.
  const u1 = await open(t, A, U, ipOf())
  const u2 = await open(t, B, U, ipOf())
  t.match(await refused(A, U, ipOf()), { status: 429, code: 'CONNECTION_LIMIT', message: /per user/ }, 'a third U connection is refused again')
  t.same(await members(userKey(U)), [member(u1), member(u2)].sort(), "U's set holds the two new slots")
  const fromX = [await open(t, A, 'reclaim-y', X), await open(t, B, 'reclaim-z', X), await open(t, B, 'reclaim-y', X)]
  t.equal(fromX.length, PER_IP, 'X may open its three connections again')
  t.match(await refused(A, 'reclaim-q', X), { status: 429, code: 'CONNECTION_LIMIT', message: /per IP/ }, 'and no fourth')
})

t.test('Redis restarted empty: nodes re-register and re-assert their live connections; limits hold', { timeout: 40_000 }, async (t) => {
  // Three nodes again: C's replacement joins.
  const D = await cl.add({ SERVER_ID: `reg-d-${process.pid}` })
  mustStayUp(t, D)
  const live = [A, B, D]
  await waitFor('three servers', () => servers(A), (n) => n === 3, { timeoutMs: 5000 })

  const R = 'restart-r'
  const S = 'restart-s'
  const X = ipOf()
  const r1 = await open(t, A, R, X)
  const r2 = await open(t, B, R, X)
  const s1 = await open(t, D, S, X) // X is full now (3)
  const s2 = await open(t, A, S, ipOf())
  const adm = await open(t, B, 'restart-admin', ipOf(), '/ws/admin')
  const all = [r1, r2, s1, s2, adm]
  // What Redis must hold: computed from the connections the test really has open.
  const expected = async (): Promise<Record<string, string[]>> => {
    const out: Record<string, string[]> = {
      [userKey(R)]: [member(r1), member(r2)].sort(),
      [userKey(S)]: [member(s1), member(s2)].sort(),
      [userKey('restart-admin')]: [member(adm)],
      [ipKey(X)]: [member(r1), member(r2), member(s1)].sort(),
    }
    for (const n of live) out[nodeKey(n.serverId)] = all.filter((o) => o.node === n && o.client.closeInfo === null).map((o) => o.connectionId).sort()
    return out
  }
  const actual = async (): Promise<Record<string, string[]>> => {
    const want = await expected()
    const got: Record<string, string[]> = {}
    for (const k of Object.keys(want)) got[k] = k.includes(':node:conns:') ? Object.keys(await rc.hgetall(k)).sort() : await members(k)
    return got
  }
  t.same(await actual(), await expected(), 'Redis holds every slot and record before the restart')
  t.match(await refused(D, R, ipOf()), { status: 429, message: /per user/ }, 'R is at its limit')

  await redis.kill()
  for (const n of live) await waitFor(`${n.serverId} to notice`, () => health(n), (r) => r.status === 503, { timeoutMs: 5000 })
  await redis.restart()
  const restartedAt = Date.now()
  t.equal(await rc.dbsize().catch(() => -1) >= 0, true, 'the assertion client reconnected')

  for (const n of live) await waitFor(`${n.serverId} ready again`, () => health(n), (r) => r.status === 200, { timeoutMs: 10_000, intervalMs: 50 })
  const want = await expected()
  const rebuilt = await waitFor('every slot and record to be written back', actual, (g) => JSON.stringify(g) === JSON.stringify(want), { timeoutMs: 5000, intervalMs: 50 })
  t.comment(`MEASURED state re-asserted ${Date.now() - restartedAt} ms after Redis restarted`)
  t.same(rebuilt, want, 'user sets, the IP set and every node\'s record hash are back, counts equal to the open connections')
  t.equal(await rc.zcard(userKey(R)), 2, 'R counts 2')
  t.same((await rc.zrange(REGISTRY, 0, -1)).sort(), live.map((n) => n.serverId).sort(), 'all three nodes re-registered')
  t.equal(await waitFor('global servers 3', () => servers(B), (n) => n === 3, { timeoutMs: 3000 }), 3)
  for (const o of all) t.equal(o.client.closeInfo, null, `${o.node.serverId} kept ${o.connectionId} open`)

  // The limits hold after the restart, on every node.
  for (const n of live) t.match(await refused(n, R, ipOf()), { status: 429, code: 'CONNECTION_LIMIT', message: /per user/ }, `R refused on ${n.serverId}`)
  t.match(await refused(A, 'restart-t', X), { status: 429, code: 'CONNECTION_LIMIT', message: /per IP/ }, 'X refused')
  // And a slot freed after the restart frees for real.
  await r1.client.close()
  await waitFor('r1 released', () => members(userKey(R)), (m) => m.length === 1 && m[0] === member(r2), { timeoutMs: 3000 })
  const r3 = await open(t, D, R, ipOf())
  t.same(await members(userKey(R)), [member(r2), member(r3)].sort(), 'R reconnects into the freed slot')
  t.match(await refused(A, R, ipOf()), { status: 429 }, 'and is at its limit again')
})

t.test('a node restarted under the same SERVER_ID frees what its predecessor held', { timeout: 30_000 }, async (t) => {
  // Compose pins SERVER_IDs and Kubernetes reuses the pod name when a
  // container restarts: the new process inherits a live-looking registry
  // entry, so no other node will ever reclaim the dead one's slots.
  const id = `reg-same-${process.pid}`
  const Q = 'same-id-q'
  const X = ipOf()
  // A TTL far longer than a boot, so the other nodes cannot reclaim the
  // dead process before its successor starts: only the successor can.
  const TTL = 15_000
  const first = await cl.add({ SERVER_ID: id, NODE_TTL: String(TTL) })
  const held = [await open(t, first, Q, X), await open(t, first, Q, X)]
  t.same(await members(userKey(Q)), held.map(member).sort(), 'Q holds both its slots on the first process')
  t.match(await refused(A, Q, ipOf()), { status: 429, message: /per user/ }, 'Q is at its limit')

  await first.stop('SIGKILL')
  t.equal(await rc.exists(`${PREFIX}{registry}:node:${id}`), 1, 'the dead process\'s registry entry is still alive')
  const second = await cl.add({ SERVER_ID: id, NODE_TTL: String(TTL) })
  mustStayUp(t, second)
  const restartedAt = Date.now()
  const again = [await open(t, second, Q, ipOf()), await open(t, A, Q, ipOf())]
  t.ok(Date.now() - restartedAt < TTL / 2, `Q connected twice again ${Date.now() - restartedAt} ms after the restart, without waiting for NODE_TTL`)
  t.same(await members(userKey(Q)), again.map(member).sort(), 'Q\'s set holds only the new slots')
  t.same(await members(ipKey(X)), [], 'the old per-IP slots are gone')
  t.same(Object.keys(await rc.hgetall(nodeKey(id))).sort(), [again[0]!.connectionId], 'the record hash lists only the new process\'s connection')
  const line = await second.waitLine((l) => l.includes('released the connection slots of an earlier process'), 2000)
  t.equal(JSON.parse(line).connections, 2, 'the successor released its predecessor\'s two connections')
  t.notOk([...A.lines, ...B.lines].some((l) => l.includes('reclaimed a dead node') && l.includes(id)), 'no other node had to reclaim it')
})
