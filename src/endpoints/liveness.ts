import type { WebSocket } from 'ws'
import type { Herald } from '../context.js'
import { CloseCodes } from '../protocol/close-codes.js'

/** Health streams heard from (pong or frame) since the last sweep. */
const answered = new WeakSet<WebSocket>()
export function streamAnswered (ws: WebSocket): void { answered.add(ws) }

/**
 * One sweep per WEBSOCKET_HEARTBEAT_INTERVAL for the whole node: a connection
 * (or health stream) that sent nothing and answered no ping since the last
 * sweep is closed 4009.
 */
export function startHeartbeat (h: Herald): () => void {
  const timer = setInterval(() => {
    for (const c of h.connections.values()) {
      if (!c.alive) {
        c.log.info('heartbeat timeout')
        c.close(CloseCodes.HEARTBEAT_TIMEOUT, 'heartbeat timeout')
        continue
      }
      c.alive = false
      c.ping()
    }
    // Unauthenticated health streams get the same treatment: a peer gone
    // without a FIN is closed, not held for ever.
    for (const ws of h.healthStreams) {
      if (!answered.delete(ws)) {
        ws.close(CloseCodes.HEARTBEAT_TIMEOUT, 'heartbeat timeout')
        continue
      }
      ws.ping()
    }
  }, h.config.heartbeatIntervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
