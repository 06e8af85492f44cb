// Membership changes on open connections follow the store, not the order
// their messages come in: an add and a remove of one user on two nodes can
// write in one order and announce in the other. Here the late message is
// sent by hand, after the change that overtook it.
import t from 'tap'
import { startApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { startRedis } from '../helpers/redis.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

t.test('a membership message that comes after a later change is read against the store, not applied as it says', async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startApp({ REDIS_URL: redis.url })
  t.teardown(() => node.close())
  const h = node.app.herald
  const c = await connect(`${node.ws}/ws/events`, { token: userToken('rae') })
  t.teardown(() => c.close())
  await c.subscribe(['chat.*'])
  /** The groups the hub holds for rae's connection. */
  const held = (): string[] => { let g: string[] = []; h.connections.forEachOfUser('rae', (x) => { g = [...(x.groups ?? [])] }); return g }
  const member = async (group: string, yes: boolean): Promise<void> => {
    t.equal((await node.api(`/api/groups/${group}/members/rae`, { method: yes ? 'PUT' : 'DELETE' })).status, 200)
    await waitFor(`rae's connection ${yes ? 'in' : 'out of'} ${group}`, held, (g) => g.includes(group) === yes)
  }
  // Changes of one user are read in the order their messages came: once a
  // later change holds, the late message before it was read and settled.
  let marks = 0
  const settled = async (): Promise<void> => await member(`mark-${++marks}`, true)

  await member('gone', true)
  await member('gone', false)
  // The add's message, overtaken by the remove's.
  await h.publisher.publishControl('group', { group: 'gone', userId: 'rae', member: true }, 'rae')
  await settled()
  t.notOk(held().includes('gone'), 'a late "member" after a remove does not join the connection')
  const stray = await node.api('/api/events', { body: { type: 'chat.message', group: 'gone', data: {} } })
  const marker = await node.api('/api/events', { body: { type: 'chat.message', group: `mark-${marks}`, data: {} } })
  await c.next((f) => f.type === 'event' && f.payload.id === marker.body.id)
  t.equal(c.count((f) => f.type === 'event' && f.payload.id === stray.body.id), 0, 'nor does the group\'s event reach it')

  await member('kept', true)
  // The remove's message, overtaken by a later add.
  await h.publisher.publishControl('group', { group: 'kept', userId: 'rae', member: false }, 'rae')
  await settled()
  t.ok(held().includes('kept'), 'a late "not a member" after an add does not take the connection out')
  const mine = await node.api('/api/events', { body: { type: 'chat.message', group: 'kept', data: {} } })
  await c.next((f) => f.type === 'event' && f.payload.id === mine.body.id)
})
