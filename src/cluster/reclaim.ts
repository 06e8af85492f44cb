import type { Broker } from '../backend/broker.js'
import type { NodeStore } from '../backend/nodes.js'

export interface ReclaimDeps {
  /** the node's pub/sub: no sweep while it is unhealthy */
  broker: Pick<Broker, 'healthy'>
  nodes: NodeStore
  selfId: string
  nodeTtlMs: number
  /** frees a dead node's slots; resolves with how many connections it held */
  reclaimSlots: (serverId: string) => Promise<number>
  onReclaimed: (serverId: string, connections: number) => void
  onError: (err: Error) => void
}

/**
 * Every live node looks for registered nodes whose heartbeat lapsed; one of
 * them (by a short cluster-wide claim) frees the dead node's share of every
 * limit and removes it from the registry. A dead node is thus reclaimed within
 * NODE_TTL plus a quarter of it (a sweep every quarter TTL: the check is two
 * cheap reads, and a returning user should not wait long for a dead slot).
 */
export function startReclaim (d: ReclaimDeps): { stop: () => void, sweep: () => Promise<void> } {
  let running = false
  const sweep = async (): Promise<void> => {
    if (running || !d.broker.healthy) return
    running = true
    try {
      for (const id of await d.nodes.deadNodes()) {
        if (id === d.selfId) continue
        if (!await d.nodes.claim(`reclaim:${id}`, Math.max(5000, d.nodeTtlMs * 2))) continue
        const n = await d.reclaimSlots(id)
        await d.nodes.leave(id)
        d.onReclaimed(id, n)
      }
    } finally {
      running = false
    }
  }
  const timer = setInterval(() => { sweep().catch(d.onError) }, Math.max(100, Math.floor(d.nodeTtlMs / 4)))
  timer.unref()
  return { stop: () => clearInterval(timer), sweep }
}
