// A fleet of SDK clients in a child process of its own (open files are capped
// per process), each checking, as the app sees them, that every stream it
// reads arrives with no gap and no duplicate. The parent drives it over IPC:
//
//   parent -> { cmd: 'report' }    child -> { type: 'report', ...FleetReport }
//   parent -> { cmd: 'summary', since }   child -> { type: 'summary', ...FleetSummary }
//                                  (counts only: cheap enough to ask every second of a storm)
//   parent -> { cmd: 'stop' }      child closes its clients and exits
//   child -> { type: 'ready' } once every client is connected
//
// Configured by FLEET_CONFIG (JSON, FleetConfig). Run with `node --import tsx`.
// Used by test/cluster/resume.test.ts and bench/resume.ts.
import WebSocket from 'ws'
import { createSigner } from 'fast-jwt'
import { HeraldClient, type ClientOptions } from '../../src/client/index.js'

export interface FleetConfig {
  url: string
  /** user ids, one client each */
  users: string[]
  /** patterns each client holds */
  eventTypes: string[]
  /** the nodes' JWT_SECRET (HS256) */
  secret: string
  /** SDK options (backoff and jitter) */
  options?: Partial<ClientOptions>
}

export interface ClientReport {
  user: string
  /** per stream: messages delivered, and the first and last offsets */
  streams: Record<string, { count: number, from: number, to: number, epoch: string, epochs: number }>
  /** a message whose offset was not the last plus one (same epoch) */
  gaps: Array<{ stream: string, after: number, got: number }>
  /** a message delivered twice (by id) */
  duplicates: number
  /** `recovered` events with recovered false, and after a reconnect with true */
  unrecovered: number
  recoveredAfterReconnect: number
  reconnects: number
  /** ms from each close to the `recovered` of the connection that followed */
  catchUpMs: number[]
  connected: boolean
  /** distinct system.* events received */
  ticks: number
  /** when the last resume after a reconnect recovered, and the first message after it (ms since the epoch) */
  recoveredAt: number | null
  liveAt: number | null
  /** why its connections ended or attempts failed (the `disconnect` event's code and reason, numbers elided), and how often */
  disconnects: Record<string, number>
}

export interface FleetReport { clients: ClientReport[] }

/** Clients by state: `recovered` and `live` count recoveries at or after `since` (ms since the epoch); `disconnects` as in ClientReport, summed. */
export interface FleetSummary { clients: number, connected: number, recovered: number, live: number, disconnects: Record<string, number> }

export function summarize (reports: ClientReport[], since: number): FleetSummary {
  const disconnects: Record<string, number> = {}
  for (const r of reports) for (const [w, n] of Object.entries(r.disconnects)) disconnects[w] = (disconnects[w] ?? 0) + n
  const recovered = reports.filter((r) => r.recoveredAt !== null && r.recoveredAt >= since)
  return { clients: reports.length, connected: reports.filter((r) => r.connected).length, recovered: recovered.length, live: recovered.filter((r) => r.liveAt !== null).length, disconnects }
}

const cfg = JSON.parse(process.env.FLEET_CONFIG ?? '{}') as FleetConfig

if (process.send !== undefined && cfg.url !== undefined) {
  const sign = createSigner({ key: cfg.secret, algorithm: 'HS256', expiresIn: 3600_000 })
  const clients: Array<{ client: HeraldClient, report: ClientReport }> = []
  for (const user of cfg.users) {
    const report: ClientReport = { user, streams: {}, gaps: [], duplicates: 0, unrecovered: 0, recoveredAfterReconnect: 0, reconnects: 0, catchUpMs: [], connected: false, ticks: 0, recoveredAt: null, liveAt: null, disconnects: {} }
    const seen = new Set<string>()
    const last = new Map<string, { epoch: string, offset: number }>()
    let closedAt: number | null = null
    const client = new HeraldClient({
      url: cfg.url,
      WebSocket: WebSocket as unknown as ClientOptions['WebSocket'],
      getToken: () => sign({ sub: user, sid: `${user}-s`, roles: ['user'] }),
      eventTypes: cfg.eventTypes,
      baseDelayMs: 200,
      maxDelayMs: 2000,
      ...cfg.options,
    })
    const onMessage = (p: { id: string, type?: string, stream?: string, offset?: number, epoch?: string }): void => {
      if (seen.has(p.id)) { report.duplicates++; return }
      seen.add(p.id)
      if (p.type?.startsWith('system.') === true) report.ticks++
      if (report.recoveredAt !== null && report.liveAt === null) report.liveAt = Date.now()
      if (p.stream === undefined || p.offset === undefined || p.epoch === undefined) return
      const s = (report.streams[p.stream] ??= { count: 0, from: p.offset, to: p.offset, epoch: p.epoch, epochs: 1 })
      const l = last.get(p.stream)
      if (l !== undefined && l.epoch === p.epoch && p.offset !== l.offset + 1) report.gaps.push({ stream: p.stream, after: l.offset, got: p.offset })
      if (l !== undefined && l.epoch !== p.epoch) s.epochs++
      last.set(p.stream, { epoch: p.epoch, offset: p.offset })
      s.count++
      s.to = p.offset
      s.epoch = p.epoch
    }
    client.on('event', onMessage)
    client.on('notification', onMessage)
    client.on('welcome', (w) => {
      // The first welcome's positions are where this client starts: everything after them must arrive.
      for (const [s, p] of Object.entries(w.positions ?? {})) if (!last.has(s)) last.set(s, { epoch: p.epoch, offset: p.offset })
    })
    client.on('disconnect', (d) => {
      if (closedAt === null) closedAt = Date.now()
      report.connected = false
      const why = `${d.code} ${d.reason.replace(/[0-9]+ ms/g, 'N ms')}`.slice(0, 120)
      report.disconnects[why] = (report.disconnects[why] ?? 0) + 1
    })
    client.on('recovered', (r) => {
      if (!r.recovered) {
        report.unrecovered++
        // Told: the app refetches; the sequence starts again with the next message of those streams.
        for (const s of r.unrecovered) last.delete(s)
      } else if (r.reconnect) {
        report.recoveredAfterReconnect++
        report.recoveredAt = Date.now()
        report.liveAt = null
      }
      if (r.reconnect) {
        report.reconnects++
        if (closedAt !== null) report.catchUpMs.push(Date.now() - closedAt)
      }
      closedAt = null
    })
    client.on('state', (s) => {
      report.connected = s === 'connected'
      // History off: no resume, so back is when it is connected again.
      if (s === 'connected' && client.welcome?.positions === undefined && closedAt !== null) {
        report.reconnects++
        report.catchUpMs.push(Date.now() - closedAt)
        closedAt = null
      }
    })
    clients.push({ client, report })
  }
  // Connected in waves, not all 1,000 handshakes at once.
  const WAVE = 100
  for (let i = 0; i < clients.length; i += WAVE) {
    await Promise.all(clients.slice(i, i + WAVE).map(async ({ client }) => await client.connect()))
  }
  process.send({ type: 'ready' })
  process.on('message', (m: { cmd: string, since?: number }) => {
    if (m.cmd === 'report') process.send!({ type: 'report', clients: clients.map((c) => c.report) } satisfies FleetReport & { type: string })
    if (m.cmd === 'summary') process.send!({ type: 'summary', ...summarize(clients.map((c) => c.report), m.since ?? 0) })
    if (m.cmd === 'stop') {
      for (const { client } of clients) client.close()
      setTimeout(() => process.exit(0), 200)
    }
  })
  process.on('disconnect', () => process.exit(0))
}
