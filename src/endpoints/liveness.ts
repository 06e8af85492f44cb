import type { Herald } from '../context.js'
import { CloseCodes } from '../protocol/close-codes.js'

/**
 * One sweep per WEBSOCKET_HEARTBEAT_INTERVAL for the whole node: a connection
 * that sent nothing and answered no ping since the last sweep is closed 4009.
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
  }, h.config.heartbeatIntervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
