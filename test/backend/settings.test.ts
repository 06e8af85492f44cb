// The shared settings' contract (src/backend/settings.ts) on memory, a
// standalone Redis and a Redis Cluster: what nodes started without key
// material agree on (src/config/dev-keys.ts). The first writer of each field
// wins; the set lives as long as nodes keep adopting it.
import t from 'tap'
import { forEachBackend } from '../helpers/backends.js'
import { waitFor } from '../helpers/wait.js'

forEachBackend(t, (t, space) => {
  t.test('the first writer of each field wins; every node gets what is stored', async (t) => {
    const sp = space(t)
    const [a, b, c] = [(await sp.backend()).settings, (await sp.backend()).settings, (await sp.backend()).settings]
    t.same(await a.adopt('dev:keys', { jwtSecret: 'from-a', apiKey: 'key-a' }, 60_000), { jwtSecret: 'from-a', apiKey: 'key-a' }, 'the first node stores its own')
    t.same(await b.adopt('dev:keys', { jwtSecret: 'from-b', apiKey: 'key-b' }, 60_000), { jwtSecret: 'from-a', apiKey: 'key-a' }, 'the next adopts them')
    t.same(await c.adopt('dev:keys', { apiKey: 'key-c', extra: 'from-c' }, 60_000), { jwtSecret: 'from-a', apiKey: 'key-a', extra: 'from-c' }, 'a field not stored yet is added; the rest come back as stored')
    t.same(await b.adopt('other', { jwtSecret: 'from-b' }, 60_000), { jwtSecret: 'from-b' }, 'another name is another set')
  })

  t.test('the set lapses unless adopted again within its TTL', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).settings, (await sp.backend()).settings]
    await a.adopt('dev:keys', { apiKey: 'first' }, 600)
    // Adopted again before it lapses: it lives another TTL from then.
    await new Promise((resolve) => setTimeout(resolve, 400))
    t.same(await b.adopt('dev:keys', { apiKey: 'second' }, 600), { apiKey: 'first' })
    await new Promise((resolve) => setTimeout(resolve, 400))
    t.same(await b.adopt('dev:keys', { apiKey: 'second' }, 300), { apiKey: 'first' }, 'kept past the first TTL by the second adoption')
    await waitFor('the set to lapse', async () => await a.adopt('dev:keys', { apiKey: 'third' }, 100), (v) => v.apiKey === 'third', { timeoutMs: 3000, intervalMs: 400 })
    t.pass('once it lapsed, the next node to adopt stores its own')
  })
})
