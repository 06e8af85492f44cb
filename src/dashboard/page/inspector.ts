import type { ConnectionList, HeraldAdmin } from '../../client/admin.js'
import { confirmAction } from './confirm.js'
import { byId, el, fmtTime, replaceChildren } from './dom.js'

// The user inspector: a user's connections on every node, and the operator's
// actions on them, each confirmed first. The node publishes every action as
// an admin.* event (the audit trail).

export class Inspector {
  private admin: HeraldAdmin | null = null
  private userId: string | null = null
  private readonly body = byId('inspect-connections').querySelector('tbody')!

  constructor () {
    byId<HTMLFormElement>('inspect-form').addEventListener('submit', (e) => {
      e.preventDefault()
      const u = byId<HTMLInputElement>('inspect-user').value.trim()
      if (u === '') { byId('inspect-error').textContent = 'Enter a user id.'; return }
      void this.look(u)
    })
    byId('inspect-refresh').addEventListener('click', () => { if (this.userId !== null) void this.look(this.userId) })
    byId('inspect-disconnect-user').addEventListener('click', () => {
      const u = this.userId
      if (u === null) return
      void this.act(`Disconnect every connection of ${u}?`, `Each of them is closed (4003) on whatever node holds it, and the client does not reconnect by itself. Their tokens stay valid: a new connection is accepted.`, 'Disconnect all',
        async (a) => { await a.disconnectUser(u); return `Disconnected every connection of ${u}.` })
    })
    byId('inspect-revoke-user').addEventListener('click', () => {
      const u = this.userId
      if (u === null) return
      void this.act(`Revoke user ${u}?`, `Every token issued to ${u} until now is refused from now on, on every node, and their connections are closed (4004). They must sign in again to get a new token.`, 'Revoke user',
        async (a) => { const r = await a.revokeUser(u); return `Revoked user ${u}: tokens issued up to ${fmtTime(r.revokedAt)} are refused.` })
    })
  }

  attach (admin: HeraldAdmin | null): void {
    this.admin = admin
    if (admin === null) { this.userId = null; byId('inspect-result').hidden = true; this.body.replaceChildren() }
  }

  /** Shows a user (the leaderboards' Inspect buttons come here). */
  async look (userId: string): Promise<void> {
    byId<HTMLInputElement>('inspect-user').value = userId
    byId('inspect-error').textContent = ''
    if (this.admin === null) return
    let list: ConnectionList
    try {
      list = await this.admin.listConnections(userId)
    } catch (err) {
      byId('inspect-error').textContent = `Could not list the connections of ${userId}: ${(err as Error).message}`
      return
    }
    this.userId = userId
    this.show(list)
  }

  private show (list: ConnectionList): void {
    const nodes = new Set(list.connections.map((c) => c.serverId))
    byId('inspect-title').textContent = `${list.userId}: ${list.connections.length} connection${list.connections.length === 1 ? '' : 's'} on ${nodes.size} node${nodes.size === 1 ? '' : 's'}`
    byId('inspect-result').hidden = false
    const rows = list.connections.map((c) => {
      const disconnect = el('button', { type: 'button', class: 'small' }, 'Disconnect')
      disconnect.setAttribute('aria-label', `Disconnect connection ${c.connectionId}`)
      disconnect.addEventListener('click', () => {
        void this.act('Disconnect this connection?', `Connection ${c.connectionId} on ${c.serverId} is closed (4003); the client does not reconnect by itself.`, 'Disconnect',
          async (a) => { await a.disconnectConnection(c.connectionId); return `Disconnected ${c.connectionId}.` })
      })
      const cells = [
        el('td', {}, c.serverId),
        el('td', {}, el('code', {}, c.connectionId)),
        el('td', {}, c.sessionId ?? '–'),
        el('td', {}, c.endpoint),
        el('td', {}, c.ip),
        el('td', {}, fmtTime(c.connectedAt)),
      ]
      const actions = el('td', { class: 'actions' }, disconnect)
      const sid = c.sessionId
      if (sid !== null) {
        const revoke = el('button', { type: 'button', class: 'small danger' }, 'Revoke session')
        revoke.setAttribute('aria-label', `Revoke session ${sid}`)
        revoke.addEventListener('click', () => {
          void this.act(`Revoke session ${sid}?`, `Every connection of session ${sid} is closed (4004) and its token refused from now on, on every node.`, 'Revoke session',
            async (a) => { await a.revokeSession(sid); return `Revoked session ${sid}.` })
        })
        actions.append(revoke)
      }
      return el('tr', { 'data-connection': c.connectionId, 'data-node': c.serverId }, ...cells, actions)
    })
    if (rows.length === 0) rows.push(el('tr', {}, el('td', { colspan: '7', class: 'muted' }, 'No open connections.')))
    replaceChildren(this.body, rows)
  }

  private async act (title: string, text: string, label: string, run: (a: HeraldAdmin) => Promise<string>): Promise<void> {
    const admin = this.admin
    if (admin === null || !await confirmAction(title, text, label)) return
    const status = byId('inspect-status')
    try {
      status.textContent = await run(admin)
    } catch (err) {
      status.textContent = ''
      byId('inspect-error').textContent = `${label} failed: ${(err as Error).message}`
      return
    }
    if (this.userId !== null) await this.look(this.userId)
  }
}
