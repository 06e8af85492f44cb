// The one admission (src/endpoints/admission.ts) gives a connection's slot
// back when its transport closes; when the backend refuses that, the node
// says so at warn, with the connection's ids and never its token, on both
// transports (Socket.IO's failures used to vanish). The refusal is a real
// Redis one: the node's Redis user loses ZREM (ACL), so the slot stays.
import t from 'tap'
import { connect } from '../helpers/client.js'
import { startNode } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { sioConnect } from '../helpers/sio.js'
import { userToken } from '../helpers/tokens.js'

const redis = await startRedis()
t.teardown(async () => { await redis.stop() })
const node = await startNode({ REDIS_URL: redis.url })
t.teardown(() => node.stop())
const rc = redis.client()

for (const transport of ['ws', 'socket.io'] as const) {
  t.test(`${transport}: a slot the backend will not give back is logged with the connection's ids`, { timeout: 30_000 }, async (t) => {
    const userId = `release-${transport}`
    const token = userToken(userId)
    let connectionId: string
    let close: () => Promise<void>
    if (transport === 'ws') {
      const c = await connect(`${node.ws}/ws/events`, { token })
      connectionId = c.frames.find((f) => f.type === 'welcome')!.payload.connectionId as string
      close = async () => { await c.close() }
    } else {
      const { client, welcome } = await sioConnect(node.http, { transports: ['websocket'], auth: { token } })
      connectionId = welcome.connectionId as string
      close = async () => { client.close() }
    }
    const member = `${node.serverId}|${connectionId}`
    t.ok((await rc.zrange(`herald:conn:u:${userId}`, 0, -1)).includes(member), 'the connection holds a slot of its user')

    await rc.call('ACL', 'SETUSER', 'default', '-zrem')
    t.teardown(async () => { await rc.call('ACL', 'SETUSER', 'default', '+zrem') })
    await close()
    const line = await node.waitLine((l) => l.includes('could not release connection slot') && l.includes(connectionId))
    const entry = JSON.parse(line) as { level: number, connectionId: string, userId: string, err: { message: string } }
    t.equal(entry.level, 40, 'at warn')
    t.match(entry, { connectionId, userId }, 'naming the connection and its user')
    t.match(entry.err.message, /NOPERM/, 'with Redis\'s refusal')
    t.notOk(line.includes(token), 'and not the token')
    t.ok((await rc.zrange(`herald:conn:u:${userId}`, 0, -1)).includes(member), 'the slot was indeed not given back')
  })
}
