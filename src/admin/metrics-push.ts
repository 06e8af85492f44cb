import type { Herald } from '../context.js'
import { statsReply } from './stats.js'

/**
 * Pushes `metrics` to every admin connection on this node every
 * ADMIN_METRICS_INTERVAL. One timer per node, and no Redis reads while no
 * admin is connected.
 */
export function startMetricsPush (h: Herald, onError: (err: Error) => void): () => void {
  let running = false
  const timer = setInterval(() => {
    if (running) return
    const admins = [...h.connections.admins()].filter((c) => c.welcomed)
    if (admins.length === 0) return
    running = true
    statsReply(h).then((stats) => {
      const payload = { timestamp: new Date().toISOString(), ...stats }
      for (const c of admins) c.emit('metrics', payload)
    }, onError).finally(() => { running = false })
  }, h.config.adminMetricsIntervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
