// What a node remembers of revocations (src/auth/revocation.ts), in process:
// each until its TTL runs out, at most MAX_KNOWN_REVOCATIONS (the newest
// kept), only well-formed ones (control messages arrive as parsed JSON), and
// all of it written back by restore(). The cluster behaviour this serves
// (revocations surviving a loss of Redis's data) is in
// test/cluster/data-loss.test.ts.
import t from 'tap'
import { createRevocations, MAX_KNOWN_REVOCATIONS } from '../../src/auth/revocation.js'
import { MemoryRevocations } from '../../src/backend/revocations-memory.js'

const TTL = 3_600_000
const who = (userId: string, sessionId: string | null = null, issuedAt: number | null = Date.now() - 60_000) => ({ userId, sessionId, issuedAt })

t.test('bounded: past MAX_KNOWN_REVOCATIONS the oldest heard is forgotten first', async (t) => {
  const store = createRevocations(new MemoryRevocations(), TTL)
  const at = Date.now()
  for (let i = 0; i <= MAX_KNOWN_REVOCATIONS; i++) store.heard({ kind: 'session', sessionId: `s${i}`, at })
  t.equal(store.known(who('u', 's0')), null, 'the first of MAX + 1 is forgotten')
  t.equal(store.known(who('u', 's1')), 'session', 'the second is still known')
  t.equal(store.known(who('u', `s${MAX_KNOWN_REVOCATIONS}`)), 'session', 'and the last')
  t.equal(await store.restore(), MAX_KNOWN_REVOCATIONS, `restore writes back the ${MAX_KNOWN_REVOCATIONS} it knows`)
  t.equal(await store.check(who('u', 's0')), null, 'the forgotten one is not in the store either (it never was: only heard)')
  t.equal((await store.since(0)).length, MAX_KNOWN_REVOCATIONS, 'the log holds what was written back')
})

t.test('each until its TTL; a user revocation covers tokens issued up to its second', async (t) => {
  const store = createRevocations(new MemoryRevocations(), TTL)
  const now = Date.now()
  t.ok(store.heard({ kind: 'session', sessionId: 'expired', at: now - TTL - 1 }), 'an expired revocation is well-formed')
  t.equal(store.known(who('u', 'expired')), null, 'but not remembered')
  store.heard({ kind: 'user', userId: 'u1', at: now })
  t.equal(store.known(who('u1', 'any', now - 5000)), 'user', 'a token issued before is revoked')
  t.equal(store.known(who('u1', 'any', now + 2000)), null, 'one issued a second after is not')
  t.equal(store.known(who('u1', 'any', null)), 'user', 'one without iat is')
  store.heard({ kind: 'user', userId: 'u1', at: now - 60_000 })
  t.equal(store.known(who('u1', 'any', now - 5000)), 'user', 'an older revocation of the same user does not lower the newer one')
})

t.test('only well-formed revocations are remembered', async (t) => {
  const store = createRevocations(new MemoryRevocations(), TTL)
  for (const bad of [null, 42, 'u', [], {}, { kind: 'session', at: Date.now() }, { kind: 'user', userId: 5, at: Date.now() }, { kind: 'session', sessionId: 's', at: Number.NaN }, { kind: 'session', sessionId: 's', at: '1' }, { kind: 'other', userId: 'u', at: Date.now() }]) {
    t.equal(store.heard(bad), false, `refused: ${JSON.stringify(bad)}`)
  }
  t.equal(await store.restore(), 0, 'nothing to write back')
})
