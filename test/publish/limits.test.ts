// Hostile and oversized publishes on one node, both transports: each gets a
// clear error code, the connection stays usable, the node carries on. And
// a token refreshed in-band with other `groups`: membership follows it.
import t from 'tap'
import { startApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { sioConnect } from '../helpers/sio.js'
import { userToken } from '../helpers/tokens.js'

t.test('a publish over MAX_PUBLISH_BYTES (set below MAX_MESSAGE_BYTES) is refused with PUBLISH_TOO_LARGE; hostile data is refused by code', async (t) => {
  const node = await startApp({ MAX_MESSAGE_BYTES: '4096', MAX_PUBLISH_BYTES: '1024' })
  t.teardown(() => node.close())
  const token = userToken('agent-l', undefined, { publish: ['agent.*'], groups: ['g1'] })
  const c = await connect(`${node.ws}/ws/events`, { token })
  t.teardown(() => c.close())
  const big = { type: 'agent.logs', data: { pad: 'x'.repeat(1500) } }
  const r = await c.request('publish', big)
  t.same([r.type, r.payload.code], ['error', 'PUBLISH_TOO_LARGE'])
  t.match(r.payload.message, /at most 1024 bytes \(MAX_PUBLISH_BYTES\)/)
  t.equal((await c.request('publish', { type: 'agent.logs', data: { pad: 'x'.repeat(500) } })).type, 'published', 'a smaller one passes on the same connection')

  let deep: unknown = {}
  for (let i = 0; i < 40; i++) deep = { d: deep }
  t.equal((await c.request('publish', { type: 'agent.x', data: deep })).payload.code, 'DATA_TOO_DEEP', 'data nested too deeply')
  t.equal((await c.request('publish', { type: 'agent.x', data: [1, 2] })).payload.code, 'INVALID_PAYLOAD', 'data that is no object')
  t.equal((await c.request('publish', { type: 'agent.x', group: 'a b' })).payload.code, 'INVALID_PAYLOAD', 'a group name that is none')
  t.equal((await c.request('publish', { type: 'agent.x', key: 'x'.repeat(200) })).payload.code, 'INVALID_PAYLOAD', 'an idempotency key that is too long')
  t.equal((await c.request('publish', { type: 'agent.x', group: 'g1', userId: 'agent-l', agentId: 'agent-l', data: { userId: 'agent-l' } })).type, 'published', 'identity fields that are the token\'s own pass')

  const { client: s } = await sioConnect(node.http, { auth: { token }, transports: ['websocket'] })
  t.teardown(() => s.close())
  const sr = await s.request('publish', big)
  t.same([sr.type, sr.payload.code], ['error', 'PUBLISH_TOO_LARGE'], 'Socket.IO: the same refusal')
  t.equal((await s.request('ping')).type, 'pong', 'and the socket carries on')
  t.equal((await c.request('ping')).type, 'pong')
})

t.test('a publish whose key another publish still holds is answered PUBLISH_PENDING as often as it is retried, never closed for it', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  // A publish of the same key that never finished (its node died mid-way): pending for 30 s.
  t.equal((await node.app.herald.backend.publishKeys.claim('retrier', 'order-1', 30_000)).state, 'new')
  const c = await connect(`${node.ws}/ws/events`, { token: userToken('retrier', undefined, { publish: ['order.*'] }) })
  t.teardown(() => c.close())
  // Past the 20 refusals a minute that close an abusive client (4029).
  const codes = new Set<string>()
  for (let i = 0; i < 30; i++) codes.add((await c.request('publish', { type: 'order.created', key: 'order-1' })).payload.code)
  t.same([...codes], ['PUBLISH_PENDING'], 'each retry: PUBLISH_PENDING')
  t.equal((await c.request('ping')).type, 'pong', 'the connection is still open')
  t.equal((await c.request('publish', { type: 'order.created', key: 'order-2' })).type, 'published', 'and another key publishes')
})

t.test('a refresh with a token that adds a group joins it; one that drops a group ends its events, unless the API made the user a member', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const c = await connect(`${node.ws}/ws/events`, { token: userToken('refresher', 'rs', { groups: ['g-old', 'g-api'] }) })
  t.teardown(() => c.close())
  await c.subscribe(['chat.*'])
  await node.api('/api/groups/g-api/members/refresher', { method: 'PUT' })
  const refreshed = await c.request('refresh', { token: userToken('refresher', 'rs', { groups: ['g-new'] }) })
  t.equal(refreshed.type, 'refreshed')
  const sent: Record<string, string> = {}
  for (const g of ['g-old', 'g-api', 'g-new']) sent[g] = (await node.api('/api/events', { body: { type: 'chat.message', group: g } })).body.id
  const marker = await node.api('/api/events', { body: { type: 'chat.message', userId: 'refresher' } })
  await c.next((f) => f.type === 'event' && f.payload.id === marker.body.id)
  const got = (g: string): boolean => c.count((f) => f.type === 'event' && f.payload.id === sent[g]) === 1
  t.same([got('g-old'), got('g-api'), got('g-new')], [false, true, true], 'the dropped group ends, the API membership stays, the added group starts')
})
