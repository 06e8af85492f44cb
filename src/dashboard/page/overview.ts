import { CloseCodeTable } from '../../protocol/close-codes.js'
import { drawChart, PALETTE, type Line } from './chart.js'
import { byId, el, fmtBytes, fmtInt, fmtMs, fmtRate, fmtUptime, replaceChildren } from './dom.js'
import type { ClusterModel, NodeView, TallyKind } from './model.js'

// The overview: cards, the nodes table, charts, tallies and leaderboards, all
// redrawn from the model after each push. Nothing here reads the network.

/** The charts show this much of the model's history. */
const CHART_MS = 15 * 60_000

const STATE_TEXT: Record<string, string> = { ready: 'ready', 'not-ready': 'not ready', draining: 'draining', unreachable: 'unreachable' }

const closeMeaning = new Map<string, string>([
  ...Object.entries(CloseCodeTable).map(([name, d]): [string, string] => [String(d.code), `${name.toLowerCase().replace(/_/g, ' ')}: ${d.meaning.split(/[:(]/)[0]!.trim()}`]),
  ['1005', 'closed without a code'],
  ['1006', 'lost: closed without a close frame'],
  ['client', 'closed by the client with a code of its own'],
])

const LIMITS: Record<string, string> = {
  'connection-ip': 'connections per IP',
  'connection-user': 'connections per user',
  'message-ip': 'messages per minute per IP',
  'message-user': 'messages per minute per user',
}

export class Overview {
  constructor (private readonly model: ClusterModel, private readonly inspect: (userId: string) => void) {}

  render (now: number): void {
    this.cards()
    this.nodes()
    this.charts(now)
    this.tally('disconnects', 'tally-disconnects', (k) => [el('td', {}, k), el('td', { class: 'muted' }, closeMeaning.get(k) ?? '')], now)
    this.tally('limitHits', 'tally-limits', (k) => [el('td', {}, LIMITS[k] ?? k)], now)
    this.tally('authFailures', 'tally-auth', (k) => [el('td', {}, el('code', {}, k))], now)
    this.tops()
    this.groups()
  }

  /** Charts only: the theme changed. */
  redraw (now: number): void { this.charts(now) }

  private cards (): void {
    const m = this.model
    const nodes = [...m.nodes.values()]
    const ready = nodes.filter((n) => m.stateOf(n) === 'ready').length
    byId('c-nodes').textContent = `${ready} / ${nodes.length}`
    const down = nodes.filter((n) => m.stateOf(n) === 'unreachable').length
    byId('c-nodes-sub').textContent = down > 0 ? `${down} unreachable` : 'ready / known'
    let ws = 0
    let sio = 0
    for (const n of nodes) {
      if (m.stateOf(n) === 'unreachable') continue
      ws += n.row.transports.ws
      sio += n.row.transports.socketio
    }
    byId('c-conns').textContent = fmtInt(ws + sio)
    byId('c-conns-sub').textContent = `WebSocket ${fmtInt(ws)} · Socket.IO ${fmtInt(sio)}`
    const last = m.latest
    byId('c-pub').textContent = fmtRate(last?.published ?? null)
    byId('c-del').textContent = fmtRate(last?.delivered ?? null)
    let p50: number | null = null
    let p99: number | null = null
    for (const n of nodes) {
      const l = n.row.activity?.latencyMs
      if (l === undefined || m.stateOf(n) === 'unreachable') continue
      if (l.p50 !== null && (p50 === null || l.p50 > p50)) p50 = l.p50
      if (l.p99 !== null && (p99 === null || l.p99 > p99)) p99 = l.p99
    }
    byId('c-lat').textContent = p50 === null ? '–' : `${fmtMs(p50)} / ${fmtMs(p99)} ms`
    const note = byId('backend-note')
    note.hidden = m.backendError === null
    note.textContent = m.backendError === null ? '' : `Cluster figures unavailable: ${m.backendError}. This node's own figures still come; other nodes show their last known rows.`
  }

  private nodes (): void {
    const m = this.model
    const rows = [...m.nodes.values()].sort((a, b) => a.id.localeCompare(b.id)).map((n) => this.nodeRow(n))
    if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: '14', class: 'muted' }, 'Waiting for the first figures…')))
    replaceChildren(byId('nodes').querySelector('tbody')!, rows)
  }

  private nodeRow (n: NodeView): HTMLTableRowElement {
    const m = this.model
    const r = n.row
    const state = m.stateOf(n)
    const down = state === 'unreachable'
    const num = (field: string, text: string): HTMLTableCellElement => el('td', { class: 'num', 'data-field': field }, down ? '–' : text)
    const lat = r.activity?.latencyMs
    return el('tr', { 'data-node': n.id, 'data-state': state, class: down ? 'down' : '' },
      el('th', { scope: 'row' }, el('span', { class: `swatch s${n.color % PALETTE}`, 'aria-hidden': 'true' }), n.id),
      el('td', {}, r.address),
      el('td', {}, r.version),
      el('td', {}, down ? '–' : fmtUptime(r.uptime)),
      el('td', { 'data-field': 'state' }, el('span', { class: `state ${state}` }, STATE_TEXT[state] ?? state)),
      num('connections', fmtInt(r.connections)),
      num('ws', fmtInt(r.transports.ws)),
      num('socketio', fmtInt(r.transports.socketio)),
      num('users', fmtInt(r.users)),
      num('published', fmtRate(n.published)),
      num('delivered', fmtRate(n.delivered)),
      num('p50', fmtMs(lat?.p50 ?? null)),
      num('p99', fmtMs(lat?.p99 ?? null)),
      num('memory', fmtBytes(r.memoryRss)),
    )
  }

  private charts (now: number): void {
    const pts = this.model.points.filter((p) => p.t >= now - CHART_MS)
    const times = pts.map((p) => p.t)
    const nodes = [...this.model.nodes.values()]
    const perNode = (pick: (p: typeof pts[number], id: string) => number | null): Line[] =>
      nodes.map((n) => ({ label: n.id, color: n.color, values: pts.map((p) => pick(p, n.id)) }))
    const conns = perNode((p, id) => p.connections.get(id) ?? null)
    const rates: Line[] = [
      { label: 'published/s', color: 0, values: pts.map((p) => p.published) },
      { label: 'delivered/s', color: 1, values: pts.map((p) => p.delivered) },
    ]
    const lat = perNode((p, id) => p.p99.get(id) ?? null)
    const lastOf = (l: Line): number | null => l.values[l.values.length - 1] ?? null
    const say = (lines: Line[], f: (v: number | null) => string): string => lines.map((l) => `${l.label} ${f(lastOf(l))}`).join(', ')
    drawChart(byId<HTMLCanvasElement>('chart-conns'), times, conns, `Connections per node, now: ${say(conns, (v) => v === null ? 'unknown' : fmtInt(v))}`)
    drawChart(byId<HTMLCanvasElement>('chart-rates'), times, rates, `Per second, now: ${say(rates, fmtRate)}`)
    drawChart(byId<HTMLCanvasElement>('chart-latency'), times, lat, `Delivery latency p99 per node, now: ${say(lat, (v) => `${fmtMs(v)} ms`)}`)
    legend('legend-conns', conns, (v) => v === null ? '–' : fmtInt(v))
    legend('legend-rates', rates, fmtRate)
    legend('legend-latency', lat, (v) => `${fmtMs(v)} ms`)

    function legend (id: string, lines: Line[], f: (v: number | null) => string): void {
      replaceChildren(byId(id), lines.map((l) => el('li', {}, el('span', { class: `swatch s${l.color % PALETTE}`, 'aria-hidden': 'true' }), `${l.label} `, el('strong', {}, f(lastOf(l))))))
    }
  }

  private tally (kind: TallyKind, table: string, label: (key: string) => HTMLElement[], now: number): void {
    const lines = this.model.tallies(kind, now)
    const rows = lines.map((l) => el('tr', { 'data-key': l.key }, ...label(l.key), el('td', { class: 'num' }, fmtInt(l.recent)), el('td', { class: 'num' }, fmtInt(l.total))))
    if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: String(byId(table).querySelectorAll('thead th').length), class: 'muted' }, 'None so far.')))
    replaceChildren(byId(table).querySelector('tbody')!, rows)
  }

  private groups (): void {
    const lines = this.model.groups()
    const items = lines.map((g) => el('li', { 'data-group': g.name }, el('span', { class: 'name' }, el('code', {}, g.name)), el('span', { class: 'count' }, `${fmtInt(g.connections)}${g.nodes > 1 ? ` on ${g.nodes} nodes` : ''}`)))
    if (items.length === 0) items.push(el('li', { class: 'muted none' }, 'No member connected to a group.'))
    replaceChildren(byId('groups'), items)
  }

  private tops (): void {
    const top = this.model.top
    for (const w of document.querySelectorAll('.top-window')) w.textContent = String(top?.windowMinutes ?? 5)
    const none = (text: string): HTMLLIElement => el('li', { class: 'muted none' }, text)
    const users = top === null
      ? [none(this.model.backendError === null ? 'Waiting for the first figures…' : 'Unavailable while the cluster backend is unreachable.')]
      : top.users.map((u) => {
        const b = el('button', { type: 'button', class: 'link-button', 'data-user': u.name }, 'Inspect')
        b.setAttribute('aria-label', `Inspect user ${u.name}`)
        b.addEventListener('click', () => this.inspect(u.name))
        return el('li', {}, el('span', { class: 'name' }, u.name), el('span', { class: 'count' }, fmtInt(u.count)), b)
      })
    if (users.length === 0) users.push(none('No connections opened lately.'))
    replaceChildren(byId('top-users'), users)
    const types = top === null ? [none('–')] : top.eventTypes.map((e) => el('li', {}, el('span', { class: 'name' }, el('code', {}, e.name)), el('span', { class: 'count' }, fmtInt(e.count))))
    if (types.length === 0) types.push(none('No events published lately.'))
    replaceChildren(byId('top-types'), types)
  }
}
