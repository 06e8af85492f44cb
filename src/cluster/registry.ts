import type { Broker, NodeInfo } from './broker.js'

/**
 * Keeps this node's entry alive in the backend and reads everyone else's.
 * A node that stops heartbeating drops out once NODE_TTL passes.
 */
export class Registry {
  private timer: NodeJS.Timeout | null = null

  constructor (
    private readonly broker: Broker,
    private readonly ttlMs: number,
    private readonly snapshot: () => NodeInfo,
    private readonly onError: (err: Error) => void,
  ) {}

  async start (): Promise<void> {
    await this.beat()
    // Three beats per TTL, so one lost beat never makes a live node look dead.
    this.timer = setInterval(() => { this.beat().catch(this.onError) }, Math.max(100, Math.floor(this.ttlMs / 3)))
    this.timer.unref()
  }

  async beat (): Promise<void> {
    await this.broker.heartbeat(this.snapshot(), this.ttlMs)
  }

  async nodes (): Promise<NodeInfo[]> {
    const nodes = await this.broker.nodes()
    return nodes.sort((a, b) => a.id.localeCompare(b.id))
  }

  async stop (nodeId: string): Promise<void> {
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    await this.broker.leave(nodeId).catch(this.onError)
  }
}
