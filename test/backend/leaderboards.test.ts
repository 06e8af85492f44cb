// The leaderboards' contract (src/backend/leaderboards.ts) on memory, a
// standalone Redis and a Redis Cluster: what the dashboard's top users and
// top event types (src/admin/top.ts) rely on. Backends on one space stand for
// nodes of one cluster, each adding its own batches.
import t from 'tap'
import type { Ranked } from '../../src/backend/leaderboards.js'
import { forEachBackend } from '../helpers/backends.js'
import { waitFor } from '../helpers/wait.js'

const LIMITS = { keep: 1000, retainMs: 60_000 }
const counts = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o))
const names = (r: Ranked[]): string[] => r.map((x) => x.name)

forEachBackend(t, (t, space) => {
  t.test('batches from several nodes add up, per member, over the minutes read', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).leaderboards, (await sp.backend()).leaderboards]
    await a.add('events', 100, counts({ 'orders.created': 5, 'users.login': 2 }), LIMITS)
    await b.add('events', 100, counts({ 'orders.created': 3, 'billing.charged': 4 }), LIMITS)
    await a.add('events', 101, counts({ 'users.login': 10 }), LIMITS)
    await a.add('events', 100, counts({ 'users.login': 1 }), LIMITS)
    t.same(await b.top('events', [100], 10), [
      { name: 'orders.created', count: 8 },
      { name: 'billing.charged', count: 4 },
      { name: 'users.login', count: 3 },
    ], 'one minute: both nodes\' batches summed, highest first')
    t.same(await a.top('events', [100, 101], 10), [
      { name: 'users.login', count: 13 },
      { name: 'orders.created', count: 8 },
      { name: 'billing.charged', count: 4 },
    ], 'two minutes summed')
    t.same(await a.top('events', [101, 102, 99], 10), [{ name: 'users.login', count: 10 }], 'minutes with no counts add nothing')
    t.same(await a.top('events', [100, 101], 2), [{ name: 'users.login', count: 13 }, { name: 'orders.created', count: 8 }], 'the n highest only')
    t.same(await a.top('users', [100, 101], 10), [], 'another board is its own')
    t.same(await a.top('events', [], 10), [], 'no minutes: nothing')
    t.same(await a.top('events', [100], 0), [], 'n = 0: nothing')
  })

  t.test('equal counts rank by name, descending, on every backend', async (t) => {
    const sp = space(t)
    const a = (await sp.backend()).leaderboards
    await a.add('users', 7, counts({ alice: 2, carol: 2, bob: 2, dave: 5 }), LIMITS)
    t.same(names(await a.top('users', [7], 10)), ['dave', 'carol', 'bob', 'alice'])
  })

  t.test('a minute keeps only its `keep` highest members after each batch', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).leaderboards, (await sp.backend()).leaderboards]
    const keep3 = { keep: 3, retainMs: 60_000 }
    await a.add('users', 5, counts({ u1: 1, u2: 2, u3: 3, u4: 4, u5: 5 }), keep3)
    t.same(await b.top('users', [5], 10), [{ name: 'u5', count: 5 }, { name: 'u4', count: 4 }, { name: 'u3', count: 3 }], 'the two lowest were dropped')
    // A dropped member that comes back starts from its new counts.
    await b.add('users', 5, counts({ u1: 10 }), keep3)
    t.same(await a.top('users', [5], 10), [{ name: 'u1', count: 10 }, { name: 'u5', count: 5 }, { name: 'u4', count: 4 }])
    // Ties at the cut: the lowest name goes first, as Redis ranks them.
    await a.add('users', 6, counts({ x: 1, y: 1, z: 1, w: 1 }), keep3)
    t.same(names(await a.top('users', [6], 10)), ['z', 'y', 'x'])
    // Thousands of members in one batch stay bounded.
    const many = new Map(Array.from({ length: 5000 }, (_v, i) => [`m${i}`, i + 1] as const))
    await a.add('users', 8, many, { keep: 100, retainMs: 60_000 })
    const top = await b.top('users', [8], 1000)
    t.equal(top.length, 100, 'a batch of 5,000 members keeps 100')
    t.same(top[0], { name: 'm4999', count: 5000 })
    t.same(top[99], { name: 'm4900', count: 4901 })
  })

  t.test('a minute lapses retainMs after its last batch', async (t) => {
    const sp = space(t)
    const a = (await sp.backend()).leaderboards
    await a.add('events', 1, counts({ e: 1 }), { keep: 10, retainMs: 400 })
    await a.add('events', 2, counts({ e: 1 }), { keep: 10, retainMs: 60_000 })
    t.same(await a.top('events', [1, 2], 10), [{ name: 'e', count: 2 }])
    // A later batch of a minute renews its retention.
    await new Promise((resolve) => setTimeout(resolve, 250))
    await a.add('events', 1, counts({ e: 1 }), { keep: 10, retainMs: 400 })
    await new Promise((resolve) => setTimeout(resolve, 250))
    t.same(await a.top('events', [1], 10), [{ name: 'e', count: 2 }], 'still there 500 ms after its first batch: renewed by the second')
    await waitFor('minute 1 to lapse', async () => await a.top('events', [1, 2], 10), (r) => r[0]?.count === 1, { timeoutMs: 3000, intervalMs: 50 })
    t.same(await a.top('events', [1], 10), [], 'gone')
    t.same(await a.top('events', [2], 10), [{ name: 'e', count: 1 }], 'the other minute stays')
  })

  t.test('any id is a member; what the store loses is gone', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).leaderboards, (await sp.backend()).leaderboards]
    const odd = ['user with spaces', 'ünïcødé-ユーザー', '{top:users}:9', '*', '-inf', 'x'.repeat(256)]
    await a.add('users', 9, new Map(odd.map((n, i) => [n, i + 1])), LIMITS)
    t.same(new Set(names(await b.top('users', [9], 10))), new Set(odd), 'every member read back as written')
    await sp.loseData()
    t.same(await b.top('users', [9], 10), [], 'after the data is lost, nothing')
  })
})
