// The node's expiry schedule must not keep closed connections: with day-long
// tokens, a client that reconnects in a loop would otherwise grow it (and keep
// every closed socket in memory) until each token's warning time.
import t from 'tap'
import { startApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

t.test('closed connections leave the expiry schedule', { timeout: 60_000 }, async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const h = node.app.herald
  const keep = await connect(`${node.ws}/ws/events`, { token: userToken('keeper') })
  t.teardown(() => keep.close())
  await keep.nextOfType('welcome')

  const CYCLES = 600
  for (let i = 0; i < CYCLES; i += 50) {
    await Promise.all(Array.from({ length: 50 }, async (_v, j) => {
      const c = await connect(`${node.ws}/ws/events`, { token: userToken(`churn-${i + j}`, `s-${i + j}`, { exp: Math.floor(Date.now() / 1000) + 86_400 }) })
      await c.nextOfType('welcome')
      await c.close()
    }))
  }
  // Server-side closes follow the clients' within a few turns.
  await waitFor('only the keeper open', () => h.connections.size, (n) => n === 1, { timeoutMs: 5000, intervalMs: 10 })
  t.ok(h.expiry.size <= 2 * 65 + 1, `the schedule holds ${h.expiry.size} entries after ${CYCLES} closed connections, not one per closed connection`)

  // Refreshes replace the entry rather than adding one each time.
  for (let i = 0; i < 200; i++) {
    const r = await keep.request('refresh', { token: userToken('keeper', 'keeper-session', { exp: Math.floor(Date.now() / 1000) + 3600 + i }) })
    t.equal(r.type, 'refreshed')
  }
  t.ok(h.expiry.size <= 2 * 65 + 1, `the schedule holds ${h.expiry.size} entries after 200 refreshes`)

  // And the live connection is still scheduled: it gets auth_expiring.
  const r = await keep.request('refresh', { token: userToken('keeper', 'keeper-session', { exp: Math.floor(Date.now() / 1000) + 2 }) })
  t.equal(r.type, 'refreshed')
  await keep.nextOfType('auth_expiring', 5000)
  await keep.closed
  t.equal(keep.closeInfo?.code, 4001, 'and is closed 4001 at exp')
})
