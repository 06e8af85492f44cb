import type { Herald } from '../context.js'
import { CloseCodes } from '../protocol/close-codes.js'
import type { Connection } from './connection.js'

/**
 * Graceful drain, on SIGTERM: readiness turns 503 and upgrades are refused at
 * once; open connections are closed with 1001 spread evenly over the window,
 * so their reconnects land on the other nodes as a trickle, not a wave; then
 * publishes held for Redis get HELD_WAIT_MS to be written.
 */
export async function drain (h: Herald, windowMs: number): Promise<void> {
  h.draining = true
  const conns = [...h.connections.values()]
  const streams = [...h.healthStreams]
  for (const s of streams) s.close(CloseCodes.DRAINING, 'server draining')
  if (conns.length > 0) await closeSpread(h, conns, windowMs)
  // Publishes answered 202 and held for Redis (an outage): written if it is
  // back in time; what is not is lost with the process, and logged (app.ts).
  const until = Date.now() + HELD_WAIT_MS
  while (h.backend.broker.unwritten > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 50))
}

/** How long a draining node waits for Redis to take the publishes it holds, after its connections are closed. */
export const HELD_WAIT_MS = 5000

/** Closes `conns` spread over `windowMs`, then gives their close handshakes a moment. */
async function closeSpread (h: Herald, conns: Connection[], windowMs: number): Promise<void> {
  const step = windowMs / conns.length
  const started = Date.now()
  await new Promise<void>((resolve) => {
    let i = 0
    const tick = (): void => {
      const due = step === 0 ? conns.length : Math.min(conns.length, Math.floor((Date.now() - started) / step) + 1)
      for (; i < due; i++) conns[i]!.close(CloseCodes.DRAINING, 'server draining')
      if (i >= conns.length) return resolve()
      setTimeout(tick, Math.max(1, Math.min(step, 50)))
    }
    tick()
  })
  // Give close handshakes a moment; stragglers are terminated by Connection.close.
  const deadline = Date.now() + 2500
  while (h.connections.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
}
