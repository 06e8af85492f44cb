// The rate store's contract (src/backend/rates.ts) on memory, a standalone
// Redis and a Redis Cluster: budgets per key shared by every node, what the
// message limits (src/limits/message-limiter.ts) count client frames with.
// On Redis, a Redis that stops answering loosens the budget to per node
// (the insurance limiter) rather than hold anything up.
import { Redis } from 'ioredis'
import t from 'tap'
import type { RateLimit } from '../../src/backend/rates.js'
import { RATE_TIMEOUT_MS } from '../../src/backend/rates-redis.js'
import { forEachBackend } from '../helpers/backends.js'

forEachBackend(t, (t, space, kind) => {
  t.test('a budget per key: within it 0, past it the wait until the window lets one through', async (t) => {
    const rates = (await space(t).backend()).rates
    const l = rates.limit('frames', 3, 60)
    for (let i = 0; i < 3; i++) t.equal(await l.consume('k'), 0, `action ${i + 1} is within the budget`)
    const wait = await l.consume('k')
    t.ok(wait > 0 && wait <= 60_000, `the fourth waits ${wait} ms, at most the window`)
    t.equal(await l.consume('other'), 0, 'another key has a budget of its own')
    t.equal(await rates.limit('other-name', 3, 60).consume('k'), 0, 'and so has the same key under another name')
  })

  t.test('every node counts into the same budget', async (t) => {
    const sp = space(t)
    const nodes = await Promise.all([sp.backend(), sp.backend()])
    const [a, b] = nodes.map((n) => n.rates.limit('frames', 4, 60)) as [RateLimit, RateLimit]
    const within = []
    for (let i = 0; i < 4; i++) within.push(await (i % 2 === 0 ? a : b).consume('shared'))
    t.same(within, [0, 0, 0, 0], 'four actions over two nodes')
    t.ok(await a.consume('shared') > 0, 'the fifth is refused on A')
    t.ok(await b.consume('shared') > 0, 'and on B')
  })

  t.test('the budget comes back when its window ends', async (t) => {
    const l = (await space(t).backend()).rates.limit('short', 1, 1)
    t.equal(await l.consume('k'), 0)
    const wait = await l.consume('k')
    t.ok(wait > 0 && wait <= 1000, `refused for ${wait} ms`)
    await new Promise((resolve) => setTimeout(resolve, wait + 50))
    t.equal(await l.consume('k'), 0, 'allowed again after that')
  })

  t.test('actions asked in one turn are each counted, the same key as often as it was asked', async (t) => {
    const sp = space(t)
    const b = await sp.backend()
    const frames = b.rates.limit('turn', 3, 60)
    const ips = b.rates.limit('turn-ip', 3, 60)
    const stats = kind === 'redis' ? new Redis(sp.redis!.url) : null
    t.teardown(() => stats?.disconnect())
    const scriptCalls = async (): Promise<number> => [...(await stats!.info('commandstats')).matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0)
    await frames.consume('warm-up') // the script loaded: a first EVALSHA may be refused and sent again as EVAL
    const before = stats === null ? 0 : await scriptCalls()
    const got = await Promise.all([...Array.from({ length: 4 }, async () => await frames.consume('k')), ips.consume('k'), frames.consume('other')])
    if (stats !== null) t.equal(await scriptCalls() - before, 1, 'one script call on Redis for the turn')
    t.same(got.slice(0, 4).map((w) => w === 0), [true, true, true, false], 'the same key four times in a turn: three within the budget, the fourth refused')
    t.same(got.slice(4), [0, 0], 'the same key under another name, and another key, count on their own')
  })

  if (kind === 'redis') {
    t.test('Redis paused: each node answers within the timeout, counting on its own with the same budget', async (t) => {
      const sp = space(t)
      const nodes = await Promise.all([sp.backend(), sp.backend()])
      const [a, b] = nodes.map((n) => n.rates.limit('frames', 3, 60)) as [RateLimit, RateLimit]
      t.equal(await a.consume('p'), 0, 'one counted in Redis before the pause')
      sp.redis!.pause()
      t.teardown(() => sp.redis!.resume())
      let slowest = 0
      const drive = async (l: RateLimit, n: number): Promise<number[]> => {
        const out: number[] = []
        for (let i = 0; i < n; i++) {
          const started = Date.now()
          out.push(await l.consume('p'))
          slowest = Math.max(slowest, Date.now() - started)
        }
        return out
      }
      const onA = await drive(a, 4)
      const onB = await drive(b, 4)
      t.same(onA.map((w) => w === 0), [true, true, true, false], 'A serves a full budget of its own, then refuses')
      t.same(onB.map((w) => w === 0), [true, true, true, false], 'B, counting separately, serves its own too')
      t.ok(slowest < RATE_TIMEOUT_MS + 400, `no action waited for Redis past the timeout (slowest ${slowest} ms)`)
    })
  }
})
