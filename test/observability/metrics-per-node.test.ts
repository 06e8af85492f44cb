// Two nodes in one process (as tests and embedders run them): diagnostics
// channels are process-wide, and each node's /metrics must count only what
// happened on that node: its publishes, connections, frames in and out,
// deliveries, refused handshakes and disconnects, never the other's.
import t from 'tap'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect, refusal, type TestClient } from '../helpers/client.js'
import { metric, parseMetrics, type Sample } from '../helpers/ops.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

async function scrape (n: RunningApp): Promise<Sample[]> {
  const r = await n.api('/metrics', { key: '' })
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`)
  return parseMetrics(r.body as string)
}

t.test('each of two in-process nodes counts only its own publishes, connections and traffic', { timeout: 30_000 }, async (t) => {
  const A = await startApp({ SERVER_ID: 'metrics-a' })
  t.teardown(() => A.close())
  const B = await startApp({ SERVER_ID: 'metrics-b' })
  t.teardown(() => B.close())

  const clients: TestClient[] = []
  t.teardown(() => Promise.all(clients.map(async (c) => await c.close())))
  const open = async (n: RunningApp, user: string): Promise<TestClient> => {
    const c = await connect(`${n.ws}/ws/events`, { token: userToken(user) })
    clients.push(c)
    return c
  }
  const a1 = await open(A, 'ann')
  const a2 = await open(A, 'amy')
  const b1 = await open(B, 'bob')
  await a1.subscribe(['system.*'])
  await a2.subscribe(['system.*'])
  await b1.subscribe(['system.*'])

  // Two events through A, one through B; each node's own clients receive them.
  for (const [n, i] of [[A, 1], [A, 2], [B, 3]] as const) {
    const r = await n.api('/api/events', { body: { type: 'system.check', data: { i } } })
    t.equal(r.status, 202)
  }
  for (const c of [a1, a2]) await c.next((f) => f.type === 'event' && f.payload.data.i === 2)
  await b1.next((f) => f.type === 'event' && f.payload.data.i === 3)
  t.equal(a1.frames.filter((f) => f.type === 'event').length, 2, 'A\'s clients got A\'s events only (each node its own memory backend)')

  // A refused handshake on B, a ping on A.
  const refused = await refusal(`${B.ws}/ws/events?token=not.a.jwt`)
  t.equal(refused.status, 401)
  t.equal((await a1.request('ping')).type, 'pong')

  const [sa, sb] = await Promise.all([scrape(A), scrape(B)])
  t.equal(metric(sa, 'herald_events_published_total', { kind: 'event' }), 2, 'A counts its 2 publishes')
  t.equal(metric(sb, 'herald_events_published_total', { kind: 'event' }), 1, 'B counts its 1')
  t.equal(metric(sa, 'herald_connections', { endpoint: 'events' }), 2, 'A holds 2 connections')
  t.equal(metric(sb, 'herald_connections', { endpoint: 'events' }), 1, 'B holds 1')
  t.equal(metric(sa, 'herald_events_delivered_total', { kind: 'event' }), 4, 'A delivered 2 events to 2 clients')
  t.equal(metric(sb, 'herald_events_delivered_total', { kind: 'event' }), 1, 'B delivered 1 event to 1 client')
  // welcome, subscribed, 2 events to each of A's clients, and the pong; welcome, subscribed, 1 event on B.
  t.equal(metric(sa, 'herald_messages_out_total', { endpoint: 'events' }), 9, 'frames written by A')
  t.equal(metric(sb, 'herald_messages_out_total', { endpoint: 'events' }), 3, 'frames written by B')
  t.equal(metric(sa, 'herald_messages_in_total', { endpoint: 'events' }), 3, 'A handled 2 subscribes and a ping')
  t.equal(metric(sb, 'herald_messages_in_total', { endpoint: 'events' }), 1, 'B handled 1 subscribe')
  t.equal(metric(sa, 'herald_auth_failures_total'), 0, 'the refusal on B is not A\'s')
  t.equal(metric(sb, 'herald_auth_failures_total', { endpoint: 'events', reason: 'TOKEN_INVALID' }), 1, 'B counts its refusal')

  await b1.close()
  await waitFor('B to count the disconnect', async () => metric(await scrape(B), 'herald_disconnects_total'), (n) => n === 1, { timeoutMs: 5000 })
  t.equal(metric(await scrape(A), 'herald_disconnects_total'), 0, 'A counts no disconnect of B\'s')
  t.equal(metric(await scrape(B), 'herald_connections', { endpoint: 'events' }), 0)
  t.equal(metric(await scrape(A), 'herald_connections', { endpoint: 'events' }), 2)
})
