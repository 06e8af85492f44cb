// While the node's backend is unreachable its own events are dropped (and
// counted, reason `backend`) rather than queued in the publish buffer the
// API needs; once Redis is back they are published again. One node process,
// Redis frozen with SIGSTOP.
import t from 'tap'
import { startCluster } from '../helpers/cluster.js'
import { connect } from '../helpers/client.js'
import { health } from '../helpers/ops.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'
import { gw, name, observer, Secrets } from './helpers.js'

const suppressed = async (node: { api: (p: string, i: { key: string }) => Promise<{ body: any }> }): Promise<number> => {
  const text = (await node.api('/metrics', { key: '' })).body as string
  const m = /herald_gateway_events_suppressed_total\{type="security.validation.failed",reason="backend"[^}]*\} (\d+)/.exec(text)
  return m === null ? 0 : Number(m[1])
}

t.test('gateway events are dropped while the backend is out, and flow again after', { timeout: 60_000 }, async (t) => {
  const { nodes, redis } = await startCluster(t, { GATEWAY_EVENTS: 'security', HEALTH_PROBE_INTERVAL: '300' }, 1)
  const node = nodes[0]!
  t.teardown(() => redis.resume())
  const u = name('outage')
  const mine = await observer(t, `${node.ws}/ws/events`, new Secrets().user(u, `${u}-watcher`))
  const c = await connect(`${node.ws}/ws/events`, { token: userToken(u) })
  t.teardown(() => c.close())

  redis.pause()
  await waitFor('readiness 503', () => health(node), (r) => r.status === 503, { timeoutMs: 5000, intervalMs: 20 })
  c.send('not json')
  await c.next((f) => f.type === 'error', 10_000)
  const dropped = await waitFor('the bad frame counted as suppressed (backend)', () => suppressed(node), (n) => n >= 1, { timeoutMs: 5000 })
  t.ok(dropped >= 1, `herald_gateway_events_suppressed_total{reason="backend"}: ${dropped}`)

  redis.resume()
  await waitFor('ready again', () => health(node), (r) => r.status === 200, { timeoutMs: 10_000, intervalMs: 20 })
  c.send({ type: 'nope' })
  const e = (await mine.next(gw('security.validation.failed', (e) => e.userId === u), 10_000)).payload
  t.equal(e.data.error, 'UNKNOWN_TYPE', 'published once the backend is back')
  t.notOk(mine.frames.some(gw('security.validation.failed', (x) => x.data.error === 'BAD_JSON')), 'the one from the outage was not held for later')
})
