// Resume (docs/protocol.md, "Resuming"): `welcome` carries the positions of
// the streams a connection reads; `subscribe` with `since` replays what it
// missed and may receive, in stream order, then answers `subscribed
// {recovered, positions}`, then live, with nothing lost or doubled at the seam
// even while publishing goes on; never another user's stream.
import t, { type Test } from 'tap'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { REPLAY_READ_TIMEOUT_MS } from '../../src/events/resume.js'

let uniq = 0
const user = (name: string): string => `${name}-${process.pid}-${++uniq}`

async function open (t: Test, node: RunningApp, tok: string, path = '/ws/events'): Promise<TestClient> {
  const c = await connect(`${node.ws}${path}`, { token: tok })
  t.teardown(() => c.close())
  return c
}

const publish = async (node: RunningApp, userId: string, type: string, n: number): Promise<any> =>
  (await node.api('/api/events', { body: { type, userId, data: { n } } })).body

const positioned = (c: TestClient, stream: string): Frame[] => c.frames.filter((f) => (f.type === 'event' || f.type === 'notification') && f.payload.stream === stream)

for (const backend of ['memory', 'redis'] as const) {
  t.test(`on ${backend}`, async (t) => {
    let env: Record<string, string> = {}
    if (backend === 'redis') {
      const redis = await startRedis()
      t.teardown(() => redis.stop())
      env = { REDIS_URL: redis.url }
    }
    const node = await startApp({ ...env, SERVER_ID: `resume-${backend}-${process.pid}` })
    t.teardown(() => node.close())

    t.test('welcome carries the positions of the streams the connection reads, and only those', async (t) => {
      const u = user('w')
      const first = await publish(node, u, 'orders.created', 1)
      const c = await open(t, node, userToken(u))
      const w = c.frames[0]!
      t.same(Object.keys(w.payload.positions).sort(), ['broadcast', `user:${u}`], '/ws/events: its user stream and the broadcast')
      t.same(w.payload.positions[`user:${u}`], { epoch: first.epoch, offset: 1 }, 'the top of the user stream')
      const a = await open(t, node, adminToken(user('admin')), '/ws/admin')
      t.same(Object.keys(a.frames[0]!.payload.positions).sort(), ['admin', 'broadcast'], '/ws/admin: the admin stream and the broadcast')
    })

    t.test('since replays, in order, what the connection missed and may receive, then the reply, then live', async (t) => {
      const u = user('r')
      const sent = []
      for (let i = 1; i <= 6; i++) sent.push(await publish(node, u, i % 2 === 0 ? 'billing.paid' : 'orders.created', i))
      const note = (await node.api(`/api/notifications/users/${u}`, { body: { level: 'info', title: 't', message: 'm' } })).body
      const epoch = sent[0].epoch as string
      const c = await open(t, node, userToken(u))
      const reply = await c.request('subscribe', { eventTypes: ['orders.*'], since: { [`user:${u}`]: { epoch, offset: 2 } } })
      t.match(reply, { type: 'subscribed', payload: { eventTypes: ['orders.*'], recovered: true, positions: { [`user:${u}`]: { epoch, offset: 7 } }, unrecovered: [] } })
      const before = c.frames.slice(1, c.frames.indexOf(reply))
      t.same(before.map((f) => [f.type, f.payload.offset]), [['event', 3], ['event', 5], ['notification', 7]], 'the missed events its patterns match, and the notification whatever the patterns, in stream order, before the reply')
      t.equal(before[2]!.payload.id, note.id)
      const live = await publish(node, u, 'orders.created', 8)
      const got = await c.next((f) => f.payload?.id === live.id)
      t.equal(got.payload.offset, 8, 'then live')
    })

    t.test('a member resumes a group stream like its own; a former member cannot', async (t) => {
      const u = user('member')
      const g = `room-${process.pid}-${++uniq}`
      t.equal((await node.api(`/api/groups/${g}/members/${u}`, { method: 'PUT' })).status, 200)
      const say = async (n: number): Promise<any> => (await node.api('/api/events', { body: { type: 'chat.message', group: g, data: { n } } })).body
      const first = await say(1)
      t.match(first, { stream: `group:${g}`, offset: 1 })
      for (let i = 2; i <= 4; i++) await say(i)
      const c = await open(t, node, userToken(u))
      t.same(c.frames[0]!.payload.positions[`group:${g}`], { epoch: first.epoch, offset: 4 }, 'welcome: the group stream\'s top')
      const reply = await c.request('subscribe', { eventTypes: ['chat.*'], since: { [`group:${g}`]: { epoch: first.epoch, offset: 1 } } })
      t.match(reply.payload, { recovered: true, positions: { [`group:${g}`]: { epoch: first.epoch, offset: 4 } } })
      t.same(positioned(c, `group:${g}`).map((f) => f.payload.data.n), [2, 3, 4], 'the missed group events, in order')
      const live = await say(5)
      t.equal((await c.next((f) => f.payload?.id === live.id)).payload.offset, 5, 'then live')
      t.equal((await node.api(`/api/groups/${g}/members/${u}`, { method: 'DELETE' })).status, 200)
      const again = await open(t, node, userToken(u))
      t.notOk(`group:${g}` in again.frames[0]!.payload.positions, 'no longer a member: not in welcome')
      t.match(await again.request('subscribe', { since: { [`group:${g}`]: { epoch: first.epoch, offset: 1 } } }), { type: 'error', payload: { code: 'STREAM_FORBIDDEN' } })
    })

    t.test('recovered is false, and nothing replayed, when the epoch is another or history is gone; the position is then the top', async (t) => {
      const u = user('lost')
      for (let i = 1; i <= 3; i++) await publish(node, u, 'orders.created', i)
      const c = await open(t, node, userToken(u))
      const top = c.frames[0]!.payload.positions[`user:${u}`]
      const other = await c.request('subscribe', { eventTypes: ['*'], since: { [`user:${u}`]: { epoch: 'another-epoch', offset: 1 } } })
      t.match(other.payload, { recovered: false, unrecovered: [`user:${u}`], positions: { [`user:${u}`]: top } })
      const beyond = await c.request('subscribe', { since: { [`user:${u}`]: { epoch: top.epoch, offset: top.offset + 5 } } })
      t.match(beyond.payload, { recovered: false, positions: { [`user:${u}`]: top } }, 'a position beyond the top is from no history of this stream')
      t.equal(positioned(c, `user:${u}`).length, 0, 'nothing replayed')
    })

    t.test('a user can never read another user\'s stream, nor the admin stream, whatever since names', async (t) => {
      const victim = user('victim')
      await publish(node, victim, 'orders.created', 1)
      const v = await open(t, node, userToken(victim))
      const epoch = v.frames[0]!.payload.positions[`user:${victim}`].epoch
      const c = await open(t, node, userToken(user('mallory')))
      const r = await c.request('subscribe', { eventTypes: ['*'], since: { [`user:${victim}`]: { epoch, offset: 0 } } })
      t.match(r, { type: 'error', payload: { code: 'STREAM_FORBIDDEN' } })
      t.same((await c.request('get_subscriptions')).payload.eventTypes, [], 'all or nothing: no pattern was added')
      t.match(await c.request('subscribe', { eventTypes: ['*'], since: { admin: { epoch, offset: 0 } } }), { type: 'error', payload: { code: 'STREAM_FORBIDDEN' } })
      t.match(await c.request('subscribe', { since: { 'group:x': { epoch, offset: 0 } } }), { type: 'error', payload: { code: 'STREAM_FORBIDDEN' } }, 'a group it is no member of')
      t.match(await c.request('subscribe', { since: { 'nosuch:x': { epoch, offset: 0 } } }), { type: 'error', payload: { code: 'UNKNOWN_STREAM' } })
      t.match(await c.request('subscribe', { since: { [`user:${victim}`]: { epoch, offset: -1 } } }), { type: 'error', payload: { code: 'INVALID_PAYLOAD' } })
      await publish(node, victim, 'orders.created', 2)
      await v.subscribe(['*'])
      const marker = await publish(node, victim, 'orders.created', 3)
      await v.next((f) => f.payload?.id === marker.id)
      t.equal(c.frames.filter((f) => f.payload?.userId === victim).length, 0, 'nothing of the victim reached the other user')
    })

    t.test('an admin resumes the admin stream and the broadcast', async (t) => {
      const a = await open(t, node, adminToken(user('adm')), '/ws/admin')
      const pos = a.frames[0]!.payload.positions
      const ev = (await node.api('/api/events', { body: { type: 'admin.audit.thing', data: {} } })).body
      const sys = (await node.api('/api/events', { body: { type: 'system.maintenance', data: {} } })).body
      const r = await a.request('subscribe', { eventTypes: ['*'], since: pos })
      t.equal(r.payload.recovered, true)
      t.ok(a.frames.some((f) => f.payload?.id === ev.id), 'the admin event replayed')
      t.ok(a.frames.some((f) => f.payload?.id === sys.id), 'the broadcast event replayed')
    })

    t.test('the seam under concurrent publishing: every resumed connection gets each offset exactly once, in order', async (t) => {
      const u = user('seam')
      const stream = `user:${u}`
      const first = await publish(node, u, 'orders.created', 0)
      const epoch = first.epoch as string
      let publishing = true
      let published = 1
      // Several publishes in flight at every moment, for the whole test: live messages arrive while each replay reads.
      const publisher = (async () => {
        while (publishing) {
          await Promise.all(Array.from({ length: 8 }, async () => { await publish(node, u, 'orders.created', ++published) }))
        }
      })()
      t.teardown(async () => { publishing = false; await publisher })
      for (let round = 0; round < 12; round++) {
        const c = await open(t, node, userToken(u))
        const top = c.frames[0]!.payload.positions[stream].offset as number
        const from = Math.max(0, top - 40 - round * 7)
        const reply = await c.request('subscribe', { eventTypes: ['*'], since: { [stream]: { epoch, offset: from } } })
        t.equal(reply.payload.recovered, true, `round ${round}: recovered`)
        // Until a message published after the reply has arrived.
        const after = await publish(node, u, 'orders.created', -1)
        await c.next((f) => f.payload?.id === after.id, 10_000)
        const offsets = positioned(c, stream).map((f) => f.payload.offset as number)
        const expected = Array.from({ length: after.offset - from }, (_x, i) => from + 1 + i)
        t.same(offsets.filter((o) => o <= after.offset), expected, `round ${round}: offsets ${from + 1}..${after.offset}, each once, in order (replay ${reply.payload.positions[stream].offset - from}, the rest live)`)
        await c.close()
      }
      publishing = false
      await publisher
    })

    t.test('resumes are counted by outcome', async (t) => {
      const text = (await node.api('/metrics', { key: '' })).body as string
      t.match(text, /^herald_resumes_total\{endpoint="events",recovered="true"[^}]*\} [1-9]/m, 'recovered resumes')
      t.match(text, /^herald_resumes_total\{endpoint="events",recovered="false"[^}]*\} [1-9]/m, 'and the others')
    })
  })
}

t.test('history off: welcome has no positions, since is refused with HISTORY_OFF', async (t) => {
  const node = await startApp({ HISTORY_SIZE: '0' })
  t.teardown(() => node.close())
  const c = await open(t, node, userToken(user('off')))
  t.notOk('positions' in c.frames[0]!.payload)
  t.match(await c.request('subscribe', { eventTypes: ['*'], since: { broadcast: { epoch: 'x', offset: 0 } } }), { type: 'error', payload: { code: 'HISTORY_OFF' } })
})

t.test('a resume while Redis does not answer (paused) is answered within its read deadline, not recovered, and live delivery goes on', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startApp({ REDIS_URL: redis.url, HEALTH_PROBE_INTERVAL: '200', SERVER_ID: `resume-paused-${process.pid}` })
  t.teardown(() => node.close())
  const u = user('paused')
  const first = await publish(node, u, 'orders.created', 1)
  const c = await open(t, node, userToken(u))
  redis.pause()
  t.teardown(() => redis.resume())
  const asked = Date.now()
  const reply = await c.request('subscribe', { eventTypes: ['orders.*'], since: { [`user:${u}`]: { epoch: first.epoch, offset: 1 } } }, 10_000)
  t.match(reply.payload, { recovered: false, unrecovered: [`user:${u}`], positions: { [`user:${u}`]: { epoch: first.epoch, offset: 1 } } }, 'not recovered, at the position it gave')
  // Redis stays paused until the test ends: an answer at all is one that did not wait for it.
  t.comment(`answered in ${Date.now() - asked} ms (reads given up after ${REPLAY_READ_TIMEOUT_MS} ms)`)
  // Published while Redis is away: held, and delivered on this node at once.
  const during = await publish(node, u, 'orders.created', 2)
  t.equal((await c.next((f) => f.payload?.id === during.id, 5000)).type, 'event', 'live delivery to the connection goes on')
})
