// The admin live tail (`start_tail`): events published anywhere in the
// cluster reach an admin's tail on another node, filtered by pattern and
// user, whatever the admin subscribed to; and the node's cap holds however
// fast events come: at most maxPerSecond / 5 events per `tail` frame, one
// frame per 200 ms, every matching event either sent or counted as dropped.
// Two node processes on one private Redis.
import t from 'tap'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import type { NodeProc } from '../helpers/node.js'
import { opsCluster } from '../helpers/ops.js'
import { adminToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const cl = await opsCluster(t, { NODE_TTL: '3000' }, ['tail-a', 'tail-b'])
const [A, B] = cl.nodes as [NodeProc, NodeProc]

async function admin (node: NodeProc, name: string): Promise<TestClient> {
  const c = await connect(`${node.ws}/ws/admin`, { token: adminToken(name) })
  t.teardown(() => c.close())
  return c
}

async function publish (node: NodeProc, type: string, userId?: string, data: Record<string, unknown> = {}): Promise<string> {
  const r = await node.api('/api/events', { body: { type, ...(userId !== undefined ? { userId } : {}), data } })
  if (r.status !== 202) throw new Error(`publish ${type}: ${r.status} ${JSON.stringify(r.body)}`)
  return r.body.id as string
}

const tailed = (c: TestClient): any[] => c.frames.filter((f) => f.type === 'tail').flatMap((f) => f.payload.events)

t.test('a tail on one node shows what is published through another, filtered by pattern and user', async (t) => {
  const ops = await admin(A, 'tail-ops-1')
  const started = await ops.request('start_tail', { eventTypes: ['orders.*', 'system.deploy.*'] })
  t.same(started.type, 'tail_started')
  t.same(started.payload, { eventTypes: ['orders.*', 'system.deploy.*'], userId: null, maxPerSecond: 50 })

  const skipped = await publish(B, 'billing.charged', 'u1')
  const userEvent = await publish(B, 'orders.created', 'u1', { total: 42 })
  const adminOnly = await publish(B, 'orders.audit.done')
  const broadcast = await publish(B, 'system.deploy.started', undefined, { version: '1.2' })
  await waitFor('the three matching events in the tail', () => tailed(ops).map((e) => e.id), (ids) => ids.length >= 3)
  const events = tailed(ops)
  t.same(events.map((e) => e.id), [userEvent, adminOnly, broadcast], 'a user\'s event, an admin-audience event and a broadcast, in publish order')
  t.match(events[0], { type: 'orders.created', userId: 'u1', data: { total: 42 } }, 'each as clients receive it')
  t.notOk(events.some((e) => e.id === skipped), 'the event no pattern matches is not there')
  t.equal(ops.count((f) => f.type === 'event'), 0, 'the tail is not a subscription: no `event` frames')

  // Replaced: only this user's events from now on, any type.
  const userOnly = await ops.request('start_tail', { userId: 'u2' })
  t.same(userOnly.payload, { eventTypes: ['*'], userId: 'u2', maxPerSecond: 50 })
  const from = ops.frames.length
  const other = await publish(B, 'orders.created', 'u1')
  const mine = await publish(B, 'profile.updated', 'u2')
  await ops.next((f) => f.type === 'tail' && f.payload.events.some((e: any) => e.id === mine), 5000, from)
  const after = ops.frames.slice(from).filter((f) => f.type === 'tail').flatMap((f) => f.payload.events.map((e: any) => e.id))
  t.same(after, [mine], 'u1\'s event is filtered out, u2\'s shows')
  t.notOk(after.includes(other))

  // A refused filter changes nothing: the running tail goes on.
  const bad = await ops.request('start_tail', { eventTypes: ['Orders'] })
  t.match(bad, { type: 'error', payload: { code: 'INVALID_PATTERN' } })
  const still = await publish(A, 'anything.at.all', 'u2')
  await ops.next((f) => f.type === 'tail' && f.payload.events.some((e: any) => e.id === still), 5000)
  t.pass('the previous tail still runs, on events published through its own node too')
})

t.test('the cap holds in a burst: at most 10 events a frame, every matching event sent or counted', { timeout: 60_000 }, async (t) => {
  const ops = await admin(A, 'tail-ops-2')
  await ops.request('start_tail', { eventTypes: ['burst.*'] })
  const N = 600
  // Through both nodes at once, 40 at a time: far faster than 50 a second.
  const ids: string[] = []
  for (let i = 0; i < N; i += 40) {
    ids.push(...await Promise.all(Array.from({ length: Math.min(40, N - i) }, async (_v, j) => await publish(j % 2 === 0 ? A : B, 'burst.tick', `u${j % 7}`, { i: i + j }))))
  }
  // Noise that must not count.
  await Promise.all(Array.from({ length: 50 }, async () => await publish(B, 'noise.tick')))
  const accounted = (): number => ops.frames.filter((f) => f.type === 'tail').reduce((n, f) => n + f.payload.events.length + f.payload.dropped, 0)
  await waitFor('every burst event sent or counted', accounted, (n) => n >= N, { timeoutMs: 20_000 })
  const frames = ops.frames.filter((f): f is Frame => f.type === 'tail')
  const sent = frames.flatMap((f) => f.payload.events)
  const dropped = frames.reduce((n, f) => n + f.payload.dropped, 0)
  t.equal(sent.length + dropped, N, `${sent.length} sent + ${dropped} dropped = ${N}: nothing lost without a count, nothing counted twice`)
  t.ok(dropped > 0, 'over the cap, events were dropped rather than sent')
  t.ok(frames.every((f) => f.payload.events.length <= 10), `no frame over 10 events (largest ${Math.max(...frames.map((f) => f.payload.events.length))}, ${frames.length} frames)`)
  t.ok(sent.every((e) => e.type === 'burst.tick'), 'only matching events')
  t.equal(new Set(sent.map((e) => e.id)).size, sent.length, 'none twice')
  t.ok(sent.every((e) => ids.includes(e.id)))
})

t.test('stop_tail stops it; a closed connection\'s tail ends with it', async (t) => {
  const ops = await admin(A, 'tail-ops-3')
  const watcher = await admin(A, 'tail-ops-4')
  await ops.request('start_tail', { eventTypes: ['stop.*'] })
  await watcher.request('start_tail', { eventTypes: ['stop.*', 'marker.*'] })
  const first = await publish(B, 'stop.one')
  await ops.next((f) => f.type === 'tail' && f.payload.events.some((e: any) => e.id === first), 5000)
  t.same((await ops.request('stop_tail')).type, 'tail_stopped')
  const from = ops.frames.length
  const second = await publish(B, 'stop.two')
  const marker = await publish(B, 'marker.done')
  // The watcher sees both: by then the stopped tail would have had its flush.
  await watcher.next((f) => f.type === 'tail' && f.payload.events.some((e: any) => e.id === marker), 5000)
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.notOk(ops.frames.slice(from).some((f) => f.type === 'tail'), `no tail frame after stop_tail (${second} was published)`)

  await watcher.close()
  // The node goes on serving other tails after one connection closed with its tail running.
  await ops.request('start_tail', { eventTypes: ['stop.*'] })
  const third = await publish(B, 'stop.three')
  await ops.next((f) => f.type === 'tail' && f.payload.events.some((e: any) => e.id === third), 5000)
  t.pass('a new tail works after another connection closed with its tail running')
})
