import { createRequire } from 'node:module'
import Fastify, { type FastifyInstance } from 'fastify'
import websocket from '@fastify/websocket'
import type { DestinationStream } from 'pino'
import { hostname, networkInterfaces } from 'node:os'
import { createApiKeyCheck } from './auth/credentials.js'
import { createRevocations } from './auth/revocation.js'
import { createOriginCheck } from './auth/origin.js'
import { createTokenVerifier } from './auth/verifier.js'
import { startMetricsPush } from './admin/metrics-push.js'
import { Tails } from './admin/tail.js'
import { startTopCounts } from './admin/top.js'
import { nodeInfo } from './admin/stats.js'
import { createBackend } from './backend/backend.js'
import { atMost, inTime } from './backend/deadline.js'
import { createChannels } from './cluster/channels.js'
import { Probe } from './cluster/probe.js'
import { startReclaim } from './cluster/reclaim.js'
import { Registry } from './cluster/registry.js'
import type { Config } from './config/index.js'
import type { Herald } from './context.js'
import { Connections } from './endpoints/connections.js'
import { handleControl, restoreAfterLoss, startRevocationSync } from './endpoints/control.js'
import { ExpiryScheduler } from './endpoints/expiry.js'
import { HandshakeGate } from './endpoints/handshake-gate.js'
import { nodeRefusal } from './endpoints/admission.js'
import { lastWriteMs } from './endpoints/turn-writes.js'
import healthEndpoint from './endpoints/health.js'
import { startHeartbeat } from './endpoints/liveness.js'
import socketIo from './endpoints/socketio.js'
import wsEndpoints from './endpoints/ws.js'
import { createHttpServer } from './http/server.js'
import { createIdGenerator } from './events/ids.js'
import { Hub } from './events/hub.js'
import { Publisher } from './events/publisher.js'
import api from './http/api.js'
import docs from './http/docs.js'
import { clientErrorHandler, frameworkErrors, installErrorHandlers, schemaErrorFormatter } from './http/errors.js'
import upgradeRouter from './http/upgrades.js'
import { channels as diag } from './observability/channels.js'
import dashboard from './dashboard/plugin.js'
import { createConnectionLimiter } from './limits/connection-limiter.js'
import { createMessageLimiter } from './limits/message-limiter.js'
import { createActivity } from './observability/activity.js'
import { loggerOptions } from './observability/logger.js'
import { installLogSubscribers } from './observability/logs.js'
import metricsRoute from './observability/metrics.js'
import gatewayEvents from './gateway-events/reporter.js'
import { CloseCodes, MAX_FRAGMENTS } from './protocol/close-codes.js'
import { MAX_STREAM_NAME_LENGTH } from './protocol/streams.js'
import { AJV_OPTIONS } from './protocol/validation.js'
import webhooksApi from './http/webhooks.js'
import groupsApi from './http/groups.js'
import { webhookKeys } from './backend/webhooks.js'
import { Sender } from './webhooks/delivery.js'
import { Dispatcher } from './webhooks/dispatcher.js'
import { EndpointService } from './webhooks/endpoints.js'
import { AddressPolicy } from './webhooks/ssrf.js'
import { compileSchemas } from './publish/schemas.js'
import { transportLimit } from './publish/limits.js'

// A breaker opens when half of at least ten attempts within a minute failed;
// each failed probe doubles its cool-down, up to 32 times WEBHOOK_BREAKER_COOLDOWN.
const BREAKER = { windowMs: 60_000, minAttempts: 10, failureRatio: 0.5 }
/** How often a node asks Redis whether it persists. */
const PERSISTENCE_CHECK_MS = 60_000

export interface BuildOptions {
  /** where pino writes; stdout by default */
  logStream?: DestinationStream
}

const BACKEND_CONNECT_TIMEOUT_MS = 5000
const { version } = createRequire(import.meta.url)('../package.json') as { version: string }

/** Builds a node without listening; the entry (main.ts) listens. */
export async function buildApp (config: Config, opts: BuildOptions = {}): Promise<FastifyInstance> {
  installLogSubscribers()
  const app = Fastify({
    logger: loggerOptions(config.logLevel, opts.logStream),
    trustProxy: config.trustedProxies.length > 0 ? config.trustedProxies : false,
    bodyLimit: 64 * 1024,
    forceCloseConnections: true,
    // Fastify's default strips properties a schema does not allow; a publish
    // with a misspelt or unknown field must be refused (400), not half-applied.
    // Refuse what the schema does not allow instead of quietly fixing it:
    // no stripped properties, no 123 turned into "123". The options the frame
    // validators use, so both judge alike and fail in the same words.
    ajv: { customOptions: { ...AJV_OPTIONS } },
    // Path parameters are ids (up to 256 characters, each up to two UTF-16
    // units once decoded) or stream names (`user:` and an id): the router
    // must hand them to the schema, whose refusal says what an id is,
    // instead of refusing them itself at 100.
    routerOptions: { maxParamLength: MAX_STREAM_NAME_LENGTH },
    frameworkErrors,
    clientErrorHandler,
    schemaErrorFormatter,
    serverFactory: (handler) => createHttpServer(handler, config.handshakeTimeoutMs),
  })
  installErrorHandlers(app)
  // Every body the API takes is JSON: Fastify's text/plain parser would hand
  // the routes a string for their schema to refuse as VALIDATION, where the
  // contract answers any other type 415.
  app.removeContentTypeParser('text/plain')

  const log = app.log
  let lastBackendError = 0
  /** what the backend's client last said went wrong ("connect ECONNREFUSED 127.0.0.1:6380"): the cause of a failed connect, which itself only says the connection closed */
  let lastBackendCause: string | null = null
  // Logged as `error` (the message) and `code`, not as an `err` object: the
  // stack of a connection error says nothing an operator can act on.
  const onBackendError = (err: Error): void => {
    lastBackendCause = err.message
    // Redis errors repeat on every retry; one line a few seconds is enough.
    const now = Date.now()
    if (now - lastBackendError > 5000) { lastBackendError = now; log.warn({ error: err.message, code: (err as NodeJS.ErrnoException).code }, 'backend error') }
  }
  const backend = createBackend(config, { onError: onBackendError })
  const broker = backend.broker
  const ch = createChannels(config.keyPrefix)
  const connections = new Connections()
  const hub = new Hub(broker, ch, config.serverId, log, connections, lastWriteMs, backend.streams)

  const h = {
    config,
    log,
    version,
    startedAt: Date.now(),
    backend,
    channels: ch,
    hub,
    publisher: new Publisher(backend, hub, ch, config.serverId, createIdGenerator(), () => !h.probe.healthy, onBackendError),
    verifier: createTokenVerifier(config.jwt),
    revocations: createRevocations(backend.revocations, config.revocationTtlMs),
    connectionLimiter: createConnectionLimiter(backend.slots, backend.admissions, {
      perIp: config.limits.connectionsPerIp,
      perUser: config.limits.connectionsPerUser,
      evictOldest: config.limits.userConnectionPolicy === 'evict-oldest',
    }),
    handshakes: new HandshakeGate({
      inFlight: config.limits.nodeHandshakes,
      waiting: config.limits.nodeConnections,
      waitingPerIp: config.limits.connectionsPerIp,
      waitMs: config.handshakeTimeoutMs / 2,
    }, () => nodeRefusal(h, true)),
    messageLimiter: createMessageLimiter(backend.rates, config.limits.messagesPerMinute),
    originAllowed: createOriginCheck(config.allowedOrigins),
    apiKeyValid: createApiKeyCheck(config.apiKeys),
    connections,
    healthStreams: new Set(),
    draining: false,
    expiry: new ExpiryScheduler(config.authExpiryWarningMs),
    activity: createActivity(config.serverId),
    tails: new Tails(hub),
    address: '',
    dataChecks: compileSchemas(config.publish.schemas),
    persistent: null,
  } as Omit<Herald, 'registry'> as Herald
  const wh = config.webhooks
  const policy = new AddressPolicy(wh.allowPrivate)
  const sender = new Sender({ policy, allowHttp: wh.allowHttp, timeoutMs: wh.timeoutMs, userAgent: `Herald-Webhooks/${version}` })
  h.webhooks = {
    endpoints: new EndpointService(backend.webhooks, { policy, allowHttp: wh.allowHttp, secretOverlapMs: wh.secretOverlapMs }),
    dispatcher: new Dispatcher({
      store: backend.webhooks,
      directory: h.publisher.webhooks,
      broker,
      wakeChannel: webhookKeys(config.keyPrefix).wake,
      sender,
      serverId: config.serverId,
      log,
      onChange: (e, change, until) => {
        if (diag.webhookState.hasSubscribers) diag.webhookState.publish({ serverId: config.serverId, endpointId: e.id, change, log })
        // On the bus, for admins (and webhooks subscribed to admin.*): one node tells, the one that saw it.
        const data = change === 'recovered'
          ? { endpointId: e.id, url: e.url }
          : { endpointId: e.id, url: e.url, reason: change === 'gone' ? 'gone' : 'circuit_open', ...(change === 'opened' && until !== undefined ? { until: new Date(until).toISOString() } : {}) }
        h.publisher.publishEvent({ type: change === 'recovered' ? 'admin.webhook.recovered' : 'admin.webhook.disabled', data }).catch(onBackendError)
      },
      onError: onBackendError,
    }, {
      timeoutMs: wh.timeoutMs,
      retryBaseMs: wh.retryBaseMs,
      concurrency: wh.concurrency,
      breaker: { ...BREAKER, cooldownMs: wh.breakerCooldownMs, maxCooldownMs: wh.breakerCooldownMs * 32 },
    }),
  }
  const checkPersistence = async (): Promise<void> => { h.persistent = await backend.persistent() }
  // Our registry entry vanished (Redis lost its data, or we were taken for
  // dead): write back what this node knows.
  const restore = (): void => { restoreAfterLoss(h).catch(onBackendError) }
  h.registry = new Registry(backend.nodes, config.nodeTtlMs, () => nodeInfo(h), onBackendError, restore)
  h.probe = new Probe(broker, ch.probe(config.serverId), config.healthProbeIntervalMs, config.serverId)
  // What the subscriber missed while the connections were down is read back from the streams.
  const catchUp = (): void => { if (!closing) hub.gaps.catchUp().catch(onBackendError) }
  h.probe.onResubscribed(catchUp)
  // On a Cluster one shard's subscriber comes back on its own, the probe (on
  // one shard) none the wiser.
  broker.onShardResubscribed(catchUp)
  app.decorate('herald', h)
  hub.onControl((env) => handleControl(h, env))

  // A process restarted under the same SERVER_ID (a pinned compose name, a
  // pod whose container restarted) inherits the registry entry of the one
  // that died, so nobody ever sees that one as dead: its connections' slots
  // are freed here instead. Only slots opened before this process started.
  // One run, shared: the first connection starts it, boot waits for the same run.
  let predecessor: Promise<void> | null = null
  const reclaimPredecessor = async (): Promise<void> => {
    predecessor ??= h.connectionLimiter.reclaim(config.serverId, h.startedAt).then((n) => {
      if (n > 0) log.warn({ connections: n }, 'released the connection slots of an earlier process with this SERVER_ID')
    }, (err: Error) => {
      predecessor = null // try again on the next connection
      onBackendError(err)
    })
    await predecessor
  }

  // Set when the node closes: the connections close() ends are no outage to report.
  let closing = false
  broker.onStateChange((healthy) => {
    if (closing) return
    if (diag.backendState.hasSubscribers) diag.backendState.publish({ serverId: config.serverId, healthy, backend: backend.kind, log })
    // Beat at once on reconnect: it finds out whether Redis kept our state.
    if (healthy) {
      h.registry.beat().catch(onBackendError)
      void reclaimPredecessor()
    }
  })

  await app.register(websocket, {
    // No client tracking: the node keeps its own registry of connections, and ws's Set
    // plus a 'close' closure per client would only duplicate it.
    // A publish may be larger than any other frame (MAX_PUBLISH_BYTES); the rest are held to MAX_MESSAGE_BYTES per frame (session.ts).
    options: { maxPayload: transportLimit(config.limits), maxFragments: MAX_FRAGMENTS, perMessageDeflate: false, clientTracking: false },
    // Connections still open at close (no drain ran) are told to go elsewhere.
    preClose: (done: () => void) => {
      h.handshakes.close()
      for (const c of h.connections.values()) c.close(CloseCodes.DRAINING, 'server closing')
      for (const s of h.healthStreams) s.close(CloseCodes.DRAINING, 'server closing')
      app.websocketServer.close(() => done())
    },
  })
  await app.register(upgradeRouter)
  await app.register(docs)
  await app.register(healthEndpoint)
  await app.register(wsEndpoints)
  await app.register(socketIo)
  await app.register(api)
  await app.register(webhooksApi)
  await app.register(groupsApi)
  await app.register(metricsRoute)
  await app.register(gatewayEvents)
  await app.register(dashboard)

  const stops: Array<() => void> = []
  app.addHook('onReady', async () => {
    try {
      await inTime(backend.connect(), BACKEND_CONNECT_TIMEOUT_MS, () => new Error('timed out'))
    } catch (err) {
      // Start anyway: readiness reports 503 until the backend answers, and ioredis keeps retrying.
      log.error({ error: lastBackendCause ?? (err as Error).message }, 'backend unreachable at boot; retrying in the background')
    }
    if (broker.healthy) await reclaimPredecessor()
    const subscribed = Promise.all([hub.start(), h.probe.start()])
    if (broker.healthy) await subscribed
    else subscribed.catch(onBackendError)
    const registered = h.registry.start()
    if (broker.healthy) await registered.catch(onBackendError)
    else registered.catch(onBackendError)
    const reclaim = startReclaim({
      broker,
      nodes: backend.nodes,
      selfId: config.serverId,
      nodeTtlMs: config.nodeTtlMs,
      reclaimSlots: async (id) => {
        const n = await h.connectionLimiter.reclaim(id)
        // Its webhook deliveries too: what it had claimed is delivered here.
        const jobs = await h.webhooks.dispatcher.takeOverFrom(id)
        if (jobs > 0) log.warn({ node: id, webhooks: jobs }, 'took over the webhook deliveries of a dead node')
        return n
      },
      onReclaimed: (id, n) => log.warn({ node: id, connections: n }, 'reclaimed a dead node'),
      onError: onBackendError,
    })
    stops.push(startHeartbeat(h), startMetricsPush(h, onBackendError), startTopCounts(h, onBackendError), startRevocationSync(h, onBackendError), reclaim.stop, () => h.probe.stop(), () => h.expiry.stop())
    // Webhooks: the configured endpoints written, then this node delivers. With
    // Redis unreachable at boot, both wait for it in the background.
    const startWebhooks = async (): Promise<void> => {
      await h.webhooks.endpoints.seed(config.webhooks.seeds)
      await h.webhooks.dispatcher.start()
    }
    if (broker.healthy) await startWebhooks().catch(onBackendError)
    else {
      const retry = setInterval(() => {
        if (!broker.healthy) return
        clearInterval(retry)
        startWebhooks().catch(onBackendError)
      }, 1000)
      retry.unref()
      stops.push(() => clearInterval(retry))
    }
    if (broker.healthy) await checkPersistence().catch(onBackendError)
    const persistence = setInterval(() => { if (broker.healthy) checkPersistence().catch(onBackendError) }, PERSISTENCE_CHECK_MS)
    persistence.unref()
    stops.push(() => clearInterval(persistence))
    broker.onStateChange((healthy) => { if (healthy && !closing) checkPersistence().catch(onBackendError) })
  })
  app.addHook('onListen', async () => {
    const a = app.server.address()
    h.address = typeof a === 'object' && a !== null ? `${reachableHost(a.address)}:${a.port}` : String(a)
    await h.registry.beat().catch(onBackendError)
  })
  app.addHook('onClose', async () => {
    closing = true
    for (const stop of stops) stop()
    h.activity.close()
    h.tails.close()
    // In-flight deliveries are handed back and the node leaves the registry
    // before the backend closes; but during an outage those commands wait in
    // ioredis's offline queue for a Redis that may not come back, so they get
    // a bounded time (what they would have done, the dead-node reclaim and
    // the claims' takeover do anyway).
    // Answered 202, never written: the drain waited for Redis, which did not come back.
    const lost = broker.unwritten
    if (lost > 0) log.error({ messages: lost }, 'accepted publishes lost: Redis did not take them before the node stopped')
    // A Redis that holds publishes unanswered is away, whatever its sockets say (paused).
    await atMost((async () => {
      await h.webhooks.dispatcher.stop().catch(onBackendError)
      await h.registry.stop(config.serverId)
    })(), broker.healthy && lost === 0 ? SHUTDOWN_BACKEND_MS : SHUTDOWN_BACKEND_OUTAGE_MS)
    sender.close()
    h.publisher.close()
    await backend.close()
  })
  return app
}

/** How long a stopping node waits for its last backend commands; less while the backend is unreachable. */
const SHUTDOWN_BACKEND_MS = 5000
const SHUTDOWN_BACKEND_OUTAGE_MS = 500

/**
 * The address other nodes and operators can reach this node at. Bound to a
 * wildcard (the production default), the listen address says nothing: every
 * node would register 0.0.0.0, so the first external interface stands in.
 */
function reachableHost (bound: string): string {
  if (bound !== '0.0.0.0' && bound !== '::') return bound.includes(':') ? `[${bound}]` : bound
  for (const list of Object.values(networkInterfaces())) {
    for (const i of list ?? []) if (!i.internal && i.family === 'IPv4') return i.address
  }
  return hostname()
}
