import diagnostics from 'node:diagnostics_channel'
import { CloseCodes } from '../protocol/close-codes.js'
import { channels, type BackendState, type ConnectionClose, type ConnectionOpen, type DeliveryFailed, type HandshakeRefused, type MessageDropped, type Overload, type WebhookAttempt, type WebhookState } from './channels.js'

const errFields = (err: unknown): { message: string, name?: string } =>
  err instanceof Error ? { name: err.name, message: err.message } : { message: String(err) }

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
    [channels.messageDropped, (m) => {
      const x = m as MessageDropped
      x.log.warn({ reason: x.reason, channel: x.channel, ...(x.error !== undefined ? { err: errFields(x.error) } : {}) }, 'message from Redis dropped')
    }],
    [channels.deliveryFailed, (m) => {
      const x = m as DeliveryFailed
      x.log.warn({ err: errFields(x.error) }, 'delivery failed; connection closed 1011')
    }],
    [channels.overload, (m) => {
      const x = m as Overload
      if (x.shedding) x.log.warn({ shed: x.shed, waiting: x.waiting, lagMs: Math.round(x.lagMs) }, 'node behind its input: shedding messages older than a second')
      else x.log.info({ shed: x.shed }, 'node caught up with its input')
    }],
    [channels.webhookAttempt, (m) => {
      const x = m as WebhookAttempt
      if (x.result === 'dead') x.log.warn({ endpointId: x.endpointId, webhookId: x.webhookId, attempt: x.attempt, outcome: x.outcome, status: x.status }, 'webhook delivery given up: now a dead letter')
    }],
    [channels.webhookState, (m) => {
      const x = m as WebhookState
      if (x.change === 'gone') x.log.warn({ endpointId: x.endpointId }, 'webhook endpoint answered 410: disabled')
      else if (x.change === 'opened') x.log.warn({ endpointId: x.endpointId }, 'webhook endpoint failing: its circuit breaker opened')
      else x.log.info({ endpointId: x.endpointId }, 'webhook endpoint recovered')
    }],
  ]
  for (const [ch, fn] of subs) ch.subscribe(fn)
}
