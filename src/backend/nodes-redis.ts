import type { NodeInfo, NodeStore } from './nodes.js'
import { atMost } from './deadline.js'
import { SHUTDOWN_WAIT_MS, type RedisClient } from './redis-clients.js'

/**
 * A string key per node with the heartbeat's TTL, and a sorted set of every
 * node that ever beat (until reclaimed), so that lapsed ones can be found.
 * All under the `{registry}` hash tag: one slot on a Redis Cluster, so a
 * heartbeat's MULTI and the MGET of every entry stay on one shard.
 */
export class RedisNodes implements NodeStore {
  private readonly registryKey: string
  private readonly nodeKey: (id: string) => string
  private readonly claimKey: (name: string) => string

  constructor (private readonly client: RedisClient, prefix: string) {
    this.registryKey = `${prefix}{registry}:nodes`
    this.nodeKey = (id) => `${prefix}{registry}:node:${id}`
    this.claimKey = (name) => `${prefix}{registry}:claim:${name}`
  }

  async heartbeat (info: NodeInfo, ttlMs: number): Promise<boolean> {
    // Registry members stay until a live node reclaims them (deadNodes/claim/leave).
    const res = await this.client.multi()
      .set(this.nodeKey(info.id), JSON.stringify(info), 'PX', ttlMs, 'GET')
      .zadd(this.registryKey, Date.now(), info.id)
      .exec()
    const prev = res?.[0]?.[1]
    return prev !== null && prev !== undefined
  }

  async deadNodes (): Promise<string[]> {
    const ids = await this.client.zrange(this.registryKey, 0, -1)
    if (ids.length === 0) return []
    const alive = await this.client.mget(...ids.map(this.nodeKey))
    return ids.filter((_id, i) => alive[i] === null)
  }

  async claim (name: string, ttlMs: number): Promise<boolean> {
    return await this.client.set(this.claimKey(name), '1', 'PX', ttlMs, 'NX') === 'OK'
  }

  async nodes (): Promise<NodeInfo[]> {
    const ids = await this.client.zrange(this.registryKey, 0, -1)
    if (ids.length === 0) return []
    const raw = await this.client.mget(...ids.map(this.nodeKey))
    const out: NodeInfo[] = []
    for (const r of raw) if (r !== null) out.push(JSON.parse(r) as NodeInfo)
    return out
  }

  async leave (nodeId: string): Promise<void> {
    // Unreachable: the entry lapses by its TTL; waiting here would hold up shutdown.
    if (this.client.status !== 'ready') return
    await atMost(this.client.multi().del(this.nodeKey(nodeId)).zrem(this.registryKey, nodeId).exec(), SHUTDOWN_WAIT_MS)
  }
}
