// Socket.IO CONNECT packets on one engine.io session, sent by hand over raw
// long-polling (socket.io-client sends one per namespace): a node process on
// a private Redis, MAX_CONNECTIONS_PER_USER 2. CONNECTs sent together are
// one connection, the others refused; a CONNECT after a DISCONNECT is a new
// connection, the one before having given its slot back.
import t from 'tap'
import { startNode } from '../helpers/node.js'
import { handshake, type PollingSession } from '../helpers/polling.js'
import { startRedis } from '../helpers/redis.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const redis = await startRedis()
t.teardown(async () => { await redis.stop() })
const node = await startNode({ REDIS_URL: redis.url, MAX_CONNECTIONS_PER_USER: '2' })
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
  t.match(refused[0]!.message, /one connection at a time/, 'saying why')
  await s.until((p) => p.startsWith('42["welcome"'))
  t.equal(await slots(u), 1, 'the cluster counts one connection')
  // The connection answers a subscribe through its ack.
  await s.send('421["subscribe",{"eventTypes":["system.*"]}]')
  t.match(await s.until((p) => p.startsWith('431[')), /system\.\*/, 'and it serves on')
  t.equal(s.packets.filter((p) => p.startsWith('42["welcome"')).length, 1, 'one welcome in all')
})

t.test("a CONNECT once the session holds a connection closes the session (Socket.IO's rule), and the slot is given back", async (t) => {
  const u = user('again')
  const s = await session()
  t.ok('sid' in await connectOn(s, userToken(u)))
  await s.until((p) => p.startsWith('42["welcome"'))
  await s.send(`40${JSON.stringify({ token: userToken(u) })}`)
  await waitFor('the slot given back', async () => await slots(u), (n) => n === 0)
  // Its close packet, or (polled after) its session unknown.
  await waitFor('the session closed', async () => (await s.poll()).status === 400 || s.packets.includes('1'))
  t.pass('the session is gone')
})

t.test('CONNECT and DISCONNECT in turn: each connection gives its slot back at its DISCONNECT, not at the session end', async (t) => {
  const u = user('turns')
  const s = await session()
  // Four connections one after another on one session, with a quota of two.
  for (let i = 0; i < 4; i++) {
    const c = await connectOn(s, userToken(u))
    t.ok('sid' in c, `connection ${i + 1} admitted (${JSON.stringify(c)})`)
    await waitFor(`connection ${i + 1} counted`, async () => await slots(u), (n) => n === 1)
    await s.send('41')
    await waitFor(`connection ${i + 1}'s slot given back`, async () => await slots(u), (n) => n === 0)
  }
  t.pass('the session never held more than one slot')
})

t.test('the slot of a connection still open is given back when its session ends', async (t) => {
  const u = user('ends')
  const s = await session()
  t.ok('sid' in await connectOn(s, userToken(u)))
  await waitFor('counted', async () => await slots(u), (n) => n === 1)
  await s.send('1') // engine.io close
  await waitFor('the slot given back', async () => await slots(u), (n) => n === 0)
  t.pass()
})
