// Socket.IO clients that do what socket.io-client never would, against a node
// process on a private Redis: an event name that is not a string is answered
// UNKNOWN_TYPE through its ack.
import t from 'tap'
import { startNode } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { sioConnect } from '../helpers/sio.js'
import { userToken } from '../helpers/tokens.js'

const redis = await startRedis()
t.teardown(async () => { await redis.stop() })
const node = await startNode({ REDIS_URL: redis.url })
t.teardown(() => node.stop())

let uniq = 0
const user = (name: string): string => `${name}-${++uniq}`

t.test('an event name that is not a string (42[123,{}]) is answered UNKNOWN_TYPE through its ack; the connection carries on', { timeout: 20_000 }, async (t) => {
  const u = user('numeric')
  const { client } = await sioConnect(node.http, { transports: ['websocket'], auth: { token: userToken(u) } })
  t.teardown(() => client.close())
  const reply = await client.socket.timeout(3000).emitWithAck(123 as unknown as string, {}) as { type: string, payload: { code: string, message: string } }
  t.equal(reply.type, 'error', 'the ack is answered with an error')
  t.equal(reply.payload.code, 'UNKNOWN_TYPE', 'UNKNOWN_TYPE')
  // Without an ack the error arrives as an event.
  const from = client.records.length
  client.socket.emit(456 as unknown as string, {})
  t.equal((await client.next((r) => r.event === 'error', 3000, from)).payload.code, 'UNKNOWN_TYPE', 'and as an error event without one')
  t.equal((await client.request('ping')).type, 'pong', 'the connection carries on')
  t.notOk(node.lines.some((l) => l.includes('handler failed') || l.includes('"INTERNAL"')), 'nothing was logged as an internal error')
})
