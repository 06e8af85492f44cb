import type { Herald } from '../context.js'
import { clusterStats, serverStats } from './stats.js'

/**
 * Pushes `metrics` to every admin connection on this node every
 * ADMIN_METRICS_INTERVAL. One timer per node, and no Redis reads while no
 * admin is connected.
 */
export function startMetricsPush (h: Herald, onError: (err: Error) => void): () => void {
  let running = false
  const timer = setInterval(() => {
    if (running) return
    const admins = [...h.connections.values()].filter((c) => c.kind === 'admin' && c.welcomed)
    if (admins.length === 0) return
    running = true
    clusterStats(h).then((global) => {
      const payload = { timestamp: new Date().toISOString(), server: serverStats(h), global }
      for (const c of admins) c.emit('metrics', payload)
    }, onError).finally(() => { running = false })
  }, h.config.adminMetricsIntervalMs)
  timer.unref()
  return () => clearInterval(timer)
}
