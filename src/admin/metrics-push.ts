import type { Herald } from '../context.js'
import { HeraldError } from '../errors.js'
import { statsReply } from './stats.js'
import { readTop } from './top.js'

/**
 * Pushes `metrics` to every admin connection on this node every
 * ADMIN_METRICS_INTERVAL: the stats, and the leaderboards (null while the
 * backend cannot answer). One timer per node, and no Redis reads while no
 * admin is connected.
 */
export function startMetricsPush (h: Herald, onError: (err: Error) => void): () => void {
  let running = false
  const timer = setInterval(() => {
    if (running) return
    const admins = [...h.connections.admins()].filter((c) => c.welcomed)
    if (admins.length === 0) return
    running = true
    // The stats come whatever the leaderboards do.
    const top = readTop(h).catch((err: unknown) => {
      if (!(err instanceof HeraldError)) onError(err as Error)
      return null
    })
    Promise.all([statsReply(h), top]).then(([stats, top]) => {
      const payload = { timestamp: new Date().toISOString(), ...stats, top }
      for (const c of admins) c.emit('metrics', payload)
    }, onError).finally(() => { running = false })
  }, h.config.adminMetricsIntervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
