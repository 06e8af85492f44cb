import type { Metrics } from '../../client/admin.js'

// The cluster as the page has seen it: the latest row of every node, rates
// worked out from the counts of successive heartbeats, and a ring of points
// (one per `metrics` push) for the charts. Everything is bounded: POINTS
// points, and per node the tallies of the last TALLY_WINDOW_MS.

export type Row = NonNullable<Metrics['global']>['nodes'][number]
export type ActivityRow = NonNullable<Row['activity']>
export type TallyKind = 'disconnects' | 'limitHits' | 'authFailures'

/** 15 minutes at a push every half second, two and a half hours at the default 5 s. */
export const POINTS = 1800
export const TALLY_WINDOW_MS = 5 * 60_000

export interface NodeView {
  readonly id: string
  /** index into the chart palette, kept for the node's life in the page */
  readonly color: number
  row: Row
  /** lapsed in the registry: shown unreachable until a node reclaims it */
  lapsed: boolean
  published: number | null
  delivered: number | null
  prev: { at: number, published: number, delivered: number } | null
  /** tallies at each heartbeat seen, oldest first: the baseline of "the last 5 minutes" is the newest older than the window */
  tallies: Array<{ at: number, activity: ActivityRow }>
}

export interface Point {
  t: number
  connections: Map<string, number | null>
  published: number | null
  delivered: number | null
  p99: Map<string, number | null>
}

export interface TallyLine { key: string, recent: number, total: number }
export interface GroupLine { name: string, connections: number, nodes: number }

export class ClusterModel {
  readonly nodes = new Map<string, NodeView>()
  readonly points: Point[] = []
  top: Metrics['top'] = null
  backendError: string | null = null
  private colors = 0

  /**
   * Groups with member connections, summed over the nodes that can be
   * reached (each reports its busiest): busiest first, at most `limit`.
   */
  groups (limit = 20): GroupLine[] {
    const sums = new Map<string, GroupLine>()
    for (const n of this.nodes.values()) {
      if (this.stateOf(n) === 'unreachable') continue
      for (const g of n.row.groups ?? []) {
        const line = sums.get(g.name) ?? { name: g.name, connections: 0, nodes: 0 }
        line.connections += g.connections
        line.nodes++
        sums.set(g.name, line)
      }
    }
    return [...sums.values()].sort((a, b) => b.connections - a.connections || (a.name < b.name ? -1 : 1)).slice(0, limit)
  }

  /** Takes one push (or a `stats` reply, with its timestamp). */
  update (m: Pick<Metrics, 'server' | 'global' | 'globalError'> & { top?: Metrics['top'] }, now: number): void {
    const rows = m.global?.nodes ?? []
    const lapsed = new Set(m.global?.lapsed ?? [])
    this.backendError = m.global === null ? (m.globalError?.message ?? 'the cluster backend is unreachable') : null
    if (m.top !== undefined) this.top = m.top
    if (m.global === null) {
      // Only this node's own figures come while the backend is down; the others keep their last rows.
      this.take(selfRow(m.server, now))
    } else {
      const seen = new Set<string>()
      for (const r of rows) { this.take(r); seen.add(r.serverId) }
      for (const [id, n] of this.nodes) {
        if (seen.has(id)) { n.lapsed = false; continue }
        // Gone from the registry: lapsed (unreachable until reclaimed), or reclaimed or left.
        if (lapsed.has(id)) n.lapsed = true
        else this.nodes.delete(id)
      }
    }
    const p: Point = { t: now, connections: new Map(), published: null, delivered: null, p99: new Map() }
    let pub = 0
    let del = 0
    let rated = false
    for (const n of this.nodes.values()) {
      const down = this.stateOf(n) === 'unreachable'
      p.connections.set(n.id, down ? null : n.row.connections)
      p.p99.set(n.id, down ? null : n.row.activity?.latencyMs.p99 ?? null)
      if (!down && n.published !== null && n.delivered !== null) { pub += n.published; del += n.delivered; rated = true }
    }
    if (rated) { p.published = pub; p.delivered = del }
    this.points.push(p)
    if (this.points.length > POINTS) this.points.splice(0, this.points.length - POINTS)
  }

  stateOf (n: NodeView): Row['state'] {
    return n.lapsed ? 'unreachable' : n.row.state
  }

  /** The cluster's rates: sums over the nodes that have them. */
  get latest (): Point | null { return this.points[this.points.length - 1] ?? null }

  /** Per key, summed over the nodes: since each started, and over the last TALLY_WINDOW_MS. */
  tallies (kind: TallyKind, now: number): TallyLine[] {
    const out = new Map<string, TallyLine>()
    for (const n of this.nodes.values()) {
      const last = n.tallies[n.tallies.length - 1]
      if (last === undefined) continue
      // The newest snapshot at or before the window's start. Without one: nothing
      // if the node started within the window (all it counted is recent), else
      // the oldest, as the page has not seen that far back.
      let base: ActivityRow | null = n.tallies[0]!.activity
      for (const s of n.tallies) if (s.at <= now - TALLY_WINDOW_MS) base = s.activity
      if (n.tallies[0]!.at > now - TALLY_WINDOW_MS && n.row.uptime * 1000 <= TALLY_WINDOW_MS) base = null
      for (const [key, total] of Object.entries(last.activity[kind])) {
        const before = base === null ? 0 : base[kind][key] ?? 0
        // A count lower than before: the node restarted; all of it is recent.
        const recent = total >= before ? total - before : total
        const line = out.get(key) ?? { key, recent: 0, total: 0 }
        line.recent += recent
        line.total += total
        out.set(key, line)
      }
    }
    return [...out.values()].sort((a, b) => b.recent - a.recent || b.total - a.total || a.key.localeCompare(b.key))
  }

  private take (r: Row): void {
    let n = this.nodes.get(r.serverId)
    const at = Date.parse(r.lastHeartbeat)
    if (n === undefined) {
      n = { id: r.serverId, color: this.colors++, row: r, lapsed: false, published: null, delivered: null, prev: null, tallies: [] }
      this.nodes.set(r.serverId, n)
    }
    n.row = r
    // Rates from two heartbeats of the node: other nodes' rows change only when they beat.
    if (n.prev === null || at > n.prev.at) {
      if (n.prev !== null && r.eventsPublished >= n.prev.published && r.eventsDelivered >= n.prev.delivered) {
        const s = (at - n.prev.at) / 1000
        n.published = (r.eventsPublished - n.prev.published) / s
        n.delivered = (r.eventsDelivered - n.prev.delivered) / s
      }
      n.prev = { at, published: r.eventsPublished, delivered: r.eventsDelivered }
      if (r.activity !== null) {
        n.tallies.push({ at, activity: r.activity })
        // Keep one snapshot older than the window, as the baseline.
        while (n.tallies.length > 2 && n.tallies[1]!.at <= at - TALLY_WINDOW_MS) n.tallies.shift()
        if (n.tallies.length > 2 * POINTS) n.tallies.shift()
      }
    }
  }
}

/** This node's row made from its own stats, while the registry cannot be read. */
function selfRow (s: Metrics['server'], now: number): Row {
  const connections = s.connections.total
  const socketio = s.socketio
  return {
    serverId: s.serverId,
    address: s.address,
    version: s.version,
    state: s.draining ? 'draining' : s.ready ? 'ready' : 'not-ready',
    draining: s.draining,
    connections,
    transports: { ws: connections - socketio, socketio },
    socketio,
    users: s.users,
    eventsPublished: s.eventsPublished,
    eventsDelivered: s.eventsDelivered,
    memoryRss: s.memory.rss,
    lastHeartbeat: new Date(now).toISOString(),
    uptime: s.uptime,
    activity: s.activity,
  }
}
