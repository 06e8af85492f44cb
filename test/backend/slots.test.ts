// The connection slots' contract (src/backend/slots.ts) on memory, a
// standalone Redis and a Redis Cluster: the primitives the connection limits
// (src/limits/connection-limiter.ts) are built from, each atomic per set.
// Backends on one space stand for nodes of one cluster.
import t from 'tap'
import type { ConnectionRecord, Holder } from '../../src/backend/slots.js'
import { forEachBackend } from '../helpers/backends.js'

const holder = (serverId: string, connectionId: string): Holder => ({ serverId, connectionId })
const record = (serverId: string, connectionId: string, userId: string, openedAt: number): ConnectionRecord =>
  ({ serverId, connectionId, userId, sessionId: `${userId}-s`, ip: '203.0.113.9', endpoint: 'events', openedAt })
const tick = async (): Promise<void> => await new Promise((resolve) => setTimeout(resolve, 3))

forEachBackend(t, (t, space) => {
  t.test('admits up to the limit and refuses past it; a removed slot is free again', async (t) => {
    const slots = (await space(t).backend()).slots
    for (const id of ['c1', 'c2', 'c3']) {
      t.same(await slots.admit('user', 'u', holder('n1', id), 3, false), { ok: true, evicted: null }, `${id} admitted`)
      await tick() // distinct open times, so "oldest first" is defined
    }
    t.same(await slots.admit('user', 'u', holder('n2', 'c4'), 3, false), { ok: false }, 'the fourth is refused')
    t.same(await slots.holders('user', 'u'), [holder('n1', 'c1'), holder('n1', 'c2'), holder('n1', 'c3')], 'holders, oldest first; the refused one holds nothing')
    t.same(await slots.holders('ip', 'u'), [], 'an IP set of the same key is another set')
    await slots.remove('user', 'u', holder('n1', 'c2'))
    t.same(await slots.admit('user', 'u', holder('n2', 'c4'), 3, false), { ok: true, evicted: null }, 'admitted once a slot is free')
    t.same(await slots.holders('user', 'u'), [holder('n1', 'c1'), holder('n1', 'c3'), holder('n2', 'c4')])
    await slots.remove('user', 'u', holder('n9', 'unknown'))
    t.equal((await slots.holders('user', 'u')).length, 3, 'removing a holder that has no slot changes nothing')
  })

  t.test('concurrent admissions on several nodes never pass the limit', async (t) => {
    const sp = space(t)
    const nodes = await Promise.all([sp.backend(), sp.backend(), sp.backend()])
    const attempts = nodes.flatMap((b, n) => Array.from({ length: 10 }, (_v, i) => b.slots.admit('ip', '198.51.100.1', holder(`n${n}`, `c${i}`), 5, false)))
    const results = await Promise.all(attempts)
    t.equal(results.filter((r) => r.ok).length, 5, 'five of thirty admitted')
    t.equal((await nodes[0]!.slots.holders('ip', '198.51.100.1')).length, 5, 'and five hold a slot')
  })

  t.test('evict-oldest: a full set takes the oldest holder\'s slot and names it', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).slots, (await sp.backend()).slots]
    await a.admit('user', 'e', holder('n1', 'old'), 2, true)
    await tick()
    await b.admit('user', 'e', holder('n2', 'mid'), 2, true)
    await tick()
    t.same(await a.admit('user', 'e', holder('n1', 'new'), 2, true), { ok: true, evicted: holder('n1', 'old') }, 'the oldest is evicted, wherever it is held')
    t.same(await b.holders('user', 'e'), [holder('n2', 'mid'), holder('n1', 'new')])
    await tick()
    t.same(await b.admit('user', 'e', holder('n2', 'newer'), 2, true), { ok: true, evicted: holder('n2', 'mid') })
  })

  t.test('addUnder trims from the end the policy gives up, whatever the order of writing', async (t) => {
    const slots = (await space(t).backend()).slots
    const at = Date.now() - 60_000
    // Refuse (keepNewest false): the first three opened stay, later ones are trimmed.
    t.same(await slots.addUnder('user', 'r', holder('n1', 'c3'), at + 3, 3, false), [])
    t.same(await slots.addUnder('user', 'r', holder('n2', 'c5'), at + 5, 3, false), [])
    t.same(await slots.addUnder('user', 'r', holder('n1', 'c1'), at + 1, 3, false), [])
    t.same(await slots.addUnder('user', 'r', holder('n2', 'c4'), at + 4, 3, false), [holder('n2', 'c5')], 'the newest goes')
    t.same(await slots.addUnder('user', 'r', holder('n1', 'c2'), at + 2, 3, false), [holder('n2', 'c4')], 'the newest again')
    t.same(await slots.holders('user', 'r'), [holder('n1', 'c1'), holder('n1', 'c2'), holder('n1', 'c3')], 'what refuse would have kept')
    // Evict-oldest (keepNewest): the last three opened stay.
    for (const [id, dt] of [['c3', 3], ['c1', 1], ['c5', 5]] as const) await slots.addUnder('user', 'k', holder('n1', id), at + dt, 3, true)
    t.same(await slots.addUnder('user', 'k', holder('n1', 'c4'), at + 4, 3, true), [holder('n1', 'c1')], 'the oldest goes')
    t.same(await slots.addUnder('user', 'k', holder('n1', 'c2'), at + 2, 3, true), [holder('n1', 'c2')], 'one older than all kept goes at once')
    t.same(await slots.holders('user', 'k'), [holder('n1', 'c3'), holder('n1', 'c4'), holder('n1', 'c5')])
    // Two at the same time: ordered by member, as a sorted set orders ties.
    await slots.addUnder('ip', 'tie', holder('n1', 'b'), at, 1, false)
    t.same(await slots.addUnder('ip', 'tie', holder('n1', 'a'), at, 1, false), [holder('n1', 'b')], 'a tie keeps the lower member')
    t.same(await slots.addUnder('ip', 'tie', holder('n1', 'a'), at, 1, false), [], 'writing a member back twice is no change')
  })

  t.test('records per node: put, read all or some, drop one, drop the node', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).slots, (await sp.backend()).slots]
    const r1 = record('n1', 'c1', 'u1', 1000)
    const r2 = record('n1', 'c2', 'u2', 2000)
    const r3 = record('n2', 'c3', 'u1', 3000)
    await Promise.all([a.putRecords([r1, r3]), b.putRecords([r2]), a.putRecords([])]) // one call may hold several nodes' records
    t.same((await b.records('n1')).sort((x, y) => x.openedAt - y.openedAt), [r1, r2], 'every record of n1, from another node')
    t.same(await b.records('n1', ['c2', 'missing', 'c1']), [r2, r1], 'the ones asked for that exist')
    t.same(await b.records('n1', []), [])
    t.same(await a.records('nobody'), [])
    await a.dropRecord(holder('n1', 'c1'))
    t.same(await b.records('n1'), [r2])
    await a.noteEviction({ serverId: 'n1', connectionId: 'c2', cause: 'replaced' })
    await b.dropNode('n1')
    t.same(await a.records('n1'), [], 'dropping the node drops its records')
    t.same(await a.takeEvictions('n1'), [], 'and its eviction list')
    t.same(await a.records('n2'), [r3], 'other nodes keep theirs')
  })

  t.test('eviction lists: noted by any node, taken once by the holder\'s node, causes kept', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).slots, (await sp.backend()).slots]
    await a.noteEviction({ serverId: 'n2', connectionId: 'c1', cause: 'replaced' })
    await a.noteEviction({ serverId: 'n2', connectionId: 'c2', cause: 'over-limit' })
    await a.noteEviction({ serverId: 'n3', connectionId: 'c9', cause: 'replaced' })
    const taken = await b.takeEvictions('n2')
    t.same(taken.sort((x, y) => x.connectionId.localeCompare(y.connectionId)), [
      { serverId: 'n2', connectionId: 'c1', cause: 'replaced' },
      { serverId: 'n2', connectionId: 'c2', cause: 'over-limit' },
    ], 'the node\'s evictions with their causes')
    t.same(await b.takeEvictions('n2'), [], 'taking them cleared the list')
    t.same(await b.takeEvictions('n3'), [{ serverId: 'n3', connectionId: 'c9', cause: 'replaced' }], 'another node\'s list is its own')
  })
})
