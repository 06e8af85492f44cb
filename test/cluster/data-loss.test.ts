// Redis losing its data under three node processes: FLUSHALL, and a restart
// without persistence (the test helper's Redis saves nothing). The nodes
// notice on their registry heartbeat (every NODE_TTL / 3) and write back
// what they know: the revocations they have heard of (a revoked user and a
// revoked session stay refused on every node, and on a node started after the
// loss, which knows only what Redis holds; and one revoked before any running
// node started, known from the log read at boot) and their connections' slots under
// the limits (a user limited to 3 who opened 3 more in the gap ends with 3:
// the oldest, the others closed 4003).
import t, { type Test } from 'tap'
import { connect, refusal, type TestClient } from '../helpers/client.js'
import { attempt } from '../helpers/cluster.js'
import type { NodeProc } from '../helpers/node.js'
import { health, mustStayUp, opsCluster } from '../helpers/ops.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

// Beats every 5 s: the connections opened right after a FLUSHALL get in
// before any node notices, as they would in production.
const NODE_TTL = 15_000
const PER_USER = 3
const PREFIX = 'herald:'
const REGISTRY = `${PREFIX}{registry}:nodes`
const DAY = 86_400_000 // REVOCATION_TTL's default

const cl = await opsCluster(t, { NODE_TTL: String(NODE_TTL), MAX_CONNECTIONS_PER_USER: String(PER_USER) }, ['loss-a', 'loss-b', 'loss-c'])
const { rc, redis } = cl
const nodes = cl.nodes as [NodeProc, NodeProc, NodeProc]
for (const n of nodes) mustStayUp(t, n)

interface Open { client: TestClient, member: string }

async function open (t: Test, node: NodeProc, userId: string): Promise<Open> {
  const client = await connect(`${node.ws}/ws/events`, { token: userToken(userId) })
  t.teardown(() => client.close())
  return { client, member: `${node.serverId}|${client.frames[0]!.payload.connectionId as string}` }
}

async function refusedWith (node: NodeProc, tok: string): Promise<string | undefined> {
  const r = await refusal(`${node.ws}/ws/events?token=${encodeURIComponent(tok)}`)
  return r.body?.error?.code
}

/** A user and a session, revoked through the API; their tokens were issued before. */
async function revokeBoth (t: Test, name: string): Promise<{ userTok: string, sessionTok: string, userKey: string, sessionKey: string }> {
  const userTok = userToken(`${name}-user`)
  const sessionTok = userToken(`${name}-other`, `${name}-session`)
  t.equal((await nodes[0].api(`/api/users/${name}-user/revoke`, { method: 'POST' })).status, 200, 'user revoked')
  t.equal((await nodes[1].api(`/api/sessions/${name}-session/revoke`, { method: 'POST' })).status, 200, 'session revoked')
  for (const n of nodes) {
    await waitFor(`${n.serverId} to refuse the user`, () => refusedWith(n, userTok), (c) => c === 'SESSION_REVOKED', { timeoutMs: 3000 })
    await waitFor(`${n.serverId} to refuse the session`, () => refusedWith(n, sessionTok), (c) => c === 'SESSION_REVOKED', { timeoutMs: 3000 })
  }
  return { userTok, sessionTok, userKey: `${PREFIX}rev:u:${name}-user`, sessionKey: `${PREFIX}rev:s:${name}-session` }
}

/** Waits for the revocation keys to be back in Redis, with (about) the rest of their TTL. */
async function revocationsBack (t: Test, keys: { userKey: string, sessionKey: string }, since: number, what: string): Promise<void> {
  const ttls = await waitFor(`the revocations to be written back (${what})`, async () => await Promise.all([rc.pttl(keys.userKey), rc.pttl(keys.sessionKey)]),
    (p) => p.every((x) => x > 0), { timeoutMs: NODE_TTL, intervalMs: 50 })
  t.comment(`MEASURED revocations back in Redis ${Date.now() - since} ms after ${what} (heartbeat every ${NODE_TTL / 3} ms)`)
  t.ok(ttls.every((x) => x > DAY - 120_000 && x <= DAY), `with the rest of their TTL (${ttls.map((x) => Math.round(x / 1000)).join(', ')} s)`)
  const log = await rc.zrange(`${PREFIX}rev:log`, 0, -1)
  t.ok(log.some((m) => m.endsWith(keys.userKey.slice(`${PREFIX}rev:u:`.length))) && log.some((m) => m.endsWith(keys.sessionKey.slice(`${PREFIX}rev:s:`.length))), 'and in the log that nodes sync from')
}

async function refusedEverywhere (t: Test, toks: { userTok: string, sessionTok: string }, fresh: NodeProc): Promise<void> {
  for (const n of [...nodes, fresh]) {
    const who = n === fresh ? 'a node started after the loss' : n.serverId
    t.equal(await refusedWith(n, toks.userTok), 'SESSION_REVOKED', `the revoked user is refused by ${who}`)
    t.equal(await refusedWith(n, toks.sessionTok), 'SESSION_REVOKED', `the revoked session is refused by ${who}`)
  }
}

t.test('FLUSHALL: revocations written back at the next heartbeat; a user at the limit who opened 3 more in the gap ends with the 3 oldest', { timeout: 60_000 }, async (t) => {
  const revoked = await revokeBoth(t, 'flush')
  // A revocation from before every running node started, as the log holds
  // it (a minute old, past the window the periodic sync applies): only a node
  // that read the whole log at boot knows it.
  const oldAt = Date.now() - 60_000
  await rc.set(`${PREFIX}rev:u:flush-old-user`, String(oldAt), 'PX', DAY - 60_000)
  await rc.zadd(`${PREFIX}rev:log`, oldAt, `u:${oldAt}:flush-old-user`)
  const late = await cl.add()
  mustStayUp(t, late)
  const oldTok = userToken('flush-old-user', 'x', { iat: Math.floor(oldAt / 1000) - 60 })
  t.equal(await refusedWith(late, oldTok), 'SESSION_REVOKED', 'the old revocation is in force')

  const L = 'flush-limited'
  const olds = [await open(t, nodes[0], L), await open(t, nodes[1], L), await open(t, nodes[2], L)]
  t.equal(await rc.zcard(`${PREFIX}conn:u:${L}`), PER_USER, 'the user is at the limit')

  await rc.flushall()
  const flushedAt = Date.now()
  // Before any node notices (next heartbeat): the empty sets admit three more, one per node.
  const gap = await Promise.all(nodes.map(async (n) => await attempt(`${n.ws}/ws/events`, { token: userToken(L) })))
  for (const a of gap) if (a.ok) t.teardown(() => a.client.close())
  // Meanwhile the revoked tokens are refused from what the nodes remember.
  for (const n of nodes) t.equal(await refusedWith(n, revoked.userTok), 'SESSION_REVOKED', `${n.serverId} refuses the revoked user in the gap`)

  await waitFor('every node to re-register', () => rc.zrange(REGISTRY, 0, -1), (m) => m.length === 4, { timeoutMs: NODE_TTL, intervalMs: 50 })
  await revocationsBack(t, revoked, flushedAt, 'FLUSHALL')
  const oldTtl = await waitFor('the old revocation to be written back by the node that read it at boot', () => rc.pttl(`${PREFIX}rev:u:flush-old-user`), (x) => x > 0, { timeoutMs: NODE_TTL })
  t.ok(oldTtl <= DAY - 60_000, `with what was left of its TTL (${Math.round(oldTtl / 1000)} s)`)

  const admitted = gap.flatMap((a) => a.ok ? [a.client] : [])
  t.ok(admitted.length > 0, `${admitted.length} of the 3 opened in the gap were admitted (the sets were empty)`)
  for (const a of gap) if (!a.ok) t.equal(a.refusal.status, 429, 'any other was refused by the limit (a node had written its slot back first)')
  for (const c of admitted) {
    const closed = await within(NODE_TTL, 'a connection opened in the gap to be closed', c.closed)
    t.same(closed, { code: 4003, reason: 'connection limit: over it once the cluster backend had lost its data' }, 'closed 4003: over the limit once the slots were written back')
  }
  for (const o of olds) t.equal(o.client.closeInfo, null, 'the connections from before the loss stay open')
  t.same((await rc.zrange(`${PREFIX}conn:u:${L}`, 0, -1)).sort(), olds.map((o) => o.member).sort(), 'Redis holds exactly the 3 oldest')
  for (const n of nodes) {
    const r = await refusal(`${n.ws}/ws/events?token=${encodeURIComponent(userToken(L))}`)
    t.match(r, { status: 429, body: { error: { code: 'CONNECTION_LIMIT' } } }, `a 7th is refused on ${n.serverId}`)
  }

  const fresh = await cl.add()
  mustStayUp(t, fresh)
  await refusedEverywhere(t, revoked, fresh)
  for (const n of [...nodes, fresh]) t.equal(await refusedWith(n, oldTok), 'SESSION_REVOKED', 'the old revocation too')
})

t.test('Redis restarted without persistence: the same, from the reconnect', { timeout: 60_000 }, async (t) => {
  const revoked = await revokeBoth(t, 'restart')
  const L = 'restart-limited'
  const olds = [await open(t, nodes[0], L), await open(t, nodes[1], L), await open(t, nodes[2], L)]

  await redis.kill()
  for (const n of nodes) await waitFor(`${n.serverId} to notice`, () => health(n), (r) => r.status === 503, { timeoutMs: 10_000 })
  await redis.restart()
  const restartedAt = Date.now()
  for (const n of nodes) await waitFor(`${n.serverId} ready again`, () => health(n), (r) => r.status === 200, { timeoutMs: 15_000, intervalMs: 50 })
  await revocationsBack(t, revoked, restartedAt, 'the restart')

  const members = await waitFor('the slots to be written back', () => rc.zrange(`${PREFIX}conn:u:${L}`, 0, -1), (m) => m.length === PER_USER, { timeoutMs: NODE_TTL })
  t.same(members.sort(), olds.map((o) => o.member).sort(), 'Redis holds the 3 open connections')
  for (const o of olds) t.equal(o.client.closeInfo, null, 'all three stay open')
  for (const n of nodes) {
    const r = await refusal(`${n.ws}/ws/events?token=${encodeURIComponent(userToken(L))}`)
    t.match(r, { status: 429, body: { error: { code: 'CONNECTION_LIMIT' } } }, `a 4th is refused on ${n.serverId}`)
  }

  const fresh = await cl.add()
  mustStayUp(t, fresh)
  await refusedEverywhere(t, revoked, fresh)
})
