import type { Broker } from '../cluster/broker.js'
import { MemoryBroker, type MemoryBus } from '../cluster/memory-broker.js'
import { RedisBroker, type RedisClient } from '../cluster/redis-broker.js'
import type { Identity } from './verifier.js'

// Durable revocations (brief §4). A revoked session id, or a user revoked at
// time T (every token of theirs with iat at or before T's second), is stored
// with a TTL and appended to a log. New connections check the keys; live
// connections hear of it over pub/sub at once, and every node re-reads the
// log periodically, so a node that missed the message (or Redis) catches up.
//
// Every node also keeps the live revocations it knows in memory, for as long
// as Redis keeps them: a connection is checked against them first, and when
// Redis turns out to have lost its data (FLUSHALL, a restart without
// persistence) the nodes write them back.

export type Revocation =
  | { kind: 'session', sessionId: string, at: number }
  | { kind: 'user', userId: string, at: number }

export type Revoked = 'session' | 'user'
type Who = Pick<Identity, 'userId' | 'sessionId' | 'issuedAt'>

/**
 * Live revocations one node remembers, newest kept. About 100 bytes each
 * (more with long ids): 10 MiB at the bound. Past it the oldest are
 * forgotten first; Redis still holds them, but they survive a loss of Redis's
 * data only if Redis persists.
 */
export const MAX_KNOWN_REVOCATIONS = 100_000
// Commands in flight at once while writing known revocations back.
const RESTORE_BATCH = 500

export interface RevocationStore {
  revoke (r: Revocation): Promise<void>
  /** why this identity is revoked (known here, or in Redis), or null */
  check (id: Who): Promise<Revoked | null>
  /** revocations recorded at or after `since` (ms) */
  since (since: number): Promise<Revocation[]>
  /** Remembers a revocation heard from another node (or the log); false if it is not one. */
  heard (r: unknown): r is Revocation
  /** why this identity is revoked, from what this node knows, without asking Redis */
  known (id: Who): Revoked | null
  /** Reads the log's live entries into memory (at boot: what was revoked before this node started). */
  load (): Promise<number>
  /** Writes every live revocation this node knows back to the store; resolves with how many. */
  restore (): Promise<number>
}

/** A token issued in the revocation's own second counts as revoked: iat has second precision. */
export const revokedBy = (issuedAt: number | null, revokedAt: number): boolean =>
  issuedAt === null || Math.floor(issuedAt / 1000) <= Math.floor(revokedAt / 1000)

const encodeEntry = (r: Revocation): string => r.kind === 'session' ? `s:${r.at}:${r.sessionId}` : `u:${r.at}:${r.userId}`
function decodeEntry (m: string): Revocation | null {
  const a = m.indexOf(':')
  const b = m.indexOf(':', a + 1)
  if (a !== 1 || b < 0) return null
  const at = Number(m.slice(a + 1, b))
  const id = m.slice(b + 1)
  return m[0] === 's' ? { kind: 'session', sessionId: id, at } : m[0] === 'u' ? { kind: 'user', userId: id, at } : null
}

/** Control messages arrive as parsed JSON: only well-formed revocations are remembered or applied. */
function isRevocation (r: unknown): r is Revocation {
  if (typeof r !== 'object' || r === null) return false
  const x = r as Record<string, unknown>
  if (typeof x.at !== 'number' || !Number.isFinite(x.at)) return false
  return (x.kind === 'session' && typeof x.sessionId === 'string') || (x.kind === 'user' && typeof x.userId === 'string')
}

/**
 * The revocations a node knows, each until `at + ttl` (when Redis's copy
 * expires too). By session id and by user in one map, so a check is O(1);
 * insertion order is the order heard, close to age order, so pruning looks
 * at the front only.
 */
class Known {
  private readonly entries = new Map<string, Revocation>()

  constructor (private readonly ttlMs: number, private readonly max: number) {}

  add (r: Revocation, now: number): void {
    if (r.at + this.ttlMs <= now) return
    const key = r.kind === 'session' ? `s:${r.sessionId}` : `u:${r.userId}`
    const prev = this.entries.get(key)
    // Heard again from the log, or an older revocation of the same user: the newest stands.
    if (prev !== undefined && prev.at >= r.at) return
    this.entries.delete(key) // re-inserted last: it is the newest now
    this.entries.set(key, r)
    for (const [k, v] of this.entries) {
      if (this.entries.size <= this.max && v.at + this.ttlMs > now) break
      this.entries.delete(k)
    }
  }

  covering (id: Who, now: number): Revoked | null {
    const s = id.sessionId !== null ? this.entries.get(`s:${id.sessionId}`) : undefined
    if (s !== undefined && s.at + this.ttlMs > now) return 'session'
    const u = this.entries.get(`u:${id.userId}`)
    if (u !== undefined && u.at + this.ttlMs > now && revokedBy(id.issuedAt, u.at)) return 'user'
    return null
  }

  live (now: number): Revocation[] {
    return [...this.entries.values()].filter((r) => r.at + this.ttlMs > now)
  }
}

abstract class BaseRevocations implements RevocationStore {
  private readonly memory: Known

  constructor (protected readonly prefix: string, protected readonly ttlMs: number) {
    this.memory = new Known(ttlMs, MAX_KNOWN_REVOCATIONS)
  }

  /** Stores one revocation for `ttlMs` more (less than the full TTL when written back). */
  protected abstract write (r: Revocation, ttlMs: number): Promise<void>
  /** Drops log entries past the TTL. */
  protected abstract prune (): Promise<void>
  protected abstract checkStored (id: Who): Promise<Revoked | null>
  /** the newest `limit` log entries recorded after `after` (ms), oldest first */
  protected abstract newest (after: number, limit: number): Promise<Revocation[]>
  abstract since (since: number): Promise<Revocation[]>

  async revoke (r: Revocation): Promise<void> {
    await this.write(r, this.ttlMs)
    await this.prune()
    // Once stored: a revocation the API answered 503 for is not half-applied here.
    this.memory.add(r, Date.now())
  }

  async check (id: Who): Promise<Revoked | null> {
    return this.known(id) ?? await this.checkStored(id)
  }

  heard (r: unknown): r is Revocation {
    if (!isRevocation(r)) return false
    this.memory.add(r, Date.now())
    return true
  }

  known (id: Who): Revoked | null {
    return this.memory.covering(id, Date.now())
  }

  async load (): Promise<number> {
    const now = Date.now()
    const list = await this.newest(now - this.ttlMs, MAX_KNOWN_REVOCATIONS)
    for (const r of list) this.memory.add(r, now)
    return list.length
  }

  async restore (): Promise<number> {
    const live = this.memory.live(Date.now())
    for (let i = 0; i < live.length; i += RESTORE_BATCH) {
      await Promise.all(live.slice(i, i + RESTORE_BATCH).map(async (r) => {
        const left = r.at + this.ttlMs - Date.now()
        if (left > 0) await this.write(r, left)
      }))
    }
    await this.prune()
    return live.length
  }
}

class RedisRevocations extends BaseRevocations {
  constructor (private readonly client: RedisClient, prefix: string, ttlMs: number) {
    super(prefix, ttlMs)
    // A later revocation of the same user wins; an earlier one never lowers
    // it, nor shortens its life (a revocation written back after a loss of
    // data carries what is left of its TTL).
    client.defineCommand('heraldRevokeUser', {
      numberOfKeys: 1,
      lua: `local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
elseif redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`,
    })
  }

  private key (r: { kind: 'session' | 'user' }, id: string): string { return `${this.prefix}rev:${r.kind === 'session' ? 's' : 'u'}:${id}` }
  private get log (): string { return `${this.prefix}rev:log` }

  protected async write (r: Revocation, ttlMs: number): Promise<void> {
    const px = String(Math.ceil(ttlMs))
    if (r.kind === 'session') await this.client.set(this.key(r, r.sessionId), String(r.at), 'PX', px)
    else await (this.client as unknown as { heraldRevokeUser: (k: string, at: string, ttl: string) => Promise<number> }).heraldRevokeUser(this.key(r, r.userId), String(r.at), px)
    await this.client.zadd(this.log, r.at, encodeEntry(r))
  }

  protected async prune (): Promise<void> {
    await this.client.zremrangebyscore(this.log, '-inf', Date.now() - this.ttlMs)
  }

  protected async checkStored (id: Who): Promise<Revoked | null> {
    const [s, u] = await Promise.all([
      id.sessionId !== null ? this.client.exists(this.key({ kind: 'session' }, id.sessionId)) : Promise.resolve(0),
      this.client.get(this.key({ kind: 'user' }, id.userId)),
    ])
    if (s === 1) return 'session'
    if (u !== null && revokedBy(id.issuedAt, Number(u))) return 'user'
    return null
  }

  async since (since: number): Promise<Revocation[]> {
    const members = await this.client.zrangebyscore(this.log, since, '+inf')
    return members.map(decodeEntry).filter((r): r is Revocation => r !== null)
  }

  protected async newest (after: number, limit: number): Promise<Revocation[]> {
    const members = await this.client.zrevrangebyscore(this.log, '+inf', `(${after}`, 'LIMIT', 0, limit)
    return members.reverse().map(decodeEntry).filter((r): r is Revocation => r !== null)
  }
}

class MemoryRevocations extends BaseRevocations {
  constructor (private readonly bus: MemoryBus, prefix: string, ttlMs: number) { super(prefix, ttlMs) }

  private get log (): Map<string, number> {
    const k = `${this.prefix}rev:log`
    let z = this.bus.zsets.get(k)
    if (!z) { z = new Map(); this.bus.zsets.set(k, z) }
    return z
  }

  private read (key: string): string | null {
    const e = this.bus.kv.get(key)
    if (!e) return null
    if (e.expiresAt !== 0 && e.expiresAt <= Date.now()) { this.bus.kv.delete(key); return null }
    return e.value
  }

  protected async write (r: Revocation, ttlMs: number): Promise<void> {
    const expiresAt = Date.now() + ttlMs
    if (r.kind === 'session') {
      this.bus.kv.set(`${this.prefix}rev:s:${r.sessionId}`, { value: String(r.at), expiresAt })
    } else {
      // As the Redis script: the latest revocation wins, and nothing shortens its life.
      const key = `${this.prefix}rev:u:${r.userId}`
      const cur = this.read(key)
      const at = Math.max(Number(cur ?? 0), r.at)
      this.bus.kv.set(key, { value: String(at), expiresAt: Math.max(expiresAt, this.bus.kv.get(key)?.expiresAt ?? 0) })
    }
    this.log.set(encodeEntry(r), r.at)
  }

  protected async prune (): Promise<void> {
    const log = this.log
    for (const [m, at] of log) if (at < Date.now() - this.ttlMs) log.delete(m)
  }

  protected async checkStored (id: Who): Promise<Revoked | null> {
    if (id.sessionId !== null && this.read(`${this.prefix}rev:s:${id.sessionId}`) !== null) return 'session'
    const u = this.read(`${this.prefix}rev:u:${id.userId}`)
    if (u !== null && revokedBy(id.issuedAt, Number(u))) return 'user'
    return null
  }

  async since (since: number): Promise<Revocation[]> {
    const out: Revocation[] = []
    for (const [m, at] of this.log) {
      if (at < since) continue
      const r = decodeEntry(m)
      if (r) out.push(r)
    }
    return out.sort((a, b) => a.at - b.at)
  }

  protected async newest (after: number, limit: number): Promise<Revocation[]> {
    return (await this.since(after + 1)).slice(-limit)
  }
}

export function createRevocationStore (broker: Broker, prefix: string, ttlMs: number): RevocationStore {
  if (broker instanceof RedisBroker) return new RedisRevocations(broker.client, prefix, ttlMs)
  if (broker instanceof MemoryBroker) return new MemoryRevocations(broker.bus, prefix, ttlMs)
  throw new Error(`no revocation store for broker ${broker.kind}`)
}
