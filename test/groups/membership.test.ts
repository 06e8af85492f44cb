// Membership changes on open connections follow the store, not the order
// their messages come in: an add and a remove of one user on two nodes can
// write in one order and announce in the other. Here the late message is
// sent by hand, after the change that overtook it. And a change heard while
// a new connection reads its groups is applied after that read only if its
// own read came later: the node's group reads are held and let go in turn.
import t from 'tap'
import { applyMembership } from '../../src/groups/membership.js'
import type { Herald } from '../../src/context.js'
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

/**
 * The node's group reads (the backend's groupsOf), each answered with what
 * the store held when it was asked, but only when the test releases it:
 * `read(n)` waits for the n-th read.
 */
function heldReads (h: Herald): { read: (n: number) => Promise<{ userId: string, release: () => void }>, restore: () => void } {
  const store = h.backend.groups
  const real = store.groupsOf.bind(store)
  const reads: Array<{ userId: string, release: () => void }> = []
  let asked: Array<() => void> = []
  store.groupsOf = async (userId: string): Promise<string[]> => {
    const answer = await real(userId)
    await new Promise<void>((resolve) => {
      reads.push({ userId, release: resolve })
      for (const w of asked) w()
      asked = []
    })
    return answer
  }
  const read = async (n: number): Promise<{ userId: string, release: () => void }> => {
    while (reads.length < n) await new Promise<void>((resolve) => asked.push(resolve))
    return reads[n - 1]!
  }
  return { read, restore: () => { store.groupsOf = real } }
}

/** How many of the user's connections on the node the hub holds in `group`. */
const inGroup = (h: Herald, userId: string, group: string): number => {
  let n = 0
  h.connections.forEachOfUser(userId, (c) => { if (c.groups?.has(group) === true) n++ })
  return n
}

t.test('a change heard while a new connection reads its groups applies after that read when read later, not when read before', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const h = node.app.herald
  const reads = heldReads(h)
  t.teardown(() => { reads.restore() })
  const store = h.backend.groups

  // Read later: the connection reads "member of stale", then the API's
  // remove is heard and read while it still loads. The later read wins.
  await store.add('stale', 'sam')
  const connecting = connect(`${node.ws}/ws/events`, { token: userToken('sam') })
  const own = await reads.read(1)
  t.equal(own.userId, 'sam')
  await store.remove('stale', 'sam')
  applyMembership(h, { group: 'stale', userId: 'sam', member: false })
  ;(await reads.read(2)).release()
  // The change's read has answered; its settle runs before the connection's read is let go.
  await new Promise((resolve) => setImmediate(resolve))
  own.release()
  const first = await connecting
  t.teardown(() => first.close())
  t.equal(inGroup(h, 'sam', 'stale'), 0, 'left out of the group its own (earlier) read named')

  // Read before: a change read while the store said "not a member of kept"
  // settles while a second connection, which read "member" after the API's
  // add, still loads. The connection's read stands.
  applyMembership(h, { group: 'kept', userId: 'sam', member: false })
  const stale = await reads.read(3)
  await store.add('kept', 'sam')
  const second = connect(`${node.ws}/ws/events`, { token: userToken('sam', 'sam-second') })
  const secondsRead = await reads.read(4)
  stale.release()
  await new Promise((resolve) => setImmediate(resolve))
  secondsRead.release()
  const c2 = await second
  t.teardown(() => c2.close())
  t.equal(inGroup(h, 'sam', 'kept'), 1, 'the second connection is in the group its later read named')
})
