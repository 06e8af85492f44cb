import type { Herald } from '../context.js'
import { CloseCodes } from '../protocol/close-codes.js'

/**
 * Graceful drain, on SIGTERM: readiness turns 503 and upgrades are refused at
 * once; open connections are closed with 1001 spread evenly over the window,
 * so their reconnects land on the other nodes as a trickle, not a wave.
 */
export async function drain (h: Herald, windowMs: number): Promise<void> {
  h.draining = true
  const conns = [...h.connections.values()]
  const streams = [...h.healthStreams]
  for (const s of streams) s.close(CloseCodes.DRAINING, 'server draining')
  if (conns.length === 0) return
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
