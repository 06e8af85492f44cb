import diagnostics from 'node:diagnostics_channel'
import { CloseCodes } from '../protocol/close-codes.js'
import { channels, type BackendState, type ConnectionClose, type ConnectionOpen, type HandshakeRefused } from './channels.js'

// The log lines of a connection's life and of the node's backend, written by
// subscribing to the core's diagnostics channels (as metrics do). Errors in
// unusual paths are still logged where they happen, with their context.

let installed = false

/** Subscribes once per process: each message carries the logger to write with. */
export function installLogSubscribers (): void {
  if (installed) return
  installed = true
  const subs: Array<[diagnostics.Channel, (m: unknown) => void]> = [
    [channels.connectionOpen, (m) => {
      const x = m as ConnectionOpen
      x.log.info({ connectionId: x.connectionId, userId: x.userId, endpoint: x.endpoint, transport: x.transport, ip: x.ip, sessionId: x.sessionId }, 'connection open')
    }],
    [channels.connectionClose, (m) => {
      const x = m as ConnectionClose
      // A client cut off for not reading (4008) is one an operator must see.
      if (x.code === CloseCodes.SLOW_CONSUMER) x.log.warn({ code: x.code, durationMs: x.durationMs }, 'connection closed')
      else x.log.info({ code: x.code, durationMs: x.durationMs }, 'connection closed')
    }],
    [channels.handshakeRefused, (m) => {
      const x = m as HandshakeRefused
      x.log.info({ endpoint: x.endpoint, code: x.code }, 'upgrade refused')
    }],
    [channels.backendState, (m) => {
      const x = m as BackendState
      if (x.healthy) x.log.info({ backend: x.backend, healthy: true }, 'backend connected')
      else x.log.warn({ backend: x.backend, healthy: false }, 'backend unreachable')
    }],
  ]
  for (const [ch, fn] of subs) ch.subscribe(fn)
}
