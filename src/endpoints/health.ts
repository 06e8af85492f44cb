import fp from 'fastify-plugin'
import type { Herald } from '../context.js'
import { serverFrame } from '../protocol/envelope.js'
import { CloseCodes } from '../protocol/close-codes.js'

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
}

export function health (h: Herald): Health {
  return {
    healthy: h.probe.healthy && !h.draining,
    serverId: h.config.serverId,
    connections: h.connections.size,
    redisConnected: h.broker.kind === 'redis' && h.broker.healthy,
    backend: h.broker.kind,
    uptime: Math.round((Date.now() - h.startedAt) / 1000),
    draining: h.draining,
    probeLatencyMs: h.probe.lastLatencyMs,
  }
}

/** /ws/health: readiness (200/503), liveness (?probe=live), or a health stream on upgrade. */
export default fp(async function healthEndpoint (app) {
  const h = app.herald
  app.route({
    method: 'GET',
    url: '/ws/health',
    schema: {
      summary: 'Readiness (200 ready, 503 draining or backend down); ?probe=live for liveness',
      querystring: { type: 'object', properties: { probe: { type: 'string', enum: ['ready', 'live'] } } },
    },
    logLevel: 'warn',
    handler: async (req, reply) => {
      reply.header('cache-control', 'no-store')
      if ((req.query as { probe?: string }).probe === 'live') {
        return { alive: true, serverId: h.config.serverId, uptime: Math.round((Date.now() - h.startedAt) / 1000) }
      }
      const body = health(h)
      return reply.code(body.healthy ? 200 : 503).send(body)
    },
    wsHandler: (ws) => {
      h.healthStreams.add(ws)
      const push = (): void => { if (ws.readyState === 1) ws.send(serverFrame('health', health(h))) }
      push()
      const timer = setInterval(push, h.config.healthStreamIntervalMs)
      ws.on('message', (_d, isBinary) => { if (isBinary) ws.close(CloseCodes.UNSUPPORTED_DATA, 'text frames only') })
      ws.on('error', () => {})
      ws.on('close', () => { clearInterval(timer); h.healthStreams.delete(ws) })
    },
  })
}, { name: 'herald-health' })
