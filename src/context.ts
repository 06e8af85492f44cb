import type { OriginCheck } from './auth/origin.js'
import type { TokenVerifier } from './auth/verifier.js'
import type { Backend } from './backend/backend.js'
import type { Channels } from './cluster/channels.js'
import type { Probe } from './cluster/probe.js'
import type { Registry } from './cluster/registry.js'
import type { Config } from './config/index.js'
import type { Connections } from './endpoints/connections.js'
import type { Hub } from './events/hub.js'
import type { Publisher } from './events/publisher.js'
import type { WebSocket } from 'ws'
import type { Revocations } from './auth/revocation.js'
import type { ConnectionLimiter } from './limits/connection-limiter.js'
import type { MessageLimiter } from './limits/message-limiter.js'
import type { Activity } from './observability/activity.js'
import type { Tails } from './admin/tail.js'

/** Everything a node runs on, built once by buildApp and shared by its plugins. */
export interface Herald {
  config: Config
  log: import('fastify').FastifyBaseLogger
  version: string
  startedAt: number
  /** the cluster backend's capabilities (memory, or Redis) */
  backend: Backend
  channels: Channels
  hub: Hub
  publisher: Publisher
  registry: Registry
  /** pub/sub loopback: readiness and new connections follow it */
  probe: Probe
  verifier: TokenVerifier
  revocations: Revocations
  connectionLimiter: ConnectionLimiter
  /** client handshakes between their token check and their welcome, bounded (WEBSOCKET_MAX_HANDSHAKES) */
  handshakes: import('./endpoints/handshake-gate.js').HandshakeGate
  messageLimiter: MessageLimiter
  originAllowed: OriginCheck
  apiKeyValid: (candidate: string) => boolean
  /** this node's authenticated connections: the one registry of them */
  readonly connections: Connections
  /** unauthenticated health streams on this node */
  healthStreams: Set<WebSocket>
  draining: boolean
  /** auth_expiring / auth_expired deadlines of every connection on this node */
  expiry: import('./endpoints/expiry.js').ExpiryScheduler
  /** what the node saw lately (latency percentiles, disconnects, limit hits, auth failures), from the diagnostics channels */
  activity: Activity
  /** the live tails of this node's admin connections */
  tails: Tails
  /** listen address, known once the server listens */
  address: string
  /** outbound webhooks: managing endpoints, and this node's share of delivering */
  webhooks: {
    endpoints: import('./webhooks/endpoints.js').EndpointService
    dispatcher: import('./webhooks/dispatcher.js').Dispatcher
  }
  /** PUBLISH_SCHEMAS compiled: the check of each listed type's client-published data */
  dataChecks: Map<string, import('./publish/schemas.js').DataCheck>
  /** the backend keeps its data across its restart (AOF); null until known */
  persistent: boolean | null
}

declare module 'fastify' {
  interface FastifyInstance { herald: Herald }
}
