// A `refresh` whose connection closes while the node awaits the revocation
// check (Redis answering late) leaves nothing behind: the closed connection
// used to be joined to its new token's groups after its cleanup had run, so
// the node held the group's channel and dispatched its events to the dead
// connection for good (a client could grow that without bound). The check is
// held here until the connection is gone, the order the race needs.
import t from 'tap'
import { startApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

t.test('a connection closed during its refresh joins none of the new token\'s groups', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const h = node.app.herald
  const check = h.revocations.check.bind(h.revocations)
  let release!: () => void
  const held = new Promise<void>((resolve) => { release = resolve })
  let asked!: () => void
  const reached = new Promise<void>((resolve) => { asked = resolve })
  let answered!: () => void
  // Resolves once the refresh has gone on from the check as far as it goes without another wait.
  const after = new Promise<void>((resolve) => { answered = resolve })
  // The refresh hands its whole new identity to the check: the one with the group is held.
  h.revocations.check = async (identity) => {
    if (!((identity as { groups?: string[] }).groups ?? []).includes('g-leak')) return await check(identity)
    asked()
    await held
    try {
      return await check(identity)
    } finally {
      setImmediate(answered)
    }
  }

  const c = await connect(`${node.ws}/ws/events`, { token: userToken('leaky', 'l-1') })
  await c.subscribe(['*'])
  c.send({ type: 'refresh', id: 'r1', payload: { token: userToken('leaky', 'l-1', { groups: ['g-leak'] }) } })
  await reached
  c.ws.terminate()
  await waitFor('the node to see the close', () => h.connections.size, (n) => n === 0)
  release()
  await after
  t.same([...h.hub.groupCounts()], [], 'no group holds the closed connection')

  // The same refresh on an open connection does join (the test would pass vacuously otherwise).
  const open = await connect(`${node.ws}/ws/events`, { token: userToken('kept', 'k-1') })
  t.teardown(() => open.close())
  await open.subscribe(['*'])
  t.match(await open.request('refresh', { token: userToken('kept', 'k-1', { groups: ['g-leak'] }) }), { type: 'refreshed' })
  t.same([...h.hub.groupCounts()], [['g-leak', 1]], 'an open connection joins its new group')
})
