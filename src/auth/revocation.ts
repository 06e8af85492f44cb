import type { Broker } from '../cluster/broker.js'
import { MemoryBroker, type MemoryBus } from '../cluster/memory-broker.js'
import { RedisBroker, type RedisClient } from '../cluster/redis-broker.js'
import type { Identity } from './verifier.js'

// Durable revocations (brief §4). A revoked session id, or a user revoked at
// time T (every token of theirs with iat at or before T's second), is stored
// with a TTL and appended to a log. New connections check the keys; live
// connections hear of it over pub/sub at once, and every node re-reads the
// log periodically, so a node that missed the message (or Redis) catches up.

export type Revocation =
  | { kind: 'session', sessionId: string, at: number }
  | { kind: 'user', userId: string, at: number }

export interface RevocationStore {
  revoke (r: Revocation): Promise<void>
  /** why this identity is revoked, or null */
  check (id: Pick<Identity, 'userId' | 'sessionId' | 'issuedAt'>): Promise<'session' | 'user' | null>
  /** revocations recorded at or after `since` (ms) */
  since (since: number): Promise<Revocation[]>
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

class RedisRevocations implements RevocationStore {
  constructor (private readonly client: RedisClient, private readonly prefix: string, private readonly ttlMs: number) {
    // A later revocation of the same user wins; an earlier one never lowers it.
    client.defineCommand('heraldRevokeUser', {
      numberOfKeys: 1,
      lua: `local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) else redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1`,
    })
  }

  private key (r: { kind: 'session' | 'user' }, id: string): string { return `${this.prefix}rev:${r.kind === 'session' ? 's' : 'u'}:${id}` }
  private get log (): string { return `${this.prefix}rev:log` }

  async revoke (r: Revocation): Promise<void> {
    if (r.kind === 'session') await this.client.set(this.key(r, r.sessionId), String(r.at), 'PX', this.ttlMs)
    else await (this.client as unknown as { heraldRevokeUser: (k: string, at: string, ttl: string) => Promise<number> }).heraldRevokeUser(this.key(r, r.userId), String(r.at), String(this.ttlMs))
    await this.client.zadd(this.log, r.at, encodeEntry(r))
    await this.client.zremrangebyscore(this.log, '-inf', Date.now() - this.ttlMs)
  }

  async check (id: Pick<Identity, 'userId' | 'sessionId' | 'issuedAt'>): Promise<'session' | 'user' | null> {
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
}

class MemoryRevocations implements RevocationStore {
  constructor (private readonly bus: MemoryBus, private readonly prefix: string, private readonly ttlMs: number) {}

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

  async revoke (r: Revocation): Promise<void> {
    const expiresAt = Date.now() + this.ttlMs
    if (r.kind === 'session') {
      this.bus.kv.set(`${this.prefix}rev:s:${r.sessionId}`, { value: String(r.at), expiresAt })
    } else {
      const key = `${this.prefix}rev:u:${r.userId}`
      const cur = Number(this.read(key) ?? 0)
      this.bus.kv.set(key, { value: String(Math.max(cur, r.at)), expiresAt })
    }
    const log = this.log
    log.set(encodeEntry(r), r.at)
    for (const [m, at] of log) if (at < Date.now() - this.ttlMs) log.delete(m)
  }

  async check (id: Pick<Identity, 'userId' | 'sessionId' | 'issuedAt'>): Promise<'session' | 'user' | null> {
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
}

export function createRevocationStore (broker: Broker, prefix: string, ttlMs: number): RevocationStore {
  if (broker instanceof RedisBroker) return new RedisRevocations(broker.client, prefix, ttlMs)
  if (broker instanceof MemoryBroker) return new MemoryRevocations(broker.bus, prefix, ttlMs)
  throw new Error(`no revocation store for broker ${broker.kind}`)
}
