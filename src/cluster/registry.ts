import type { NodeInfo, NodeStore } from '../backend/nodes.js'

/**
 * Keeps this node's entry alive in the backend and reads everyone else's.
 * A node that stops heartbeating drops out once NODE_TTL passes.
 */
export class Registry {
  private timer: NodeJS.Timeout | null = null

  private beats = 0
  private inFlight = false

  constructor (
    private readonly store: NodeStore,
    private readonly ttlMs: number,
    private readonly snapshot: () => NodeInfo,
    private readonly onError: (err: Error) => void,
    /** called when a beat finds this node's entry gone after it had one: write local state back */
    private readonly onLost: () => void = () => {},
  ) {}

  /** Starts beating; resolves after the first beat (which may wait for the backend). */
  async start (): Promise<void> {
    // Three beats per TTL, so one lost beat never makes a live node look dead.
    this.timer = setInterval(() => { if (!this.inFlight) this.beat().catch(this.onError) }, Math.max(100, Math.floor(this.ttlMs / 3)))
    this.timer.unref()
    await this.beat()
  }

  async beat (): Promise<void> {
    this.inFlight = true
    try {
      const wasAlive = await this.store.heartbeat(this.snapshot(), this.ttlMs)
      if (!wasAlive && this.beats > 0) this.onLost()
      this.beats++
    } finally {
      this.inFlight = false
    }
  }

  async nodes (): Promise<NodeInfo[]> {
    const nodes = await this.store.nodes()
    return nodes.sort((a, b) => a.id.localeCompare(b.id))
  }

  /** Nodes whose heartbeat lapsed and that no node has reclaimed yet (this one aside). */
  async lapsed (selfId: string): Promise<string[]> {
    return (await this.store.deadNodes()).filter((id) => id !== selfId).sort()
  }

  async stop (nodeId: string): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    await this.store.leave(nodeId).catch(this.onError)
  }
}
