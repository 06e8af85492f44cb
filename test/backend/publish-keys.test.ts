// The idempotency keys of client publishes (src/backend/publish-keys.ts) on
// memory, a standalone Redis and a Redis Cluster: the first claim of a key
// wins cluster-wide; a settled key answers with its receipt until its TTL; a
// pending one lapses so a dead publisher does not block retries; keys are per user.
import t from 'tap'
import { forEachBackend } from '../helpers/backends.js'
import { waitFor } from '../helpers/wait.js'

forEachBackend(t, (t, space) => {
  t.test('one claim wins across backends; the receipt answers the retries', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).publishKeys, (await sp.backend()).publishKeys]
    const claims = await Promise.all([a.claim('agent-1', 'k1', 30_000), b.claim('agent-1', 'k1', 30_000), a.claim('agent-1', 'k1', 30_000)])
    t.equal(claims.filter((c) => c.state === 'new').length, 1, 'exactly one of three concurrent claims is new')
    t.equal(claims.filter((c) => c.state === 'pending').length, 2, 'the others see it pending')
    await a.settle('agent-1', 'k1', '{"id":"e1"}', 60_000)
    t.same(await b.claim('agent-1', 'k1', 30_000), { state: 'done', receipt: '{"id":"e1"}' }, 'a retry on another backend gets the receipt')
    t.same(await b.claim('agent-2', 'k1', 30_000), { state: 'new' }, 'the same key of another user is another key')
  })

  t.test('a released key may be claimed again at once; a pending one lapses; a receipt expires', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).publishKeys, (await sp.backend()).publishKeys]
    t.same(await a.claim('u', 'failed', 30_000), { state: 'new' })
    await a.release('u', 'failed')
    t.same(await b.claim('u', 'failed', 30_000), { state: 'new' }, 'released: the retry publishes')
    t.same(await a.claim('u', 'stuck', 300), { state: 'new' })
    t.same(await b.claim('u', 'stuck', 300), { state: 'pending' })
    await waitFor('the pending claim to lapse', async () => await b.claim('u', 'stuck', 30_000), (c) => c.state === 'new', { timeoutMs: 3000, intervalMs: 100 })
    t.pass('a claim nobody settled lapses')
    t.same(await a.claim('u', 'short', 30_000), { state: 'new' })
    await a.settle('u', 'short', 'r', 300)
    await waitFor('the receipt to expire', async () => await b.claim('u', 'short', 30_000), (c) => c.state === 'new', { timeoutMs: 3000, intervalMs: 100 })
    t.pass('a receipt lasts its TTL, no longer')
  })
})
