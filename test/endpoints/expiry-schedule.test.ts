// The node's expiry schedule must not keep closed connections: with day-long
// tokens, a client that reconnects in a loop would otherwise grow it (and keep
// every closed socket in memory) until each token's warning time. Read from
// the node's heap: the server side of each closed connection, held weakly
// here, must be collected.
import { setFlagsFromString } from 'node:v8'
import { runInNewContext } from 'node:vm'
import t from 'tap'
import { startApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

setFlagsFromString('--expose-gc')
const gc = runInNewContext('gc') as () => void

/** How many of `refs` a full collection leaves alive. */
async function alive (refs: Array<WeakRef<object>>): Promise<number> {
  // A WeakRef keeps its target until the end of the turn that made or read it.
  await new Promise((resolve) => setImmediate(resolve))
  gc()
  await new Promise((resolve) => setImmediate(resolve))
  return refs.filter((r) => r.deref() !== undefined).length
}

// The schedule sweeps its stale entries once more than 64 are stale and they
// are more than half of it.
const MAX_STALE = 65

t.test('closed connections leave the expiry schedule', { timeout: 60_000 }, async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const h = node.app.herald
  const keep = await connect(`${node.ws}/ws/events`, { token: userToken('keeper') })
  t.teardown(() => keep.close())
  await keep.nextOfType('welcome')

  const CYCLES = 600
  const closedOnes: Array<WeakRef<object>> = []
  for (let i = 0; i < CYCLES; i += 50) {
    await Promise.all(Array.from({ length: 50 }, async (_v, j) => {
      const c = await connect(`${node.ws}/ws/events`, { token: userToken(`churn-${i + j}`, `s-${i + j}`, { exp: Math.floor(Date.now() / 1000) + 86_400 }) })
      const welcome = await c.nextOfType('welcome')
      closedOnes.push(new WeakRef(h.connections.get(welcome.payload.connectionId as string)!))
      await c.close()
    }))
  }
  // Server-side closes follow the clients' within a few turns.
  await waitFor('only the keeper open', () => h.connections.size, (n) => n === 1, { timeoutMs: 5000, intervalMs: 10 })
  t.equal(closedOnes.length, CYCLES)
  const kept = await alive(closedOnes)
  t.ok(kept <= MAX_STALE, `the node still holds ${kept} of ${CYCLES} closed connections, at most the stale entries the schedule has not swept yet`)

  // Refreshes replace the entry rather than adding one each time. One
  // connection's entries hold nothing else alive, so this reads the schedule
  // itself, which keeps no count of its own.
  const entries = (): number => (h.expiry as unknown as { heap: unknown[] }).heap.length
  for (let i = 0; i < 200; i++) {
    const r = await keep.request('refresh', { token: userToken('keeper', 'keeper-session', { exp: Math.floor(Date.now() / 1000) + 3600 + i }) })
    t.equal(r.type, 'refreshed')
  }
  t.ok(entries() <= 2 * MAX_STALE + 1, `the schedule holds ${entries()} entries after 200 refreshes`)

  // And the live connection is still scheduled: it gets auth_expiring.
  const r = await keep.request('refresh', { token: userToken('keeper', 'keeper-session', { exp: Math.floor(Date.now() / 1000) + 2 }) })
  t.equal(r.type, 'refreshed')
  await keep.nextOfType('auth_expiring', 5000)
  await keep.closed
  t.equal(keep.closeInfo?.code, 4001, 'and is closed 4001 at exp')
})
