// The parent side of sdk-fleet.ts: SDK clients spread over child
// processes, each process checking its clients' sequences.
import { fork, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { ClientReport, FleetConfig, FleetReport, FleetSummary } from './sdk-fleet.js'

const FLEET = fileURLToPath(new URL('./sdk-fleet.ts', import.meta.url))

export interface Fleets {
  /** every client's report, from every process */
  report (): Promise<ClientReport[]>
  /** the clients by state, summed over the processes (see FleetSummary) */
  summary (since: number): Promise<FleetSummary>
  /** the fleet processes' ids */
  pids (): number[]
  stop (): Promise<void>
}

function next<T> (c: ChildProcess, type: string, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { off(); reject(new Error(`no ${type} from the fleet within ${timeoutMs} ms`)) }, timeoutMs)
    const onMessage = (m: { type?: string }): void => { if (m.type === type) { off(); resolve(m as T) } }
    const onExit = (code: number | null): void => { off(); reject(new Error(`the fleet exited (${code}) before ${type}`)) }
    const off = (): void => { clearTimeout(timer); c.off('message', onMessage); c.off('exit', onExit) }
    c.on('message', onMessage)
    c.once('exit', onExit)
  })
}

/** `users` split over `processes` children, all connected when this resolves. */
export async function startFleets (cfg: Omit<FleetConfig, 'users'> & { users: string[] }, processes: number, timeoutMs = 120_000): Promise<Fleets> {
  const per = Math.ceil(cfg.users.length / processes)
  const children: ChildProcess[] = []
  const stop = async (): Promise<void> => {
    await Promise.all(children.map(async (c) => {
      if (c.exitCode !== null || c.signalCode !== null) return
      const exited = new Promise((resolve) => c.once('exit', resolve))
      try { c.send({ cmd: 'stop' }) } catch {}
      const timer = setTimeout(() => c.kill('SIGKILL'), 3000)
      await exited
      clearTimeout(timer)
    }))
  }
  try {
    for (let i = 0; i < processes; i++) {
      const users = cfg.users.slice(i * per, (i + 1) * per)
      if (users.length === 0) break
      children.push(fork(FLEET, [], { execArgv: ['--import', 'tsx'], env: { ...process.env, FLEET_CONFIG: JSON.stringify({ ...cfg, users }) }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
    }
    await Promise.all(children.map(async (c) => await next(c, 'ready', timeoutMs)))
  } catch (err) {
    await stop()
    throw err
  }
  return {
    async report () {
      const rs = await Promise.all(children.map(async (c) => { const r = next<FleetReport>(c, 'report', 30_000); c.send({ cmd: 'report' }); return await r }))
      return rs.flatMap((r) => r.clients)
    },
    async summary (since) {
      const ss = await Promise.all(children.map(async (c) => { const r = next<FleetSummary>(c, 'summary', 120_000); c.send({ cmd: 'summary', since }); return await r }))
      return sumSummaries(ss)
    },
    pids: () => children.map((c) => c.pid!),
    stop,
  }
}

export function sumSummaries (ss: FleetSummary[]): FleetSummary {
  const disconnects: Record<string, number> = {}
  for (const s of ss) for (const [w, n] of Object.entries(s.disconnects)) disconnects[w] = (disconnects[w] ?? 0) + n
  const sum = (k: 'clients' | 'connected' | 'recovered' | 'live'): number => ss.reduce((n, s) => n + s[k], 0)
  return { clients: sum('clients'), connected: sum('connected'), recovered: sum('recovered'), live: sum('live'), disconnects }
}

/** p-th percentile (0-100) of xs; NaN when empty. */
export function percentile (xs: number[], p: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!
}
