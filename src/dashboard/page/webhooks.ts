import type { HeraldAdmin, WebhookList } from '../../client/admin.js'
import { byId, el, fmtInt, fmtTime, replaceChildren } from './dom.js'

// The webhooks view: every endpoint's state, queue, breaker and latest
// attempts, read with `list_webhooks` while the tab is shown (the queue is
// not pushed with the metrics: reading it costs the backend a call per
// endpoint, which only an operator looking should pay).

const REFRESH_MS = 5000

type Endpoint = WebhookList['webhooks'][number]

function age (ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '–'
  if (ms < 1000) return `${ms} ms`
  if (ms < 60_000) return `${Math.round(ms / 1000)} s`
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`
  return `${(ms / 3_600_000).toFixed(1)} h`
}

function stateOf (e: Endpoint): string {
  if (!e.enabled) return e.disabledReason === 'gone' ? 'disabled: answered 410' : 'disabled'
  return 'enabled'
}

export class WebhooksView {
  private admin: HeraldAdmin | null = null
  private timer: ReturnType<typeof setInterval> | null = null
  private readonly body = byId('webhooks-list').querySelector('tbody')!

  constructor () {
    byId('webhooks-refresh').addEventListener('click', () => { void this.load() })
  }

  attach (admin: HeraldAdmin | null): void {
    this.admin = admin
    if (admin === null) { this.hide(); this.body.replaceChildren(); byId('webhooks-status').textContent = '' }
  }

  /** The tab is shown: read now, then every few seconds until it is hidden. */
  show (): void {
    this.hide()
    void this.load()
    this.timer = setInterval(() => { void this.load() }, REFRESH_MS)
  }

  hide (): void {
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  private async load (): Promise<void> {
    const admin = this.admin
    if (admin === null) return
    let list: WebhookList
    try {
      list = await admin.webhooks()
    } catch (err) {
      byId('webhooks-error').textContent = `Could not list the webhook endpoints: ${(err as Error).message}`
      return
    }
    if (admin !== this.admin) return
    byId('webhooks-error').textContent = ''
    this.render(list)
  }

  private render (list: WebhookList): void {
    const hooks = list.webhooks
    const queued = hooks.reduce((n, e) => n + (e.queue?.depth ?? 0), 0)
    const open = hooks.filter((e) => e.queue?.breaker === 'open').length
    byId('webhooks-status').textContent = hooks.length === 0
      ? 'No webhook endpoints. Create one with POST /api/webhooks.'
      : `${hooks.length} endpoint${hooks.length === 1 ? '' : 's'} · ${fmtInt(queued)} deliver${queued === 1 ? 'y' : 'ies'} queued · ${open} breaker${open === 1 ? '' : 's'} open · read at ${fmtTime(new Date().toISOString())}`
    const note = byId('webhooks-persistence')
    note.hidden = list.persistent !== false
    note.textContent = 'The backend does not persist its data (no Redis AOF): queued deliveries are lost if it restarts.'
    const rows = hooks.map((e) => {
      const q = e.queue
      const r = e.recent
      const last = r?.last
      const lastText = last === undefined ? 'none yet' : `${last.outcome}${last.status !== undefined ? ` ${last.status}` : ''} at ${fmtTime(last.at)}${last.error !== undefined ? `: ${last.error}` : ''}`
      return el('tr', { 'data-webhook': e.id, 'data-breaker': q?.breaker ?? 'closed', 'data-enabled': String(e.enabled) },
        el('td', {}, el('code', {}, e.id), e.description !== undefined ? el('div', { class: 'hint' }, e.description) : null),
        el('td', { class: 'url' }, e.url),
        el('td', {}, e.eventTypes.join(', ')),
        el('td', { 'data-field': 'state' }, stateOf(e)),
        el('td', { 'data-field': 'breaker' }, q === undefined ? '–' : q.breaker === 'open' && q.breakerUntil !== undefined ? `open until ${fmtTime(q.breakerUntil)}` : q.breaker),
        el('td', { class: 'num', 'data-field': 'depth' }, q === undefined ? '–' : fmtInt(q.depth)),
        el('td', { class: 'num', 'data-field': 'oldest' }, age(q?.oldestAgeMs)),
        el('td', { class: 'num', 'data-field': 'failed' }, r === undefined ? '–' : `${r.failed} of ${r.attempts}`),
        el('td', { 'data-field': 'last' }, lastText),
      )
    })
    if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: '9', class: 'muted' }, 'No endpoints.')))
    replaceChildren(this.body, rows)
  }
}
