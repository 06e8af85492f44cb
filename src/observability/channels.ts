import diagnostics from 'node:diagnostics_channel'

// Named diagnostics channels: the core publishes, and logs and metrics
// subscribe, so the core imports neither prom-client nor a log format.
// Publishers check hasSubscribers first to keep the hot path free.

export interface ConnectionOpen { endpoint: 'events' | 'admin' | 'health', connectionId: string, userId?: string, ip: string }
export interface ConnectionClose { endpoint: 'events' | 'admin' | 'health', connectionId: string, userId?: string, code: number, durationMs: number }
export interface EventPublished { kind: 'event' | 'notification', type: string, id: string }
export interface EventDelivered { kind: 'event' | 'notification', type: string, recipients: number, latencyMs: number }
export interface AuthFailure { endpoint: string, reason: string }
export interface MessageIn { endpoint: 'events' | 'admin', type: string }
export interface BackendState { healthy: boolean }
export interface RateLimitHit { scope: 'connection-ip' | 'connection-user' | 'message-ip' | 'message-user' }
export interface ProbeResult { ok: boolean, latencyMs: number }
export interface MessageOut { endpoint: 'events' | 'admin', frames: number }

export const channels = {
  connectionOpen: diagnostics.channel('herald:connection:open'),
  connectionClose: diagnostics.channel('herald:connection:close'),
  eventPublished: diagnostics.channel('herald:event:published'),
  eventDelivered: diagnostics.channel('herald:event:delivered'),
  authFailure: diagnostics.channel('herald:auth:failure'),
  messageIn: diagnostics.channel('herald:message:in'),
  backendState: diagnostics.channel('herald:backend:state'),
  rateLimit: diagnostics.channel('herald:ratelimit'),
  probe: diagnostics.channel('herald:backend:probe'),
} as const
