// The cluster backend behind every node: pub/sub for events and a small
// registry of live nodes. Two implementations run the same integration suite:
// MemoryBroker (one process, no Redis) and RedisBroker (ioredis).

export interface NodeInfo {
  id: string
  address: string
  version: string
  startedAt: number
  heartbeatAt: number
  draining: boolean
  connections: { events: number, admin: number, health: number }
  users: number
  eventsPublished: number
  eventsDelivered: number
  memoryRss: number
  /**
   * of `connections`, those carried by Socket.IO (absent in entries of older
   * versions): cluster stats add these up rather than asking every node
   * through the adapter, whose fetchSockets ships each socket's handshake,
   * token included, through Redis
   */
  socketio?: number
}

export type MessageListener = (channel: string, message: string) => void
export type StateListener = (healthy: boolean) => void

export interface Broker {
  readonly kind: 'memory' | 'redis'
  /** true while publishes and subscriptions reach the backend */
  readonly healthy: boolean
  connect (): Promise<void>
  /**
   * Puts one message on one or more channels. Resolves once the backend has
   * it, or it is held for replay after an outage; rejects, for every channel
   * at once, when it can be neither.
   */
  publish (channels: string | readonly string[], message: string): Promise<void>
  /**
   * Puts one message on one channel now or never: no buffering, no replay.
   * For the readiness probe, which must measure Redis as it is, not wait in
   * the outage buffer meant for events.
   */
  publishNow (channel: string, message: string): Promise<void>
  /** Resolves once messages on the channel will reach onMessage. */
  subscribe (channel: string): Promise<void>
  unsubscribe (channel: string): Promise<void>
  onMessage (listener: MessageListener): void
  onStateChange (listener: StateListener): void
  /**
   * Records this node as alive for ttlMs. Resolves false when the node's
   * entry was gone (first beat, Redis lost its data, or the node was taken
   * for dead), so the caller can write its state back.
   */
  heartbeat (info: NodeInfo, ttlMs: number): Promise<boolean>
  /** Every node whose heartbeat has not lapsed. */
  nodes (): Promise<NodeInfo[]>
  /** Ids of registered nodes whose heartbeat lapsed and that nobody has reclaimed yet. */
  deadNodes (): Promise<string[]>
  /** A cluster-wide lock: true for exactly one caller per name until ttlMs passes. */
  claim (name: string, ttlMs: number): Promise<boolean>
  /** Removes a node from the registry. */
  leave (nodeId: string): Promise<void>
  close (): Promise<void>
}
