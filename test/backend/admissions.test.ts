// The batched admission's contract (src/backend/admissions.ts) on memory, a
// standalone Redis (one script call per batch) and a Redis Cluster (the same
// steps over keys that live apart): in a batch, each connection gets the
// verdict it would get alone, in order; revoked identities take no slot;
// the limits hold across nodes admitting at once.
import t from 'tap'
import type { Entrant, EntryPolicy } from '../../src/backend/admissions.js'
import type { ConnectionRecord, Holder } from '../../src/backend/slots.js'
import { forEachBackend } from '../helpers/backends.js'

const HOUR = 3_600_000
const rec = (serverId: string, connectionId: string, userId: string, ip = '203.0.113.7'): ConnectionRecord =>
  ({ serverId, connectionId, userId, sessionId: `${connectionId}-s`, ip, endpoint: 'events', openedAt: Date.now() })
const entrant = (r: ConnectionRecord, issuedAt: number | null = Date.now() - 60_000, sessionId: string | null = r.sessionId): Entrant =>
  ({ record: r, who: { userId: r.userId, sessionId, issuedAt } })
const policy = (perIp: number, perUser: number, evictOldest = false): EntryPolicy => ({ perIp, perUser, evictOldest })
const holder = (r: ConnectionRecord): Holder => ({ serverId: r.serverId, connectionId: r.connectionId })
const tick = async (): Promise<void> => await new Promise((resolve) => setTimeout(resolve, 3))

forEachBackend(t, (t, space) => {
  t.test('a batch admits up to each limit; refused connections hold nothing', async (t) => {
    const b = await space(t).backend()
    const batch = [rec('n1', 'a1', 'u1'), rec('n1', 'a2', 'u1'), rec('n1', 'a3', 'u1'), rec('n1', 'c1', 'u3', '198.51.100.1')]
    const entries = await b.admissions.admit(batch.map((r) => entrant(r)), policy(3, 2))
    t.same(entries, [
      { ok: true, evicted: null },
      { ok: true, evicted: null },
      { ok: false, scope: 'user' },
      { ok: true, evicted: null },
    ], 'the third of u1 is over the user limit; another IP is apart')
    t.same((await b.slots.holders('user', 'u1')).map((h) => h.connectionId).sort(), ['a1', 'a2'])
    t.same((await b.slots.holders('ip', '203.0.113.7')).map((h) => h.connectionId).sort(), ['a1', 'a2'], 'the refused one gave its IP slot back')
    t.same((await b.slots.records('n1')).map((r) => r.connectionId).sort(), ['a1', 'a2', 'c1'], 'a record per admitted connection, none for the refused')
    t.same(await b.admissions.admit([entrant(rec('n1', 'b1', 'u2'))], policy(3, 2)), [{ ok: true, evicted: null }], 'the IP\'s last slot')
    t.same(await b.admissions.admit([entrant(rec('n1', 'd1', 'u4'))], policy(3, 2)), [{ ok: false, scope: 'ip' }], 'the IP is full now')
    t.same(await b.slots.holders('user', 'u4'), [], 'and the IP refusal took no user slot')
    t.same(await b.admissions.admit([], policy(3, 2)), [], 'an empty batch is no call')
  })

  t.test('a batch run twice (a command resent after a dropped connection) gets the same verdicts and holds one slot each', async (t) => {
    const b = await space(t).backend()
    const batch = [rec('n1', 'r1', 'w1'), rec('n1', 'r2', 'w2'), rec('n1', 'r3', 'w3'), rec('n1', 'r4', 'w2', '198.51.100.4'), rec('n1', 'r5', 'w4')].map((r) => entrant(r))
    const first = await b.admissions.admit(batch, policy(3, 1))
    t.same(first, [{ ok: true, evicted: null }, { ok: true, evicted: null }, { ok: true, evicted: null }, { ok: false, scope: 'user' }, { ok: false, scope: 'ip' }], 'one per user, three for the IP')
    t.same(await b.admissions.admit(batch, policy(3, 1)), first, 'the same again: their own slots are not counted against them')
    t.same((await b.slots.holders('ip', '203.0.113.7')).map((h) => h.connectionId).sort(), ['r1', 'r2', 'r3'], 'one IP slot each')
    t.same((await b.slots.holders('user', 'w2')).map((h) => h.connectionId), ['r2'])
    // Under evict-oldest too: a holder already in the set evicts nobody.
    const e = [rec('n1', 'e1', 'ev'), rec('n1', 'e2', 'ev')].map((r) => entrant(r, Date.now() - 60_000, null))
    t.same(await b.admissions.admit(e, policy(100, 2, true)), [{ ok: true, evicted: null }, { ok: true, evicted: null }])
    t.same(await b.admissions.admit(e, policy(100, 2, true)), [{ ok: true, evicted: null }, { ok: true, evicted: null }], 'nobody evicted')
    t.same((await b.slots.holders('user', 'ev')).map((h) => h.connectionId).sort(), ['e1', 'e2'])
  })

  t.test('revoked sessions and users are refused before any slot is taken', async (t) => {
    const b = await space(t).backend()
    const at = Math.floor(Date.now() / 1000) * 1000 + 500
    await b.revocations.revoke({ kind: 'session', sessionId: 'gone', at }, HOUR)
    await b.revocations.revoke({ kind: 'user', userId: 'out', at }, HOUR)
    const entries = await b.admissions.admit([
      entrant(rec('n1', 'c1', 'u1'), at - 10_000, 'gone'),
      entrant(rec('n1', 'c2', 'out'), at - 10_000),
      entrant(rec('n1', 'c3', 'out'), at + 100), // issued in the revocation's second: revoked too
      entrant(rec('n1', 'c4', 'out'), at + 1000),
      entrant(rec('n1', 'c5', 'out'), null),
      { record: rec('n1', 'c6', 'out'), who: null },
      entrant(rec('n1', 'c7', 'u2'), at - 10_000, null),
    ], policy(100, 100))
    t.same(entries, [
      { ok: false, revoked: 'session' },
      { ok: false, revoked: 'user' },
      { ok: false, revoked: 'user' },
      { ok: true, evicted: null },
      { ok: false, revoked: 'user' },
      { ok: true, evicted: null },
      { ok: true, evicted: null },
    ], 'session, user up to its second, a token without iat; nothing checked for a guest')
    t.same((await b.slots.holders('ip', '203.0.113.7')).map((h) => h.connectionId).sort(), ['c4', 'c6', 'c7'], 'the revoked hold no slot')
  })

  t.test('evict-oldest names the oldest holder, within a batch and across nodes', async (t) => {
    const sp = space(t)
    const [a, b] = [await sp.backend(), await sp.backend()]
    const old = rec('n1', 'old', 'e')
    t.same(await a.admissions.admit([entrant(old)], policy(100, 2, true)), [{ ok: true, evicted: null }])
    await tick()
    const mid = rec('n2', 'mid', 'e')
    const n1 = rec('n2', 'new1', 'e')
    const n2 = rec('n2', 'new2', 'e')
    const entries = await b.admissions.admit([entrant(mid), entrant(n1), entrant(n2)], policy(100, 2, true))
    t.equal(entries[0]!.ok, true)
    t.same(entries[1], { ok: true, evicted: holder(old) }, 'the oldest, on the other node, goes first')
    t.same(entries[2], { ok: true, evicted: holder(mid) }, 'then the next oldest')
    t.same((await a.slots.holders('user', 'e')).map((h) => h.connectionId).sort(), ['new1', 'new2'])
  })

  t.test('batches on several nodes at once never pass a limit', async (t) => {
    const sp = space(t)
    const nodes = await Promise.all([sp.backend(), sp.backend(), sp.backend()])
    const results = await Promise.all(nodes.map(async (b, n) =>
      await b.admissions.admit(Array.from({ length: 10 }, (_v, i) => entrant(rec(`n${n}`, `c${n}-${i}`, `u${i}`, '198.51.100.9'))), policy(7, 100))))
    t.equal(results.flat().filter((e) => e.ok).length, 7, 'seven of thirty admitted under the IP limit')
    t.equal((await nodes[0]!.slots.holders('ip', '198.51.100.9')).length, 7)
  })

  t.test('a batch larger than one script call admits every connection', async (t) => {
    const b = await space(t).backend()
    const batch = Array.from({ length: 600 }, (_v, i) => entrant(rec('n1', `c${i}`, `u${i % 300}`, `10.0.${i % 3}.1`)))
    const entries = await b.admissions.admit(batch, policy(1000, 1))
    t.equal(entries.filter((e) => e.ok).length, 300, 'one per user')
    t.same(entries.slice(300).filter((e) => e.ok), [], 'the second of each user, in the later calls, refused')
    t.equal((await b.slots.records('n1')).length, 300)
  })
})
