import type { Broker, MessageListener, NodeInfo, StateListener } from './broker.js'

/**
 * What MemoryBrokers that share it see as "the cluster". A node started without
 * Redis gets a private bus; tests share one between brokers to run the broker
 * suite against both implementations.
 */
export class MemoryBus {
  readonly subscribers = new Map<string, Set<MemoryBroker>>()
  readonly nodes = new Map<string, { info: NodeInfo, expiresAt: number }>()
  /** sorted-set stand-ins (member -> score) for the limit and revocation stores */
  readonly zsets = new Map<string, Map<string, number>>()
  /** hashes (field -> value) for per-node connection records */
  readonly hashes = new Map<string, Map<string, string>>()
  /** string keys with an optional expiry (ms since epoch, 0 = none) */
  readonly kv = new Map<string, { value: string, expiresAt: number }>()
}

export class MemoryBroker implements Broker {
  readonly kind = 'memory' as const
  private readonly listeners: MessageListener[] = []
  private readonly channels = new Set<string>()
  private closed = false

  constructor (readonly bus: MemoryBus = new MemoryBus()) {}

  get healthy (): boolean { return !this.closed }

  async connect (): Promise<void> {}

  async publish (channels: string | readonly string[], message: string): Promise<void> {
    for (const channel of typeof channels === 'string' ? [channels] : channels) {
      const subs = this.bus.subscribers.get(channel)
      if (!subs) continue
      // Delivered on a later tick, in publish order, as Redis would.
      for (const b of subs) queueMicrotask(() => b.deliver(channel, message))
    }
  }

  async publishNow (channel: string, message: string): Promise<void> {
    await this.publish(channel, message)
  }

  async subscribe (channel: string): Promise<void> {
    if (this.closed) throw new Error('broker closed')
    this.channels.add(channel)
    let set = this.bus.subscribers.get(channel)
    if (!set) { set = new Set(); this.bus.subscribers.set(channel, set) }
    set.add(this)
  }

  async unsubscribe (channel: string): Promise<void> {
    this.channels.delete(channel)
    const set = this.bus.subscribers.get(channel)
    set?.delete(this)
    if (set?.size === 0) this.bus.subscribers.delete(channel)
  }

  onMessage (listener: MessageListener): void { this.listeners.push(listener) }
  onStateChange (_listener: StateListener): void {}

  async heartbeat (info: NodeInfo, ttlMs: number): Promise<boolean> {
    const now = Date.now()
    const prev = this.bus.nodes.get(info.id)
    this.bus.nodes.set(info.id, { info, expiresAt: now + ttlMs })
    return prev !== undefined && prev.expiresAt > now
  }

  async nodes (): Promise<NodeInfo[]> {
    const now = Date.now()
    const out: NodeInfo[] = []
    for (const n of this.bus.nodes.values()) if (n.expiresAt > now) out.push(n.info)
    return out
  }

  async deadNodes (): Promise<string[]> {
    const now = Date.now()
    return [...this.bus.nodes].filter(([, n]) => n.expiresAt <= now).map(([id]) => id)
  }

  async claim (name: string, ttlMs: number): Promise<boolean> {
    const key = `claim:${name}`
    const e = this.bus.kv.get(key)
    if (e !== undefined && e.expiresAt > Date.now()) return false
    this.bus.kv.set(key, { value: '1', expiresAt: Date.now() + ttlMs })
    return true
  }

  async leave (nodeId: string): Promise<void> { this.bus.nodes.delete(nodeId) }

  async close (): Promise<void> {
    for (const c of [...this.channels]) await this.unsubscribe(c)
    this.closed = true
  }

  private deliver (channel: string, message: string): void {
    if (this.closed || !this.channels.has(channel)) return
    for (const l of this.listeners) l(channel, message)
  }
}
