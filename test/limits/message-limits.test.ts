// Message limits hold across the whole cluster: MAX_MESSAGES_PER_MINUTE
// client frames per user and, separately, per client IP, counted in Redis, so a
// user (or an address) spreading frames over several nodes gets one budget. Over
// the limit a frame is answered `error` RATE_LIMITED (with its id) and the
// connection stays open; more than 10 limited frames in a row close it 4029.
//
// All test clients share 127.0.0.1, and MAX_MESSAGES_PER_MINUTE applies to both
// the user key and the IP key. To tell the two apart the nodes trust 127.0.0.1
// as a proxy and each client sends its own X-Forwarded-For: then a user on two
// addresses exhausts only the user budget, and two users on one address only
// the IP budget. The last plain case (no X-Forwarded-For) shows two users on
// 127.0.0.1 sharing the IP budget, as every real client behind one NAT would.
import t, { type Test } from 'tap'
import { connect, type TestClient } from '../helpers/client.js'
import { startCluster } from '../helpers/cluster.js'
import type { NodeProc } from '../helpers/node.js'
import { userToken } from '../helpers/tokens.js'
import { within } from '../helpers/wait.js'

const LIMIT = 10
const LIMITED_BEFORE_CLOSE = 10 // lifecycle.ts MAX_LIMITED_MESSAGES
let uniq = 0
const name = (s: string): string => `${s}-${process.pid}-${++uniq}`

async function client (t: Test, node: NodeProc, userId: string, ip?: string): Promise<TestClient> {
  const c = await connect(`${node.ws}/ws/events`, { token: userToken(userId), ...(ip !== undefined ? { headers: { 'x-forwarded-for': ip } } : {}) })
  t.teardown(() => c.close())
  return c
}

async function served (t: Test, c: TestClient, what: string): Promise<void> {
  const r = await c.request('ping')
  t.equal(r.type, 'pong', `${what}: served`)
}

async function limited (t: Test, c: TestClient, scope: 'user' | 'IP address', what: string): Promise<void> {
  const r = await c.request('ping')
  t.equal(r.type, 'error', `${what}: refused`)
  t.equal(r.payload?.code, 'RATE_LIMITED', `${what}: RATE_LIMITED, with the request id ${String(r.id)}`)
  t.match(r.payload?.message, new RegExp(`per ${scope}`), `${what}: the ${scope} budget`)
  t.equal(c.closeInfo, null, `${what}: the connection stays open`)
}

t.test('message limits across three nodes', { timeout: 60_000 }, async (t) => {
  const { nodes } = await startCluster(t, { MAX_MESSAGES_PER_MINUTE: String(LIMIT), TRUSTED_PROXIES: '127.0.0.1' })
  const [A, B, C] = nodes as [NodeProc, NodeProc, NodeProc]

  t.test('per user: 10 frames over two nodes are served, the 11th is refused, >10 refused in a row closes 4029', async (t) => {
    const u = name('u')
    const onA = await client(t, A, u, '10.1.0.1')
    const onB = await client(t, B, u, '10.1.0.2')
    for (let i = 0; i < LIMIT; i++) await served(t, i % 2 === 0 ? onA : onB, `frame ${i + 1} on ${i % 2 === 0 ? 'A' : 'B'}`)
    // The id is echoed on the refusal (request() matches the reply by id).
    await limited(t, onA, 'user', 'frame 11 on A')
    await limited(t, onB, 'user', 'frame 12 on B: the budget is the cluster\'s, not the node\'s')

    // Another user on the same nodes, on other addresses, has a budget of its own.
    const v = name('v')
    const vOnA = await client(t, A, v, '10.1.0.3')
    const vOnB = await client(t, B, v, '10.1.0.4')
    await served(t, vOnA, 'another user on A')
    await served(t, vOnB, 'another user on B')

    // onA has 1 limited frame; 9 more are still answered, the next one closes.
    for (let i = 2; i <= LIMITED_BEFORE_CLOSE; i++) await limited(t, onA, 'user', `limited frame ${i} in a row`)
    onA.send({ type: 'ping', id: 'one-too-many' })
    const closed = await within(3000, 'the 4029 close', onA.closed)
    t.equal(closed.code, 4029, `closed 4029 (${closed.reason})`)
    t.notOk(onA.frames.some((f) => f.id === 'one-too-many'), 'the frame that closed it got no reply')
    t.equal(onB.closeInfo, null, 'the same user on B stays open: abuse is counted per connection')
    await served(t, vOnB, 'the other user is still served')
  })

  t.test('per IP: two users on one address share its budget, across nodes; another address does not', async (t) => {
    const ip = '10.2.0.1'
    const w = await client(t, A, name('w'), ip)
    const x = await client(t, C, name('x'), ip)
    for (let i = 0; i < LIMIT; i++) await served(t, i % 2 === 0 ? w : x, `frame ${i + 1}`)
    // Each user has spent 5 of its own 10: what refuses now is the address's budget.
    await limited(t, x, 'IP address', 'frame 11, second user on C')
    await limited(t, w, 'IP address', 'frame 12, first user on A')
    const y = await client(t, A, name('y'), '10.2.0.2')
    await served(t, y, 'a third user on another address')
    const z = await client(t, B, name('z'), '10.2.0.3')
    await served(t, z, 'a fourth user on another address, on B')
  })

  t.test('no X-Forwarded-For: two users on 127.0.0.1 share the 127.0.0.1 budget', async (t) => {
    const p = await client(t, A, name('p'))
    const q = await client(t, B, name('q'))
    for (let i = 0; i < LIMIT; i++) await served(t, i % 2 === 0 ? p : q, `frame ${i + 1}`)
    await limited(t, q, 'IP address', 'frame 11')
    await limited(t, p, 'IP address', 'frame 12')
  })
})

t.test('Redis paused: each node keeps answering frames under its own in-memory limit', { timeout: 40_000 }, async (t) => {
  // message-limiter.ts promises: while Redis cannot answer, each node counts on
  // its own with the same limit, so limits loosen to per-node rather than vanish.
  const { redis, nodes } = await startCluster(t, { MAX_MESSAGES_PER_MINUTE: String(LIMIT), TRUSTED_PROXIES: '127.0.0.1' }, 2)
  const [A, B] = nodes as [NodeProc, NodeProc]
  t.teardown(() => redis.resume())
  const u = name('paused')
  const onA = await client(t, A, u, '10.3.0.1')
  const onB = await client(t, B, u, '10.3.0.2')
  for (let i = 0; i < 3; i++) await served(t, onA, `before the pause, frame ${i + 1}`)

  redis.pause()
  let slowest = 0
  // Each frame must be answered within a bounded time, Redis or not.
  const drive = async (c: TestClient, where: string): Promise<number> => {
    let ok = 0
    for (let i = 0; i < LIMIT + 1; i++) {
      const sent = Date.now()
      const r = await c.request('ping', undefined, 4000)
      slowest = Math.max(slowest, Date.now() - sent)
      if (i < LIMIT) {
        t.equal(r.type, 'pong', `${where}: frame ${i + 1} answered while Redis is paused`)
        if (r.type === 'pong') ok++
      } else {
        t.equal(r.type, 'error', `${where}: frame ${i + 1} is over the node's own limit`)
        t.equal(r.payload?.code, 'RATE_LIMITED', `${where}: RATE_LIMITED`)
      }
    }
    return ok
  }
  // The node's in-memory count starts from zero when Redis stops answering.
  t.equal(await drive(onA, 'A'), LIMIT, 'A serves a full budget on its own')
  t.equal(await drive(onB, 'B'), LIMIT, 'B, counting separately, serves its own budget too')
  t.equal(onA.closeInfo, null, 'the connections stay open')
  t.equal(onB.closeInfo, null)
  t.ok(slowest < 4000, `slowest reply while paused: ${slowest} ms`)
  t.comment(`slowest reply while Redis was paused: ${slowest} ms`)
  redis.resume()
})
