import type { AdmissionStore, Entrant, Entry } from '../backend/admissions.js'
import type { Revoked, Who } from '../backend/revocations.js'
import { memberOf, type ConnectionRecord, type Eviction, type Holder, type SlotStore } from '../backend/slots.js'

// Cluster-wide connection limits: at most MAX_CONNECTIONS_PER_IP open
// connections per client address and MAX_CONNECTIONS_PER_USER per user, on
// every node together. Each open connection holds a slot in its user's and
// its IP's set (src/backend/slots.ts), taken atomically per set, so
// concurrent connects on several nodes can never pass a limit; the slot names
// the node that holds it, so a dead node's share can be reclaimed. Each node
// also keeps a record per connection: the index for admin listings and for
// reclaiming.
//
// Connections asking in one event-loop turn are admitted together: one
// batch (src/backend/admissions.ts) carries every one's revocation check and
// slots, one Redis call on a standalone server where it was five round trips
// each. A reconnect storm's thousands of handshakes then cost Redis a call
// per turn, and the wait for it is one round trip, not a queue of them.

export type { ConnectionRecord, Eviction, EvictionCause, Holder } from '../backend/slots.js'

export type Admission =
  | { ok: true, evicted: Holder | null }
  | { ok: false, scope: 'ip' | 'user', limit: number }
  | { ok: false, revoked: Revoked }

export interface LimitPolicy {
  perIp: number
  perUser: number
  evictOldest: boolean
}

export interface ConnectionLimiter {
  /**
   * Takes a connection's slots unless `who` (null: nothing to check, a
   * guest) is revoked in the store or a limit is reached. Batched with the
   * other acquires of the same event-loop turn.
   */
  acquire (rec: ConnectionRecord, who: Who | null): Promise<Admission>
  release (rec: ConnectionRecord): Promise<void>
  /** the records of a user's open connections on every node, oldest first */
  connectionsOf (userId: string): Promise<ConnectionRecord[]>
  /**
   * Writes this node's records back after Redis lost its data (or the node
   * was wrongly reclaimed), under the limits: connections admitted meanwhile
   * may have filled them. Each set keeps the members its policy would have
   * kept had the data never been lost (the oldest under `refuse` and for IPs,
   * the newest under `evict-oldest`); the ones pushed out, on any node, are
   * returned and put on their node's eviction list, to be closed.
   */
  reassert (recs: ConnectionRecord[]): Promise<Eviction[]>
  /**
   * Connections of this node that other nodes evicted and that are still to
   * be closed here; taking them clears the list. The eviction itself travels
   * over pub/sub, which loses messages while a subscriber reconnects: this
   * list is what a node that missed one reads.
   */
  takeEvictions (serverId: string): Promise<Eviction[]>
  /**
   * Frees every slot a dead node held (only those opened before
   * `openedBefore`, when given); returns how many connections it had.
   */
  reclaim (serverId: string, openedBefore?: number): Promise<number>
}

interface Waiting { entrant: Entrant, resolve: (a: Admission) => void, reject: (err: unknown) => void }

export function createConnectionLimiter (slots: SlotStore, admissions: AdmissionStore, policy: LimitPolicy): ConnectionLimiter {
  let waiting: Waiting[] = []
  const verdict = async (entry: Entry): Promise<Admission> => {
    if (entry.ok) {
      // Durable beside the pub/sub message: the holder's node reads it if it missed that.
      if (entry.evicted !== null) await slots.noteEviction({ ...entry.evicted, cause: 'replaced' }).catch(() => {})
      return entry
    }
    if ('revoked' in entry) return entry
    return { ok: false, scope: entry.scope, limit: entry.scope === 'ip' ? policy.perIp : policy.perUser }
  }
  const flush = (): void => {
    const batch = waiting
    waiting = []
    admissions.admit(batch.map((w) => w.entrant), policy).then((entries) => {
      batch.forEach((w, i) => { verdict(entries[i]!).then(w.resolve, w.reject) })
    }, (err: unknown) => { for (const w of batch) w.reject(err) })
  }
  return {
    async acquire (record, who) {
      return await new Promise<Admission>((resolve, reject) => {
        // After the turn's I/O: every handshake read in this poll joins the batch.
        if (waiting.length === 0) setImmediate(flush)
        waiting.push({ entrant: { record, who }, resolve, reject })
      })
    },

    async release (rec) {
      await Promise.all([slots.remove('user', rec.userId, rec), slots.remove('ip', rec.ip, rec), slots.dropRecord(rec)])
    },

    async connectionsOf (userId) {
      const byNode = new Map<string, string[]>()
      for (const h of await slots.holders('user', userId)) {
        const ids = byNode.get(h.serverId) ?? []
        ids.push(h.connectionId)
        byNode.set(h.serverId, ids)
      }
      const found = await Promise.all([...byNode].map(async ([serverId, ids]) => await slots.records(serverId, ids)))
      return found.flat().sort((a, b) => a.openedAt - b.openedAt)
    },

    async reassert (recs) {
      const trimmed = new Map<string, Holder>()
      await Promise.all([slots.putRecords(recs), ...recs.map(async (r) => {
        const [byUser, byIp] = await Promise.all([
          slots.addUnder('user', r.userId, r, r.openedAt, policy.perUser, policy.evictOldest),
          slots.addUnder('ip', r.ip, r, r.openedAt, policy.perIp, false),
        ])
        for (const h of [...byUser, ...byIp]) trimmed.set(memberOf(h), h)
      })])
      const out: Eviction[] = [...trimmed.values()].map((h) => ({ serverId: h.serverId, connectionId: h.connectionId, cause: 'over-limit' }))
      await Promise.all(out.map(async (e) => await slots.noteEviction(e)))
      return out
    },

    async takeEvictions (serverId) {
      return await slots.takeEvictions(serverId)
    },

    async reclaim (serverId, openedBefore = Infinity) {
      const recs = (await slots.records(serverId)).filter((r) => r.openedAt < openedBefore)
      await Promise.all(recs.map(async (r) => {
        await Promise.all([slots.remove('user', r.userId, r), slots.remove('ip', r.ip, r)])
      }))
      if (openedBefore === Infinity) await slots.dropNode(serverId)
      else await Promise.all(recs.map(async (r) => await slots.dropRecord(r)))
      return recs.length
    },
  }
}
