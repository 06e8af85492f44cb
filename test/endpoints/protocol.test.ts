import t from 'tap'
import { startApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { userToken } from '../helpers/tokens.js'

t.test('welcome, then request/reply with ids', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const c = await connect(`${node.ws}/ws/events`, { token: userToken('alice', 'sess-a') })
  t.teardown(() => c.close())
  const w = c.frames[0]!
  t.equal(w.type, 'welcome')
  t.match(w.payload, { userId: 'alice', sessionId: 'sess-a', serverId: String, connectionId: String, expiresAt: String, heartbeatInterval: Number })

  const s = await c.request('subscribe', { eventTypes: ['authentication.*', 'system.*'] })
  t.same(s.payload, { eventTypes: ['authentication.*', 'system.*'] })
  const g = await c.request('get_subscriptions')
  t.equal(g.type, 'subscriptions')
  t.same(g.payload.eventTypes, ['authentication.*', 'system.*'])
  const u = await c.request('unsubscribe', { eventTypes: ['system.*'] })
  t.same(u.payload, { eventTypes: ['authentication.*'] })
  const p = await c.request('ping')
  t.equal(p.type, 'pong')
  t.ok(Date.parse(p.payload.timestamp) > 0)
})
