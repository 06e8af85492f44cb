import type { HeraldAdmin, TailBatch } from '../../client/admin.js'
import { parsePattern, PATTERN_RULE } from '../../protocol/patterns.js'
import { byId, el, fmtInt, fmtTime } from './dom.js'

// The live tail: the node sends at most `maxPerSecond` matching events a
// second and counts the rest; the page shows the newest MAX_ROWS, newest
// first, with a marker wherever events were left out.

const MAX_ROWS = 500
const DATA_CHARS = 240

export class TailView {
  private admin: HeraldAdmin | null = null
  private running = false
  private shown = 0
  private dropped = 0
  /** the running filter, in words */
  private filter = ''
  /** events a second the node sends at most */
  private cap = 0
  private readonly body = byId('tail-events').querySelector('tbody')!
  private readonly start = byId<HTMLButtonElement>('tail-start')
  private readonly stop = byId<HTMLButtonElement>('tail-stop')

  constructor () {
    byId<HTMLFormElement>('tail-form').addEventListener('submit', (e) => { e.preventDefault(); void this.begin() })
    this.stop.addEventListener('click', () => { void this.end() })
    byId('tail-clear').addEventListener('click', () => { this.body.replaceChildren(); this.shown = 0; this.dropped = 0; this.status() })
  }

  attach (admin: HeraldAdmin | null): void {
    this.admin = admin
    if (admin === null) { this.running = false; this.body.replaceChildren(); this.shown = 0; this.dropped = 0; this.buttons(); this.status() }
  }

  /** One `tail` push: rows added in one go, newest on top. */
  add (batch: TailBatch): void {
    if (!this.running) return
    const rows = document.createDocumentFragment()
    for (const e of batch.events) {
      const data = JSON.stringify(e.data)
      rows.append(el('tr', { 'data-type': e.type, 'data-id': e.id },
        el('td', { class: 'time' }, fmtTime(e.timestamp)),
        el('td', {}, el('code', {}, e.type)),
        el('td', {}, e.userId ?? ''),
        el('td', {}, e.sessionId ?? ''),
        el('td', { class: 'data' }, data.length > DATA_CHARS ? data.slice(0, DATA_CHARS) + '…' : data),
      ))
    }
    // Left out after the batch's events had filled the node's share: newer than them.
    if (batch.dropped > 0) {
      this.dropped += batch.dropped
      rows.append(el('tr', { class: 'dropped' }, el('td', { colspan: '5' }, `${fmtInt(batch.dropped)} more matching event${batch.dropped === 1 ? '' : 's'} here, over the node's cap of ${this.cap} a second: not shown`)))
    }
    this.shown += batch.events.length
    // The batch arrived oldest first: reversed, the newest is on top.
    this.body.prepend(...[...rows.childNodes].reverse())
    while (this.body.childElementCount > MAX_ROWS) this.body.lastElementChild!.remove()
    this.counts()
  }

  private async begin (): Promise<void> {
    const error = byId('tail-error')
    error.textContent = ''
    if (this.admin === null) return
    const eventTypes = byId<HTMLInputElement>('tail-pattern').value.split(',').map((s) => s.trim()).filter((s) => s.length > 0)
    const bad = eventTypes.find((p) => parsePattern(p) === null)
    if (bad !== undefined) { error.textContent = `"${bad}" is not a pattern: ${PATTERN_RULE}.`; return }
    const userId = byId<HTMLInputElement>('tail-user').value.trim()
    try {
      const started = await this.admin.startTail({ ...(eventTypes.length > 0 ? { eventTypes } : {}), ...(userId !== '' ? { userId } : {}) })
      this.running = true
      this.cap = started.maxPerSecond
      this.filter = `${started.eventTypes.join(', ')}${started.userId !== null ? ` of user ${started.userId}` : ''} · at most ${started.maxPerSecond} a second`
    } catch (err) {
      error.textContent = `The node refused the tail: ${(err as Error).message}`
    }
    this.buttons()
    this.status()
  }

  private async end (): Promise<void> {
    this.running = false
    this.buttons()
    this.status()
    try { await this.admin?.stopTail() } catch {}
  }

  private buttons (): void {
    this.stop.disabled = !this.running
    this.start.textContent = this.running ? 'Apply filter' : 'Start tail'
  }

  /** Said once per change (a live region): started, filter, stopped. */
  private status (): void {
    byId('tail-status').textContent = this.running ? `Tailing ${this.filter}.` : this.shown + this.dropped > 0 ? 'Stopped.' : 'Not tailing.'
    this.counts()
  }

  /** Updated with every batch, so not a live region. */
  private counts (): void {
    byId('tail-counts').textContent = this.shown + this.dropped > 0 ? `Shown ${fmtInt(this.shown)} · left out by the cap ${fmtInt(this.dropped)}` : ''
  }
}
