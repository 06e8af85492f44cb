import { TOP_GROUPS, type NodeInfo } from '../backend/nodes.js'
import type { Herald } from '../context.js'
import { HeraldError } from '../errors.js'
import type { ActivitySnapshot } from '../observability/activity.js'
import type { GapStats } from '../events/gaps.js'
import type { DropReason } from '../observability/channels.js'
import { withBackend } from './actions.js'

/** What a node's figures are at one moment, read without changing anything. */
export interface NodeSnapshot {
  serverId: string
  draining: boolean
  backend: 'memory' | 'redis'
  /** connected to Redis (false on the memory backend) */
  redisConnected: boolean
  /** the pub/sub loopback probe comes back in time */
  backendReady: boolean
  connections: { events: number, admin: number, health: number }
  /** of `connections`, those carried by Socket.IO */
  socketio: number
  /** distinct signed-in users with /ws/events connections */
  users: number
  /** client handshakes past the token check and not yet welcomed, and those waiting for a place among them (src/endpoints/handshake-gate.ts) */
  handshakes: { inFlight: number, waiting: number }
  /** frames written to clients since boot, by endpoint */
  framesOut: { events: number, admin: number }
  eventsPublished: number
  eventsDelivered: number
  /** messages received from Redis, own echoes included */
  brokerMessagesIn: number
  /** messages from Redis not delivered since boot, by reason */
  dropped: Record<DropReason, number>
  /**
   * positioned messages this node's Redis subscription did not hear live
   * (src/events/gaps.ts), since boot: read back from their streams and
   * delivered, or lost to its clients (no longer retained, or the read failed)
   */
  pubsubMissed: { readBack: number, lost: number }
  /** messages from Redis waiting for delivery, and how long the oldest has waited */
  backlog: number
  lagMs: number
}

/**
 * The one read of a node's state for stats, the registry row and metrics
 * (which otherwise hear only diagnostics messages): O(1), the counts are kept
 * as connections come and go.
 */
export function nodeSnapshot (h: Herald): NodeSnapshot {
  const c = h.connections
  return {
    serverId: h.config.serverId,
    draining: h.draining,
    backend: h.backend.kind,
    redisConnected: h.backend.kind === 'redis' && h.backend.broker.healthy,
    backendReady: h.probe.healthy,
    connections: { events: c.endpoints.events, admin: c.endpoints.admin, health: h.healthStreams.size },
    socketio: c.transports['socket.io'],
    users: c.users,
    handshakes: { inFlight: h.handshakes.inFlight, waiting: h.handshakes.queued },
    framesOut: { ...c.framesOut },
    eventsPublished: h.publisher.published,
    eventsDelivered: h.hub.delivered,
    brokerMessagesIn: h.hub.received,
    dropped: { ...h.hub.dropped, overload: h.hub.shed },
    pubsubMissed: pubsubMissed(h.hub.gaps.stats),
    backlog: h.hub.waiting,
    lagMs: h.hub.lagMs(),
  }
}

/**
 * A message read back whose own pub/sub copy came after all (a catch-up
 * races what is still on its way) was not missed: it is counted in neither.
 */
const pubsubMissed = (s: GapStats): NodeSnapshot['pubsubMissed'] => ({ readBack: s.recovered - s.late, lost: s.missed - s.recovered })

export function nodeInfo (h: Herald): NodeInfo {
  const n = nodeSnapshot(h)
  return {
    id: n.serverId,
    address: h.address,
    version: h.version,
    startedAt: h.startedAt,
    heartbeatAt: Date.now(),
    draining: n.draining,
    connections: n.connections,
    socketio: n.socketio,
    users: n.users,
    eventsPublished: n.eventsPublished,
    eventsDelivered: n.eventsDelivered,
    memoryRss: process.memoryUsage.rss(),
    ready: n.backendReady,
    activity: h.activity.snapshot(),
    groups: busiestGroups(h.hub.groupCounts()),
  }
}

/** The node's groups with the most member connections, busiest first (name order among equals). */
function busiestGroups (counts: Map<string, number>): Array<{ name: string, connections: number }> {
  return [...counts].map(([name, connections]) => ({ name, connections }))
    .sort((a, b) => b.connections - a.connections || (a.name < b.name ? -1 : 1))
    .slice(0, TOP_GROUPS)
}

export interface ServerStats {
  serverId: string
  address: string
  version: string
  uptime: number
  draining: boolean
  backend: 'memory' | 'redis'
  redisConnected: boolean
  /** the loopback probe through the backend comes back: the node admits connections unless draining */
  ready: boolean
  connections: { events: number, admin: number, health: number, total: number }
  /** of `connections`, those carried by Socket.IO */
  socketio: number
  users: number
  eventsPublished: number
  eventsDelivered: number
  /** messages this node received from Redis: it follows the node's own users */
  brokerMessagesIn: number
  memory: { rss: number, heapUsed: number }
  activity: ActivitySnapshot
}

export function serverStats (h: Herald): ServerStats {
  const n = nodeSnapshot(h)
  const memory = process.memoryUsage()
  return {
    serverId: n.serverId,
    address: h.address,
    version: h.version,
    uptime: Math.round((Date.now() - h.startedAt) / 1000),
    draining: n.draining,
    backend: n.backend,
    redisConnected: n.redisConnected,
    ready: n.backendReady,
    connections: { ...n.connections, total: n.connections.events + n.connections.admin },
    socketio: n.socketio,
    users: n.users,
    eventsPublished: n.eventsPublished,
    eventsDelivered: n.eventsDelivered,
    brokerMessagesIn: n.brokerMessagesIn,
    memory: { rss: memory.rss, heapUsed: memory.heapUsed },
    activity: h.activity.snapshot(),
  }
}

/**
 * A node as the cluster sees it. `unreachable`: no heartbeat for more than two
 * heartbeat intervals (a third of NODE_TTL each), so it has missed two in a
 * row; its entry lapses at NODE_TTL, and it is listed in `lapsed` until a
 * live node reclaims it. Otherwise draining, or ready as its probe says.
 */
export type NodeState = 'ready' | 'not-ready' | 'draining' | 'unreachable'

export function nodeState (n: Pick<NodeInfo, 'heartbeatAt' | 'draining' | 'ready'>, nodeTtlMs: number, now = Date.now()): NodeState {
  if (now - n.heartbeatAt > 2 * Math.max(100, Math.floor(nodeTtlMs / 3))) return 'unreachable'
  if (n.draining) return 'draining'
  return n.ready === false ? 'not-ready' : 'ready'
}

export interface ClusterStats {
  servers: number
  connections: { events: number, admin: number, total: number }
  /** sum over nodes of the users each holds; a user on two nodes counts twice */
  users: number
  eventsPublished: number
  eventsDelivered: number
  /** Socket.IO sockets in the whole cluster, from each live node's registry entry */
  socketio: { sockets: number }
  nodes: Array<{
    serverId: string
    address: string
    version: string
    state: NodeState
    draining: boolean
    connections: number
    /** of `connections`, by transport */
    transports: { ws: number, socketio: number }
    socketio: number
    users: number
    eventsPublished: number
    eventsDelivered: number
    memoryRss: number
    lastHeartbeat: string
    uptime: number
    /** null from a node of an older version */
    activity: ActivitySnapshot | null
    /** its busiest groups and their member connections on it */
    groups: Array<{ name: string, connections: number }>
  }>
  /** registered nodes whose heartbeat lapsed, not reclaimed yet: dead, or cut off from the backend */
  lapsed: string[]
}

export async function clusterStats (h: Herald): Promise<ClusterStats> {
  const [nodes, lapsed] = await Promise.all([h.registry.nodes(), h.registry.lapsed(h.config.serverId)])
  // This node's own row is always current, whatever its last heartbeat said.
  const self = nodeInfo(h)
  const rows = nodes.filter((n) => n.id !== self.id).concat(self).sort((a, b) => a.id.localeCompare(b.id))
  const out: ClusterStats = { servers: rows.length, connections: { events: 0, admin: 0, total: 0 }, users: 0, eventsPublished: 0, eventsDelivered: 0, socketio: { sockets: 0 }, nodes: [], lapsed }
  const now = Date.now()
  for (const n of rows) {
    const sio = n.socketio ?? 0
    out.socketio.sockets += sio
    out.connections.events += n.connections.events
    out.connections.admin += n.connections.admin
    out.users += n.users
    out.eventsPublished += n.eventsPublished
    out.eventsDelivered += n.eventsDelivered
    const connections = n.connections.events + n.connections.admin
    out.nodes.push({
      serverId: n.id,
      address: n.address,
      version: n.version,
      state: nodeState(n, h.config.nodeTtlMs, now),
      draining: n.draining,
      connections,
      transports: { ws: Math.max(0, connections - sio), socketio: sio },
      socketio: sio,
      users: n.users,
      eventsPublished: n.eventsPublished,
      eventsDelivered: n.eventsDelivered,
      memoryRss: n.memoryRss,
      lastHeartbeat: new Date(n.heartbeatAt).toISOString(),
      uptime: Math.round((now - n.startedAt) / 1000),
      activity: n.activity ?? null,
      groups: n.groups ?? [],
    })
  }
  out.connections.total = out.connections.events + out.connections.admin
  // Other nodes' counts are as of their last heartbeat (NODE_TTL / 3 at most).
  return out
}

export interface StatsReply {
  server: ServerStats
  /** null while the cluster backend is unreachable: this node's own figures still come */
  global: ClusterStats | null
  globalError?: { code: string, message: string }
}

/**
 * GET /api/stats, admin `get_stats` and `metrics` pushes. An operator looks
 * at stats most when something is wrong: a frozen Redis must not hold the
 * answer up, and the node's own figures need no Redis at all.
 */
export async function statsReply (h: Herald): Promise<StatsReply> {
  const server = serverStats(h)
  try {
    return { server, global: await withBackend(h, 'cluster stats', async () => await clusterStats(h)) }
  } catch (err) {
    if (!(err instanceof HeraldError)) throw err
    return { server, global: null, globalError: { code: err.code, message: err.message } }
  }
}
