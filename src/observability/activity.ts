import type diagnostics from 'node:diagnostics_channel'
import { isAuthFailure } from '../errors.js'
import { channels, disconnectLabel, type AuthFailure, type ConnectionClose, type EventDelivered, type HandshakeRefused, type RateLimitHit } from './channels.js'

// What a node saw lately, for operators looking at the cluster (the admin
// dashboard): delivery latency percentiles over its recent deliveries, and
// counts since it started of disconnects by close code, limit hits by scope
// and auth failures by reason. Fed only by the diagnostics channels (its own
// node's messages), as metrics are; the node's stats (src/admin/stats.ts)
// carry a snapshot in its registry row and in admin pushes, so whoever reads
// the registry sees every node's. Every key is from a bounded set: close
// codes as metrics label them, limit scopes, error codes.

export interface ActivitySnapshot {
  /** from publish (on any node) to delivery on this node, ms, over the last LATENCY_WINDOW_MS (at most LATENCY_SAMPLES deliveries); null without any */
  latencyMs: { p50: number | null, p99: number | null, samples: number }
  disconnects: Record<string, number>
  limitHits: Record<string, number>
  authFailures: Record<string, number>
}

export interface Activity {
  snapshot (): ActivitySnapshot
  close (): void
}

/** Deliveries kept for the percentiles: a busy node's window is its last 4,096 deliveries. */
export const LATENCY_SAMPLES = 4096
export const LATENCY_WINDOW_MS = 60_000

/** The value below which `q` of the sorted values fall (nearest rank). */
export function quantile (sorted: ArrayLike<number>, q: number): number | null {
  if (sorted.length === 0) return null
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!
}

const bump = (counts: Record<string, number>, key: string): void => { counts[key] = (counts[key] ?? 0) + 1 }
const round = (ms: number | null): number | null => ms === null ? null : Math.round(ms * 10) / 10

/** One node's activity, from the messages of the diagnostics channels that name `serverId`. */
export function createActivity (serverId: string): Activity {
  // A ring of the latest deliveries: latency and when it was observed.
  const latency = new Float64Array(LATENCY_SAMPLES)
  const at = new Float64Array(LATENCY_SAMPLES)
  let next = 0
  let filled = 0
  const disconnects: Record<string, number> = {}
  const limitHits: Record<string, number> = {}
  const authFailures: Record<string, number> = {}

  const subs: Array<[diagnostics.Channel, (m: unknown) => void]> = [
    [channels.eventDelivered, (m) => {
      const x = m as EventDelivered
      // Measured once per message, as the Prometheus histogram is; a message nobody here took is no delivery.
      if (x.recipients === 0) return
      latency[next] = Math.max(0, x.latencyMs)
      at[next] = Date.now()
      next = (next + 1) % LATENCY_SAMPLES
      if (filled < LATENCY_SAMPLES) filled++
    }],
    [channels.connectionClose, (m) => { bump(disconnects, disconnectLabel(m as ConnectionClose)) }],
    [channels.rateLimit, (m) => { bump(limitHits, (m as RateLimitHit).scope) }],
    // As metrics count them: draining, outages and limits are not auth failures.
    [channels.handshakeRefused, (m) => { const x = m as HandshakeRefused; if (isAuthFailure(x.code)) bump(authFailures, x.code) }],
    [channels.authFailure, (m) => { bump(authFailures, (m as AuthFailure).reason) }],
  ]
  const mine = subs.map(([ch, fn]): [diagnostics.Channel, (m: unknown) => void] => [ch, (m) => { if ((m as { serverId?: unknown }).serverId === serverId) fn(m) }])
  for (const [ch, fn] of mine) ch.subscribe(fn)

  return {
    snapshot () {
      const since = Date.now() - LATENCY_WINDOW_MS
      const recent = new Float64Array(filled)
      let n = 0
      for (let i = 0; i < filled; i++) if (at[i]! >= since) recent[n++] = latency[i]!
      const sorted = recent.subarray(0, n).sort()
      return {
        latencyMs: { p50: round(quantile(sorted, 0.5)), p99: round(quantile(sorted, 0.99)), samples: n },
        disconnects: { ...disconnects },
        limitHits: { ...limitHits },
        authFailures: { ...authFailures },
      }
    },
    close () { for (const [ch, fn] of mine) ch.unsubscribe(fn) },
  }
}
