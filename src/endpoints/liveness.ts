import type { WebSocket } from 'ws'
import type { Herald } from '../context.js'
import { CloseCodes } from '../protocol/close-codes.js'
import type { Connection } from './connection.js'

// A connection heard from (pong or any frame) since the last sweep: this
// module's mark on each connection, declared and touched here only.
const kAlive = Symbol('herald.alive')
type Watched = Connection & { [kAlive]: boolean }

/** Sets up a connection's heartbeat mark; called by its constructor. */
export function watched (c: Connection): void { (c as Watched)[kAlive] = true }

/** The peer answered a ping or sent a frame. */
export function heardFrom (c: Connection): void { (c as Watched)[kAlive] = true }

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
    for (const conn of h.connections.values()) {
      const c = conn as Watched
      if (!c[kAlive]) {
        c.log.info('heartbeat timeout')
        c.close(CloseCodes.HEARTBEAT_TIMEOUT, 'heartbeat timeout')
        continue
      }
      c[kAlive] = false
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
