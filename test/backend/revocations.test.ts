// The durable revocations' contract (src/backend/revocations.ts) on memory,
// a standalone Redis and a Redis Cluster: what src/auth/revocation.ts builds
// on (a node's memory of revocations, the log sync, the write-back after a
// loss of data). Backends on one space stand for nodes of one cluster.
import t from 'tap'
import type { Revocation } from '../../src/backend/revocations.js'
import { forEachBackend } from '../helpers/backends.js'
import { waitFor } from '../helpers/wait.js'

const HOUR = 3_600_000
const who = (userId: string, sessionId: string | null, issuedAt: number | null) => ({ userId, sessionId, issuedAt })

forEachBackend(t, (t, space) => {
  t.test('a session revocation refuses that session, on every node', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).revocations, (await sp.backend()).revocations]
    const at = Date.now()
    await a.revoke({ kind: 'session', sessionId: 's1', at }, HOUR)
    t.equal(await b.check(who('u', 's1', at - 1000)), 'session')
    t.equal(await b.check(who('u', 's1', at + 5000)), 'session', 'whenever its token was issued')
    t.equal(await b.check(who('u', 's2', at - 1000)), null, 'another session of the same user is not')
    t.equal(await b.check(who('u', null, at - 1000)), null, 'nor a token without a session')
  })

  t.test('a user revocation covers tokens issued up to its second, and tokens without iat', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).revocations, (await sp.backend()).revocations]
    const at = Math.floor(Date.now() / 1000) * 1000 + 500 // mid-second
    await a.revoke({ kind: 'user', userId: 'u1', at }, HOUR)
    t.equal(await b.check(who('u1', 'any', at - 10_000)), 'user', 'issued before')
    t.equal(await b.check(who('u1', 'any', at + 400)), 'user', 'issued later in the same second')
    t.equal(await b.check(who('u1', 'any', at + 1000)), null, 'issued in the next second')
    t.equal(await b.check(who('u1', null, null)), 'user', 'no iat at all')
    t.equal(await b.check(who('u2', null, at - 10_000)), null, 'another user is not')
  })

  t.test('the latest revocation of a user wins; an earlier one written back never lowers it nor shortens its life', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).revocations, (await sp.backend()).revocations]
    const now = Date.now()
    await a.revoke({ kind: 'user', userId: 'u', at: now }, 2000)
    // Another node writes back an older revocation of the same user with what is left of its TTL.
    await b.revoke({ kind: 'user', userId: 'u', at: now - 20_000 }, 300)
    t.equal(await a.check(who('u', null, now - 10_000)), 'user', 'a token issued between the two is still revoked')
    await new Promise((resolve) => setTimeout(resolve, 600))
    t.equal(await a.check(who('u', null, now - 10_000)), 'user', 'after the shorter TTL ran out too')
    // A later one raises it.
    await b.revoke({ kind: 'user', userId: 'u', at: now + 10_000 }, 2000)
    t.equal(await a.check(who('u', null, now + 5000)), 'user', 'a token issued before the later revocation')
  })

  t.test('revocations expire with their TTL; the log is pruned by time', async (t) => {
    const sp = space(t)
    const r = (await sp.backend()).revocations
    const at = Date.now()
    await r.revoke({ kind: 'session', sessionId: 'short', at }, 300)
    await r.revoke({ kind: 'user', userId: 'short-u', at }, 300)
    await r.revoke({ kind: 'session', sessionId: 'long', at }, HOUR)
    t.equal(await r.check(who('short-u', 'short', at - 1000)), 'session')
    await waitFor('the short ones to expire', async () => await r.check(who('short-u', 'short', at - 1000)), (v) => v === null, { timeoutMs: 3000 })
    t.equal(await r.check(who('x', 'long', at)), 'session', 'the long one stays')
    t.equal((await r.since(at)).length, 3, 'the log keeps entries until pruned')
    await r.prune(at + 1)
    t.same(await r.since(0), [], 'pruning drops entries recorded before the cutoff')
  })

  t.test('the log: since and newest, oldest first', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).revocations, (await sp.backend()).revocations]
    const base = Date.now() - 10_000
    const written: Revocation[] = []
    for (let i = 0; i < 6; i++) {
      const r: Revocation = i % 2 === 0 ? { kind: 'session', sessionId: `s${i}`, at: base + i * 100 } : { kind: 'user', userId: `u${i}`, at: base + i * 100 }
      written.push(r)
    }
    // Written out of order, by two nodes.
    for (const r of [...written].reverse()) await (r.at % 200 === 0 ? a : b).revoke(r, HOUR)
    t.same(await a.since(base), written, 'every entry, oldest first')
    t.same(await b.since(base + 300), written.slice(3), 'from a time on, that time included')
    t.same(await a.newest(base, 2), written.slice(4), 'the newest two, oldest first')
    t.same(await a.newest(base + 200, 100), written.slice(3), 'after a time, that time excluded')
  })
})
