// A small TCP load balancer for tests, in the spirit of the shipped
// deploy/ configs: round-robin over backend nodes, health-checked on
// GET /ws/health, skipping nodes that are down or not ready, and falling
// through to the next backend when a connect is refused. Each client TCP
// connection is piped to one backend for its whole life, so a WebSocket or
// Socket.IO client that reconnects through it lands on whichever node is live.
import net from 'node:net'

export interface Backend { port: number, alive: boolean, connections: number }

export interface Balancer {
  port: number
  /** ws://127.0.0.1:<port> */
  ws: string
  /** http://127.0.0.1:<port> */
  http: string
  backends: Backend[]
  /** marks a backend up or down now (what a health check would find) */
  setAlive (port: number, alive: boolean): void
  /** TCP connections currently piped, per backend port */
  open (): Record<number, number>
  /** destroys every connection now open, both sides (a network blip: clients see 1006, the nodes stay up); new ones are still accepted */
  cut (): void
  close (): Promise<void>
}

/**
 * `healthIntervalMs`: between checks (0: none). `checkTimeoutMs`: a check not
 * answered within it fails (default the larger of 1 s and 4 intervals).
 * `fall`: failed checks in a row that take a backend out (default 1); the
 * shipped configs wait 2 to 3 s for an answer and take a node out after 2
 * (deploy/haproxy.cfg `timeout check 3s` `fall 2`, k8s/deployment.yaml's
 * readinessProbe), so that a node busy for a moment stays in.
 */
export async function startBalancer (ports: number[], opts: { healthIntervalMs?: number, checkTimeoutMs?: number, fall?: number } = {}): Promise<Balancer> {
  const backends: Backend[] = ports.map((port) => ({ port, alive: true, connections: 0 }))
  const sockets = new Set<net.Socket>()
  let next = 0

  const pick = (tried: Set<number>): Backend | undefined => {
    for (let i = 0; i < backends.length; i++) {
      const b = backends[(next + i) % backends.length]!
      if (b.alive && !tried.has(b.port)) {
        next = (next + i + 1) % backends.length
        return b
      }
    }
    return undefined
  }

  const server = net.createServer((client) => {
    sockets.add(client)
    client.on('close', () => sockets.delete(client))
    client.on('error', () => {})
    client.pause()
    const tried = new Set<number>()
    const route = (): void => {
      const b = pick(tried)
      if (b === undefined) { client.destroy(); return }
      tried.add(b.port)
      const upstream = net.connect({ port: b.port, host: '127.0.0.1' })
      sockets.add(upstream)
      let connected = false
      upstream.once('connect', () => {
        connected = true
        b.connections++
        upstream.once('close', () => { b.connections-- })
        client.pipe(upstream)
        upstream.pipe(client)
        client.resume()
      })
      upstream.on('close', () => {
        sockets.delete(upstream)
        if (connected) client.destroy()
      })
      client.once('close', () => upstream.destroy())
      upstream.on('error', () => {
        if (connected || client.destroyed) return
        // Refused: the node is gone. Take it out and try the next one.
        b.alive = false
        route()
      })
    }
    route()
  })

  // Health checks: a backend is in rotation while GET /ws/health answers 200.
  let stopped = false
  const interval = opts.healthIntervalMs ?? 250
  const fall = opts.fall ?? 1
  const failures = new Map<Backend, number>()
  const judged = (b: Backend, ok: boolean): void => {
    if (stopped) return
    const n = ok ? 0 : (failures.get(b) ?? 0) + 1
    failures.set(b, n)
    if (ok) b.alive = true
    else if (n >= fall) b.alive = false
  }
  const check = async (b: Backend): Promise<void> => {
    try {
      const res = await fetch(`http://127.0.0.1:${b.port}/ws/health`, { signal: AbortSignal.timeout(opts.checkTimeoutMs ?? Math.max(1000, interval * 4)) })
      await res.arrayBuffer()
      judged(b, res.status === 200)
    } catch {
      judged(b, false)
    }
  }
  let running = false
  // healthIntervalMs 0: no health checks (a balancer that has not noticed yet); refused connects still fall through.
  const timer = interval > 0
    ? setInterval(() => {
      if (running) return
      running = true
      Promise.all(backends.map(check)).finally(() => { running = false })
    }, interval)
    : undefined

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as net.AddressInfo).port
  const cut = (): void => { for (const s of sockets) s.destroy() }
  return {
    port,
    ws: `ws://127.0.0.1:${port}`,
    http: `http://127.0.0.1:${port}`,
    backends,
    setAlive (p, alive) { for (const b of backends) if (b.port === p) b.alive = alive },
    open () { return Object.fromEntries(backends.map((b) => [b.port, b.connections])) },
    cut,
    async close () {
      stopped = true
      if (timer !== undefined) clearInterval(timer)
      cut()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
