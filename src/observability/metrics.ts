import diagnostics from 'node:diagnostics_channel'
import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { nodeSnapshot } from '../admin/stats.js'
import type { Herald } from '../context.js'
import {
  channels, disconnectLabel, type AuthFailure, type BackendState, type ConnectionClose, type DeliveryFailed, type EventDelivered,
  type EventPublished, type GatewayEventOutcome, type HandshakeRefused, type MessageIn, type ProbeResult, type RateLimitHit, type Resumed, type WebhookAttempt, type WebhookQueues,
} from './channels.js'
import { isAuthFailure } from '../errors.js'

/**
 * Prometheus metrics, fed only by the diagnostics channels (the messages of
 * this node: channels are process-wide) and by the node's snapshot at scrape
 * time (nodeSnapshot); the core never calls into this module.
 */
export function createMetrics (h: Herald): { registry: Registry, close: () => void } {
  const serverId = h.config.serverId
  const node = (): ReturnType<typeof nodeSnapshot> => nodeSnapshot(h)
  const registry = new Registry()
  registry.setDefaultLabels({ server_id: serverId })
  // prom-client's own names already start with process_ or nodejs_.
  collectDefaultMetrics({ register: registry, prefix: 'herald_' })

  new Gauge({ name: 'herald_build_info', help: 'Version of this node (always 1)', labelNames: ['version', 'node'], registers: [registry] })
    .set({ version: h.version, node: process.version }, 1)
  new Gauge({
    name: 'herald_connections',
    help: 'Open connections on this node by endpoint',
    labelNames: ['endpoint'],
    registers: [registry],
    collect () {
      const { connections } = node()
      for (const endpoint of ['events', 'admin', 'health'] as const) this.set({ endpoint }, connections[endpoint])
    },
  })
  new Gauge({
    name: 'herald_handshakes',
    help: 'Client handshakes on this node past the token check: in_flight (up to WEBSOCKET_MAX_HANDSHAKES, until their welcome) and waiting for a place',
    labelNames: ['state'],
    registers: [registry],
    collect () {
      const { handshakes } = node()
      this.set({ state: 'in_flight' }, handshakes.inFlight)
      this.set({ state: 'waiting' }, handshakes.waiting)
    },
  })
  new Gauge({ name: 'herald_users', help: 'Distinct users with /ws/events connections on this node', registers: [registry], collect () { this.set(node().users) } })
  new Counter({
    name: 'herald_broker_messages_in_total',
    help: 'Messages received from Redis pub/sub (follows the users this node holds)',
    registers: [registry],
    collect () { this.reset(); this.inc(node().brokerMessagesIn) },
  })
  new Counter({
    name: 'herald_broker_messages_dropped_total',
    help: 'Messages from Redis not delivered, by reason: too_deep (data nested past the limit), malformed, error, overload (shed past saturation)',
    labelNames: ['reason'],
    registers: [registry],
    collect () {
      this.reset()
      for (const [reason, n] of Object.entries(node().dropped)) this.inc({ reason }, n)
    },
  })
  new Counter({
    name: 'herald_pubsub_missed_messages_total',
    help: 'Positioned messages this node\'s Redis subscription did not hear live (a dropped subscriber connection, a Cluster slot move), by outcome: read_back (read from their streams and delivered late, in order), lost (not read back: no longer retained, or the read failed)',
    labelNames: ['outcome'],
    registers: [registry],
    collect () {
      const { readBack, lost } = node().pubsubMissed
      this.reset()
      this.inc({ outcome: 'read_back' }, readBack)
      this.inc({ outcome: 'lost' }, lost)
    },
  })
  new Gauge({ name: 'herald_delivery_backlog_messages', help: 'Messages from Redis waiting for delivery (the node is behind its input)', registers: [registry], collect () { this.set(node().backlog) } })
  new Gauge({ name: 'herald_delivery_lag_seconds', help: 'How long the oldest message waiting for delivery has waited on this node', registers: [registry], collect () { this.set(node().lagMs / 1000) } })
  new Gauge({ name: 'herald_draining', help: '1 while this node drains', registers: [registry], collect () { this.set(node().draining ? 1 : 0) } })
  new Gauge({ name: 'herald_redis_up', help: '1 while the node is connected to Redis', registers: [registry], collect () { this.set(node().redisConnected ? 1 : 0) } })
  new Gauge({ name: 'herald_backend_ready', help: '1 while the pub/sub loopback probe comes back in time', registers: [registry], collect () { this.set(node().backendReady ? 1 : 0) } })
  const messagesIn = new Counter({ name: 'herald_messages_in_total', help: 'Client frames handled, by endpoint and type', labelNames: ['endpoint', 'type'], registers: [registry] })
  new Counter({
    name: 'herald_messages_out_total',
    help: 'Frames written to clients, by endpoint',
    labelNames: ['endpoint'],
    registers: [registry],
    collect () {
      // The node's count only grows; expose it as the counter's value.
      const { framesOut } = node()
      this.reset()
      this.inc({ endpoint: 'events' }, framesOut.events)
      this.inc({ endpoint: 'admin' }, framesOut.admin)
    },
  })
  const published = new Counter({ name: 'herald_events_published_total', help: 'Events and notifications published through this node', labelNames: ['kind'], registers: [registry] })
  const delivered = new Counter({ name: 'herald_events_delivered_total', help: 'Event and notification frames delivered to clients of this node', labelNames: ['kind'], registers: [registry] })
  const latency = new Histogram({
    name: 'herald_delivery_latency_seconds',
    help: 'From publish (on any node) to delivery on this node',
    labelNames: ['kind'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry],
  })
  const authFailures = new Counter({ name: 'herald_auth_failures_total', help: 'Refused handshakes and API calls, by endpoint and reason', labelNames: ['endpoint', 'reason'], registers: [registry] })
  const rateLimits = new Counter({ name: 'herald_rate_limit_hits_total', help: 'Connections and frames refused by a limit, by scope', labelNames: ['scope'], registers: [registry] })
  const disconnects = new Counter({ name: 'herald_disconnects_total', help: 'Closed connections, by endpoint and close code (the node\'s codes and 1006; 1000 or "client" when the client closed)', labelNames: ['endpoint', 'code'], registers: [registry] })
  const redisState = new Counter({ name: 'herald_redis_state_changes_total', help: 'Backend connectivity transitions, by new state', labelNames: ['state'], registers: [registry] })
  const probe = new Histogram({ name: 'herald_redis_probe_latency_seconds', help: 'Round trip of the pub/sub loopback probe', buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2], registers: [registry] })
  const deliveryFailures = new Counter({ name: 'herald_delivery_failures_total', help: 'Deliveries that threw for one connection (closed 1011), by transport', labelNames: ['transport'], registers: [registry] })
  const resumes = new Counter({ name: 'herald_resumes_total', help: 'Subscribes with `since` (resumes), by endpoint and whether every stream named was recovered', labelNames: ['endpoint', 'recovered'], registers: [registry] })
  const probeFailures = new Counter({ name: 'herald_redis_probe_failures_total', help: 'Loopback probes that did not come back in time', registers: [registry] })
  new Gauge({ name: 'herald_backend_persistent', help: '1 when the backend keeps its data across its restart (Redis with AOF on every master), which the webhook queue needs to survive one; 0 otherwise (the memory backend, Redis without AOF)', registers: [registry], collect () { this.set(h.persistent === true ? 1 : 0) } })
  const webhookAttempts = new Counter({ name: 'herald_webhook_attempts_total', help: 'Webhook delivery attempts made by this node, by endpoint and outcome (success, redirect, client_error, gone, rate_limited, server_error, timeout, network, blocked)', labelNames: ['endpoint', 'outcome'], registers: [registry] })
  const webhookDead = new Counter({ name: 'herald_webhook_dead_letters_total', help: 'Webhook deliveries this node made dead letters, by endpoint and reason (exhausted: every attempt failed; gone: the endpoint answered 410)', labelNames: ['endpoint', 'reason'], registers: [registry] })
  const webhookDuration = new Histogram({ name: 'herald_webhook_attempt_duration_seconds', help: 'How long webhook attempts took until their answer', labelNames: ['endpoint'], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry] })
  // The queues as this node last sampled them: cluster-wide figures, the same on every node.
  let queues: WebhookQueues['endpoints'] = []
  /** the label values each endpoint's counters have, to remove them with the endpoint */
  const endpointSeries = new Map<string, { outcomes: Set<string>, reasons: Set<string> }>()
  const seriesOf = (endpoint: string): { outcomes: Set<string>, reasons: Set<string> } => {
    let s = endpointSeries.get(endpoint)
    if (s === undefined) { s = { outcomes: new Set(), reasons: new Set() }; endpointSeries.set(endpoint, s) }
    return s
  }
  const phase = { closed: 0, 'half-open': 1, open: 2 } as const
  new Gauge({ name: 'herald_webhook_queue_depth', help: 'Undelivered webhooks per endpoint, cluster-wide: ready, in flight or waiting for a retry', labelNames: ['endpoint'], registers: [registry], collect () { this.reset(); for (const q of queues) this.set({ endpoint: q.endpointId }, q.depth) } })
  new Gauge({ name: 'herald_webhook_oldest_pending_seconds', help: 'Age of the oldest undelivered webhook per endpoint, cluster-wide (0 when none)', labelNames: ['endpoint'], registers: [registry], collect () { this.reset(); for (const q of queues) this.set({ endpoint: q.endpointId }, q.oldestAgeMs / 1000) } })
  new Gauge({ name: 'herald_webhook_breaker_state', help: 'Each endpoint\'s circuit breaker, cluster-wide: 0 closed, 1 half-open (one delivery probing), 2 open', labelNames: ['endpoint'], registers: [registry], collect () { this.reset(); for (const q of queues) this.set({ endpoint: q.endpointId }, phase[q.breaker]) } })

  const gatewayEvents = new Counter({ name: 'herald_gateway_events_total', help: 'The node\'s own session.* and security.* events it published, by type', labelNames: ['type'], registers: [registry] })
  const gatewaySuppressed = new Counter({ name: 'herald_gateway_events_suppressed_total', help: 'The node\'s own events not published, by type and reason: folded (into a window\'s summary), node_rate (past GATEWAY_EVENTS_RATE), backend (the backend unreachable or refusing)', labelNames: ['type', 'reason'], registers: [registry] })

  const subs: Array<[diagnostics.Channel, (m: unknown) => void]> = [
    [channels.gatewayEvents, (m) => {
      const x = m as GatewayEventOutcome
      if (x.outcome === 'published') gatewayEvents.inc({ type: x.type }, x.count)
      else gatewaySuppressed.inc({ type: x.type, reason: x.outcome }, x.count)
    }],
    [channels.messageIn, (m) => { const x = m as MessageIn; messagesIn.inc({ endpoint: x.endpoint, type: x.type }) }],
    [channels.eventPublished, (m) => { published.inc({ kind: (m as EventPublished).kind }) }],
    [channels.eventDelivered, (m) => {
      const x = m as EventDelivered
      if (x.recipients === 0) return
      delivered.inc({ kind: x.kind }, x.recipients)
      latency.observe({ kind: x.kind }, Math.max(0, x.latencyMs) / 1000)
    }],
    [channels.authFailure, (m) => { const x = m as AuthFailure; authFailures.inc({ endpoint: x.endpoint, reason: x.reason }) }],
    // Draining, outages and limits are not authentication failures: an alert
    // on this counter must not fire on every deploy.
    [channels.handshakeRefused, (m) => { const x = m as HandshakeRefused; if (isAuthFailure(x.code)) authFailures.inc({ endpoint: x.endpoint, reason: x.code }) }],
    [channels.rateLimit, (m) => { rateLimits.inc({ scope: (m as RateLimitHit).scope }) }],
    [channels.connectionClose, (m) => { const x = m as ConnectionClose; disconnects.inc({ endpoint: x.endpoint, code: disconnectLabel(x) }) }],
    [channels.backendState, (m) => { redisState.inc({ state: (m as BackendState).healthy ? 'up' : 'down' }) }],
    [channels.deliveryFailed, (m) => { deliveryFailures.inc({ transport: (m as DeliveryFailed).transport }) }],
    [channels.resumed, (m) => { const x = m as Resumed; resumes.inc({ endpoint: x.endpoint, recovered: String(x.recovered) }) }],
    [channels.probe, (m) => { const x = m as ProbeResult; if (x.ok) probe.observe(x.latencyMs / 1000); else probeFailures.inc() }],
    [channels.webhookAttempt, (m) => {
      const x = m as WebhookAttempt
      const labels = seriesOf(x.endpointId)
      webhookAttempts.inc({ endpoint: x.endpointId, outcome: x.outcome })
      labels.outcomes.add(x.outcome)
      if (x.outcome !== 'blocked') webhookDuration.observe({ endpoint: x.endpointId }, x.durationMs / 1000)
      if (x.result === 'dead') {
        const reason = x.outcome === 'gone' ? 'gone' : 'exhausted'
        webhookDead.inc({ endpoint: x.endpointId, reason })
        labels.reasons.add(reason)
      }
    }],
    [channels.webhookQueues, (m) => {
      queues = (m as WebhookQueues).endpoints
      // An endpoint's series go with it: a sample of the queues lists every
      // endpoint there is, and the series of one it no longer lists are
      // removed (a service creating and deleting endpoints would otherwise
      // grow every scrape without end).
      const live = new Set(queues.map((q) => q.endpointId))
      for (const [endpoint, { outcomes, reasons }] of endpointSeries) {
        if (live.has(endpoint)) continue
        for (const outcome of outcomes) webhookAttempts.remove({ endpoint, outcome })
        for (const reason of reasons) webhookDead.remove({ endpoint, reason })
        webhookDuration.remove({ endpoint })
        endpointSeries.delete(endpoint)
      }
    }],
  ]
  // This node's messages only: another node in the same process publishes on the same channels.
  const mine = subs.map(([ch, fn]): [diagnostics.Channel, (m: unknown) => void] => [ch, (m) => { if ((m as { serverId?: unknown }).serverId === serverId) fn(m) }])
  for (const [ch, fn] of mine) ch.subscribe(fn)
  return {
    registry,
    close () { for (const [ch, fn] of mine) ch.unsubscribe(fn) },
  }
}

/** GET /metrics in the Prometheus text format. */
export default fp(async function metricsRoute (app) {
  const m = createMetrics(app.herald)
  app.addHook('onClose', async () => { m.close() })
  // Requests that arrive while a rendering runs share it: rendering costs a
  // millisecond or more (more with many webhook endpoints), and a burst of
  // requests (pipelined, or many scrapers at once) must not cost one each.
  let rendering: Promise<string> | null = null
  app.get('/metrics', { schema: { summary: 'Prometheus metrics of this node', tags: ['operations'] }, logLevel: 'warn' }, async (_req, reply) => {
    reply.header('content-type', m.registry.contentType)
    rendering ??= m.registry.metrics().finally(() => { rendering = null })
    return await rendering
  })
}, { name: 'herald-metrics' })
