import fp from 'fastify-plugin'
import type { Herald } from '../context.js'
import { errorBody, HeraldError, type ErrorCode } from '../errors.js'
import { channels as diag } from '../observability/channels.js'
import { serverFrame } from '../protocol/envelope.js'
import { CloseCodes } from '../protocol/close-codes.js'
import { Counts } from '../limits/counts.js'
import { streamAnswered } from './liveness.js'

// The health stream needs no token, so it gets its own small bounds instead of
// the cluster-wide client limits: a monitor needs a handful, and an anonymous
// peer must not be able to hold sockets without end.
export const HEALTH_STREAMS_PER_NODE = 256
export const HEALTH_STREAMS_PER_IP = 8

export interface Health {
  healthy: boolean
  serverId: string
  connections: number
  redisConnected: boolean
  backend: 'memory' | 'redis'
  uptime: number
  draining: boolean
  /** ms of the last loopback probe through the backend */
  probeLatencyMs: number | null
  /** the backend keeps its data across its restart (AOF): what the webhook queue's durability needs; null until known */
  persistent: boolean | null
}

export function health (h: Herald): Health {
  return {
    healthy: h.probe.healthy && !h.draining,
    serverId: h.config.serverId,
    connections: h.connections.size,
    redisConnected: h.backend.kind === 'redis' && h.backend.broker.healthy,
    backend: h.backend.kind,
    uptime: Math.round((Date.now() - h.startedAt) / 1000),
    draining: h.draining,
    probeLatencyMs: h.probe.lastLatencyMs,
    persistent: h.persistent,
  }
}

/** /ws/health: readiness (200/503), liveness (?probe=live), or a health stream on upgrade. */
export default fp(async function healthEndpoint (app) {
  const h = app.herald
  const perIp = new Counts()
  // One timer and one frame per tick for all streams, running only while there are any.
  let pushTimer: NodeJS.Timeout | null = null
  const pushAll = (): void => {
    if (h.healthStreams.size === 0) {
      if (pushTimer !== null) clearInterval(pushTimer)
      pushTimer = null
      return
    }
    const frame = serverFrame('health', health(h))
    for (const ws of h.healthStreams) if (ws.readyState === 1) ws.send(frame)
  }
  app.addHook('onClose', async () => { if (pushTimer !== null) clearInterval(pushTimer) })
  app.route({
    method: 'GET',
    url: '/ws/health',
    schema: {
      summary: 'Readiness (200 ready, 503 draining or backend down); ?probe=live for liveness',
      querystring: { type: 'object', properties: { probe: { type: 'string', enum: ['ready', 'live'] } } },
    },
    logLevel: 'warn',
    // The one route Fastify routes upgrades to (src/endpoints/ws.ts refuses them elsewhere).
    config: { upgrades: true },
    preValidation: async (req, reply) => {
      if (!req.ws) return
      const refuse = (code: ErrorCode): void => {
        if (diag.handshakeRefused.hasSubscribers) diag.handshakeRefused.publish({ serverId: h.config.serverId, endpoint: 'health', code, ip: req.ip, log: req.log })
        void reply.code(new HeraldError(code).statusCode).send(errorBody(code))
      }
      if (h.draining) return refuse('DRAINING')
      if (h.healthStreams.size >= HEALTH_STREAMS_PER_NODE) return refuse('NODE_FULL')
      if (perIp.of(req.ip) >= HEALTH_STREAMS_PER_IP) {
        reply.header('retry-after', '5')
        return refuse('CONNECTION_LIMIT')
      }
    },
    handler: async (req, reply) => {
      reply.header('cache-control', 'no-store')
      if ((req.query as { probe?: string }).probe === 'live') {
        return { alive: true, serverId: h.config.serverId, uptime: Math.round((Date.now() - h.startedAt) / 1000) }
      }
      const body = health(h)
      return reply.code(body.healthy ? 200 : 503).send(body)
    },
    wsHandler: (ws, req) => {
      const ip = req.ip
      perIp.add(ip)
      h.healthStreams.add(ws)
      streamAnswered(ws)
      ws.send(serverFrame('health', health(h)))
      pushTimer ??= setInterval(pushAll, h.config.healthStreamIntervalMs).unref()
      // The node's heartbeat sweep (liveness.ts) pings streams too.
      ws.on('pong', () => streamAnswered(ws))
      ws.on('message', (_d, isBinary) => {
        streamAnswered(ws)
        if (isBinary) ws.close(CloseCodes.UNSUPPORTED_DATA, 'text frames only')
      })
      ws.on('error', () => {})
      ws.on('close', () => {
        h.healthStreams.delete(ws)
        perIp.remove(ip)
      })
    },
  })
}, { name: 'herald-health' })
