// Socket.IO CONNECT packets on one engine.io session, sent by hand over raw
// long-polling (socket.io-client sends one per namespace): a node process on
// a private Redis. A session holds one connection and ends with it: a second
// CONNECT closes it, and so does the connection's end, its slot given back.
import { io } from 'socket.io-client'
import t, { type Test } from 'tap'
import { startNode } from '../helpers/node.js'
import { handshake, type PollingSession } from '../helpers/polling.js'
import { startRedis } from '../helpers/redis.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const redis = await startRedis()
t.teardown(async () => { await redis.stop() })
const node = await startNode({ REDIS_URL: redis.url })
t.teardown(() => node.stop())

let uniq = 0
const user = (name: string): string => `${name}-${++uniq}-${process.pid}`

async function session (): Promise<PollingSession> {
  const hs = await handshake(node.http)
  if (hs.session === null) throw new Error(`engine.io handshake answered ${hs.status} ${hs.body}`)
  return hs.session
}

/** The user's connections the cluster counts (its admission slots). */
async function slots (userId: string): Promise<number> {
  const r = await node.api(`/api/users/${userId}/connections`)
  if (r.status !== 200) throw new Error(`listing answered ${r.status}`)
  return (r.body as { connections: unknown[] }).connections.length
}

/** A session of a new user holding one connection, welcomed. */
async function connected (t: Test, name: string): Promise<{ u: string, s: PollingSession }> {
  const u = user(name)
  const s = await session()
  const c = await connectOn(s, userToken(u))
  t.ok('sid' in c, `connected (${JSON.stringify(c)})`)
  await s.until((p) => p.startsWith('42["welcome"'))
  return { u, s }
}

/** Waits until the cluster counts `n` connections of `u`. */
async function slotsReach (u: string, n: number): Promise<void> {
  await waitFor(`${n} connection(s) of ${u} counted`, async () => await slots(u), (x) => x === n)
}

/** Waits for the session's end: its close packet, or (polled after) the session unknown. */
async function closedSession (s: PollingSession): Promise<void> {
  await waitFor('the session closed', async () => s.packets.includes('1') || (await s.poll()).status === 400)
}

/** Sends a CONNECT with the token and waits for its answer (the nth of its kind on the session): the connection id, or the refusal. */
async function connectOn (s: PollingSession, tok: string): Promise<{ sid: string } | { refused: { message: string, data: { code: string } } }> {
  const before = s.packets.filter((p) => p.startsWith('40{') || p.startsWith('44')).length
  await s.send(`40${JSON.stringify({ token: tok })}`)
  await s.until(() => s.packets.filter((p) => p.startsWith('40{') || p.startsWith('44')).length > before, 10_000)
  const answer = s.packets.filter((p) => p.startsWith('40{') || p.startsWith('44'))[before]!
  return answer.startsWith('40{') ? JSON.parse(answer.slice(2)) as { sid: string } : { refused: JSON.parse(answer.slice(2)) as { message: string, data: { code: string } } }
}

t.test('CONNECTs sent together: the first is a connection, the others are refused FORBIDDEN and admit nothing', async (t) => {
  const u = user('together')
  const s = await session()
  const tok = `40${JSON.stringify({ token: userToken(u) })}`
  // One POST, three CONNECTs: all reach the node while the first is being admitted.
  await s.send(tok, tok, tok)
  await s.until(() => s.packets.filter((p) => p.startsWith('40{') || p.startsWith('44')).length === 3, 10_000)
  const answers = s.packets.filter((p) => p.startsWith('40{') || p.startsWith('44'))
  t.equal(answers.filter((p) => p.startsWith('40{')).length, 1, `one connection (${JSON.stringify(answers)})`)
  const refused = answers.filter((p) => p.startsWith('44')).map((p) => JSON.parse(p.slice(2)) as { message: string, data: { code: string } })
  t.same(refused.map((r) => r.data.code), ['FORBIDDEN', 'FORBIDDEN'], 'the other two refused FORBIDDEN')
  t.match(refused[0]!.message, /one connection per session/, 'saying why')
  await s.until((p) => p.startsWith('42["welcome"'))
  t.equal(await slots(u), 1, 'the cluster counts one connection')
  // The connection answers a subscribe through its ack.
  await s.send('421["subscribe",{"eventTypes":["system.*"]}]')
  t.match(await s.until((p) => p.startsWith('431[')), /system\.\*/, 'and it serves on')
  t.equal(s.packets.filter((p) => p.startsWith('42["welcome"')).length, 1, 'one welcome in all')
})

t.test("a CONNECT once the session holds a connection closes the session (Socket.IO's rule), and the slot is given back", async (t) => {
  const { u, s } = await connected(t, 'again')
  await s.send(`40${JSON.stringify({ token: userToken(u) })}`)
  await slotsReach(u, 0)
  await closedSession(s)
  t.pass('the session is gone')
})

t.test('a DISCONNECT gives the slot back at once and ends the session', async (t) => {
  const { u, s } = await connected(t, 'leaves')
  await slotsReach(u, 1)
  await s.send('41')
  await slotsReach(u, 0)
  await closedSession(s)
  t.pass('and the session with it: nothing left to connect again on one TCP connection, uncounted')
})

t.test("a server-side close reaches the client (its close event) before its session ends, and gives the slot back", async (t) => {
  const { u, s } = await connected(t, 'closed')
  t.equal((await node.api(`/api/users/${u}/disconnect`, { method: 'POST' })).status, 202)
  t.match(await s.until((p) => p.startsWith('42["close"')), /"code":4003/, 'the close event, 4003')
  await closedSession(s)
  await slotsReach(u, 0)
  t.pass()
})

t.test('a refused CONNECT leaves the session open for another: a later CONNECT with a valid token is a connection', async (t) => {
  const u = user('retry')
  const s = await session()
  const refused = await connectOn(s, 'not-a-token')
  t.ok('refused' in refused && refused.refused.data.code === 'TOKEN_INVALID', `refused TOKEN_INVALID (${JSON.stringify(refused)})`)
  const ok = await connectOn(s, userToken(u))
  t.ok('sid' in ok, `then admitted (${JSON.stringify(ok)})`)
  await s.until((p) => p.startsWith('42["welcome"'))
  t.equal(await slots(u), 1)
})

t.test('the slot of a connection still open is given back when its session ends', async (t) => {
  const { u, s } = await connected(t, 'ends')
  await slotsReach(u, 1)
  await s.send('1') // engine.io close
  await slotsReach(u, 0)
  t.pass()
})

t.test('socket.io-client calling connect() again before its first CONNECT is answered is told why, and left no slot', async (t) => {
  const u = user('twice')
  // Redis answers nothing meanwhile, so the first CONNECT is still being
  // admitted when the node reads the second, however the two are read (one
  // admitted first would make the second a CONNECT once connected, which
  // Socket.IO answers by closing the session).
  redis.pause()
  t.teardown(() => { redis.resume() })
  const s = io(node.http, { auth: { token: userToken(u) }, transports: ['websocket'], reconnection: false })
  t.teardown(() => { s.close() })
  // The second CONNECT goes out as the transport opens, beside the first.
  s.io.on('open', () => { s.connect() })
  let err: Error & { data?: { code?: string } }
  try {
    err = await within(10_000, 'the connect_error', new Promise<Error & { data?: { code?: string } }>((resolve) => s.once('connect_error', resolve)))
  } finally {
    redis.resume()
  }
  t.equal(err.data?.code, 'FORBIDDEN')
  t.match(err.message, /connect\(\) called twice/, 'the message names the likely cause')
  await slotsReach(u, 0)
})
