// Operator actions while Redis is frozen (SIGSTOP: its sockets stay open, so
// the nodes' clients look connected and nothing answers). An operator must get
// a 503 in seconds, over HTTP and over /ws/admin, never a request that hangs;
// once Redis is back the same actions work. Three node processes, one Redis.
import t from 'tap'
import { connect } from '../helpers/client.js'
import type { NodeProc } from '../helpers/node.js'
import { health, mustStayUp, opsCluster } from '../helpers/ops.js'
import { adminToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const PROBE = 300
const cl = await opsCluster(t, { NODE_TTL: '3000', HEALTH_PROBE_INTERVAL: String(PROBE) }, ['out-a', 'out-b', 'out-c'])
const [A, B, C] = cl.nodes as [NodeProc, NodeProc, NodeProc]
for (const n of cl.nodes) mustStayUp(t, n)

t.test('revoke, list and disconnect answer 503 quickly while Redis is frozen, and work after', { timeout: 40_000 }, async (t) => {
  const admin = await connect(`${B.ws}/ws/admin`, { token: adminToken('outage-operator') })
  t.teardown(() => admin.close())
  t.teardown(() => cl.redis.resume())

  cl.redis.pause()
  // At once, before any probe noticed: the deadline answers.
  const started = Date.now()
  const early = await within(6000, 'a revoke during the freeze', A.api('/api/sessions/frozen-s1/revoke', { method: 'POST' }))
  const earlyMs = Date.now() - started
  t.equal(early.status, 503, `a revoke right after the freeze: 503 (${earlyMs} ms)`)
  t.equal(early.body?.error?.code, 'BACKEND_UNAVAILABLE')
  t.ok(earlyMs < 5000, 'within the 3 s backend deadline (plus slack for a loaded machine), not hanging')
  t.comment(`MEASURED revoke answer during a freeze: ${earlyMs} ms`)

  // Once readiness says so, at once: well under the 3 s deadline.
  const AT_ONCE_MS = 1500
  for (const n of [A, B, C]) await waitFor(`${n.serverId} readiness 503`, () => health(n), (r) => r.status === 503, { timeoutMs: 5000, intervalMs: 20 })
  for (const [what, call] of [
    ['user revoke', () => C.api('/api/users/frozen-u/revoke', { method: 'POST' })],
    ['connection listing', () => C.api('/api/users/frozen-u/connections')],
    ['user disconnect', () => A.api('/api/users/frozen-u/disconnect', { method: 'POST' })],
  ] as const) {
    const t0 = Date.now()
    const r = await within(AT_ONCE_MS, what, call())
    t.match(r, { status: 503, body: { error: { code: 'BACKEND_UNAVAILABLE' } } }, `${what}: 503 in ${Date.now() - t0} ms`)
  }
  for (const [type, payload] of [['revoke_session', { sessionId: 'frozen-s2' }], ['list_connections', { userId: 'frozen-u' }], ['disconnect', { userId: 'frozen-u' }]] as const) {
    const r = await admin.request(type, payload, AT_ONCE_MS)
    t.match(r, { type: 'error', payload: { code: 'BACKEND_UNAVAILABLE' } }, `/ws/admin ${type}: error BACKEND_UNAVAILABLE`)
  }
  // Stats still answer at once: this node's own figures, and no cluster view.
  const t0 = Date.now()
  const stats = await within(AT_ONCE_MS, 'stats during the freeze', A.api('/api/stats'))
  t.match(stats, { status: 200, body: { server: { serverId: A.serverId }, global: null, globalError: { code: 'BACKEND_UNAVAILABLE' } } }, `GET /api/stats: the node's figures, global null (${Date.now() - t0} ms)`)
  t.match(await admin.request('get_stats', undefined, AT_ONCE_MS), { type: 'stats', payload: { server: { serverId: B.serverId }, global: null } }, 'get_stats the same')
  t.equal(admin.closeInfo, null, 'the admin connection stays open')

  cl.redis.resume()
  for (const n of [A, B, C]) await waitFor(`${n.serverId} ready`, () => health(n), (r) => r.status === 200, { timeoutMs: 5000, intervalMs: 20 })
  const after = await A.api('/api/sessions/frozen-s1/revoke', { method: 'POST' })
  t.equal(after.status, 200, 'the revoke works once Redis is back')
  t.equal((await admin.request('list_connections', { userId: 'frozen-u' })).type, 'connections', 'and so does listing')
  t.equal((await A.api('/api/stats')).body.global.servers, 3, 'and the cluster view')
})
