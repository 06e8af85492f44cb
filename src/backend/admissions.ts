// Admission as the backend sees it: for each client connecting, the
// revocation check (src/backend/revocations.ts) and a slot in its IP's and
// its user's set (src/backend/slots.ts) with its record, for many clients at
// once. Each connection is one step, in the handshake's order: a revoked
// identity takes no slot (it would evict someone under evict-oldest), the
// IP's limit before the user's (evicting by IP would let one user close
// another's connection), and a connection the user limit refuses holds no IP
// slot after (concurrent admissions may see it held meanwhile, as they
// always could). On one Redis server all of it is one script call for the whole
// batch; where the keys live on different servers (a Redis Cluster), and on
// memory, it is the same steps over the two stores, every connection's step
// in flight together, so a batch costs a few round trips, not a few per
// connection. Memory (admissions-memory.ts) and Redis (admissions-redis.ts)
// run test/backend/admissions.test.ts.

import type { RevocationStore, Revoked, Who } from './revocations.js'
import type { ConnectionRecord, Holder, SlotStore } from './slots.js'

export interface Entrant {
  record: ConnectionRecord
  /** what the revocations are checked against; null: nothing to check (an anonymous guest) */
  who: Who | null
}

export interface EntryPolicy { perIp: number, perUser: number, evictOldest: boolean }

export type Entry =
  | { ok: true, evicted: Holder | null }
  | { ok: false, revoked: Revoked }
  | { ok: false, scope: 'ip' | 'user' }

export interface AdmissionStore {
  /**
   * Admits each entrant or says why not, in one batch; the verdicts are in
   * the entrants' order. Entrants of one batch are admitted as concurrent
   * admissions are, each set's steps in the batch's order: no limit is ever
   * passed, and under evict-oldest the oldest holder goes first. Rejects for
   * the whole batch on a backend fault.
   */
  admit (entrants: readonly Entrant[], policy: EntryPolicy): Promise<Entry[]>
}

/**
 * The steps over the two stores (memory, and a Redis Cluster whose keys live
 * apart), each step for the whole batch at once and issued in the batch's
 * order: commands on one key go to one server over one connection, so each
 * set sees the batch in order, whichever server answers first.
 */
export async function admitInSteps (revocations: RevocationStore, slots: SlotStore, entrants: readonly Entrant[], policy: EntryPolicy): Promise<Entry[]> {
  const entries: Array<Entry | undefined> = new Array(entrants.length)
  const revoked = await Promise.all(entrants.map(async (e) => e.who === null ? null : await revocations.check(e.who)))
  const open = (): number[] => entrants.flatMap((_e, i) => entries[i] === undefined ? [i] : [])
  revoked.forEach((r, i) => { if (r !== null) entries[i] = { ok: false, revoked: r } })
  const byIp = open()
  const ips = await Promise.all(byIp.map(async (i) => { const r = entrants[i]!.record; return await slots.admit('ip', r.ip, r, policy.perIp, false) }))
  byIp.forEach((i, n) => { if (!ips[n]!.ok) entries[i] = { ok: false, scope: 'ip' } })
  const byUser = open()
  const users = await Promise.allSettled(byUser.map(async (i) => { const r = entrants[i]!.record; return await slots.admit('user', r.userId, r, policy.perUser, policy.evictOldest) }))
  // Given back: a connection the user limit refuses (or that a fault left unknown) holds no IP slot.
  const giveBack = byUser.filter((_i, n) => { const u = users[n]!; return u.status === 'rejected' || !u.value.ok })
  await Promise.all(giveBack.map(async (i) => { const r = entrants[i]!.record; await slots.remove('ip', r.ip, r) }))
  const fault = users.find((u) => u.status === 'rejected')
  if (fault !== undefined) {
    // The others of the batch hold slots nobody will use: given back before the fault is reported.
    await Promise.all(byUser.filter((i) => !giveBack.includes(i)).map(async (i) => { const r = entrants[i]!.record; await Promise.all([slots.remove('ip', r.ip, r), slots.remove('user', r.userId, r)]) })).catch(() => {})
    throw (fault as PromiseRejectedResult).reason
  }
  byUser.forEach((i, n) => {
    const u = (users[n] as PromiseFulfilledResult<Awaited<ReturnType<SlotStore['admit']>>>).value
    entries[i] = u.ok ? { ok: true, evicted: u.evicted } : { ok: false, scope: 'user' }
  })
  // The records of the batch's admitted connections: one write per node.
  await slots.putRecords(entrants.filter((_e, i) => entries[i]!.ok).map((e) => e.record))
  return entries as Entry[]
}
