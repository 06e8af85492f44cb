// The registry of live nodes, and cluster-wide claims (one node at a time
// reclaims a dead node's share). Memory (nodes-memory.ts) and Redis
// (nodes-redis.ts) implementations run test/backend/nodes.test.ts.
import type { ActivitySnapshot } from '../observability/activity.js'

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
  /** the loopback probe through the backend comes back (absent in entries of older versions) */
  ready?: boolean
  /** what the node saw lately: latency percentiles, disconnects, limit hits, auth failures (absent in entries of older versions) */
  activity?: ActivitySnapshot
  /** the groups with the most member connections on this node, at most TOP_GROUPS (absent in entries of older versions) */
  groups?: Array<{ name: string, connections: number }>
}

/** Groups a node reports in its registry entry: its busiest. */
export const TOP_GROUPS = 20

export interface NodeStore {
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
}
