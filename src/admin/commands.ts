import type { Herald } from '../context.js'
import type { Connection } from '../endpoints/connection.js'
import { commonCommands, payloadOf } from '../endpoints/commands.js'
import type { HandlerTable } from '../endpoints/session.js'
import type { ClientMessage } from '../protocol/envelope.js'
import * as actions from './actions.js'
import { statsReply } from './stats.js'
import { TAIL_MAX_PER_SECOND } from './tail.js'
import { listEndpoints } from '../webhooks/endpoints.js'

const actorOf = (conn: Connection): actions.Actor => ({ kind: 'admin', id: conn.userId })

/** /ws/admin: everything /ws/events offers, plus cluster introspection and control. */
export const adminCommands: HandlerTable = {
  ...commonCommands,

  async get_stats (h: Herald, conn: Connection, msg: ClientMessage) {
    conn.reply('stats', await statsReply(h), msg.id)
  },

  async list_connections (h: Herald, conn: Connection, msg: ClientMessage) {
    const p = payloadOf(conn, msg, 'list_connections')
    if (p === null) return
    conn.reply('connections', { userId: p.userId, connections: await actions.listConnections(h, p.userId) }, msg.id)
  },

  async disconnect (h: Herald, conn: Connection, msg: ClientMessage) {
    const p = payloadOf(conn, msg, 'disconnect')
    if (p === null) return
    if (p.connectionId !== undefined) {
      await actions.disconnectConnection(h, actorOf(conn), p.connectionId)
      return conn.reply('disconnected', { connectionId: p.connectionId }, msg.id)
    }
    await actions.disconnectUser(h, actorOf(conn), p.userId!)
    conn.reply('disconnected', { userId: p.userId }, msg.id)
  },

  async revoke_session (h: Herald, conn: Connection, msg: ClientMessage) {
    const p = payloadOf(conn, msg, 'revoke_session')
    if (p === null) return
    conn.reply('revoked', await actions.revoke(h, actorOf(conn), { kind: 'session', sessionId: p.sessionId, at: Date.now() }), msg.id)
  },

  async revoke_user (h: Herald, conn: Connection, msg: ClientMessage) {
    const p = payloadOf(conn, msg, 'revoke_user')
    if (p === null) return
    conn.reply('revoked', await actions.revoke(h, actorOf(conn), { kind: 'user', userId: p.userId, at: Date.now() }), msg.id)
  },

  async broadcast (h: Herald, conn: Connection, msg: ClientMessage) {
    const p = payloadOf(conn, msg, 'broadcast')
    if (p === null) return
    conn.reply('broadcasted', await actions.broadcast(h, actorOf(conn), p), msg.id)
  },

  start_tail (h: Herald, conn: Connection, msg: ClientMessage) {
    const p = payloadOf(conn, msg, 'start_tail')
    if (p === null) return
    const eventTypes = [...new Set(p.eventTypes ?? ['*'])]
    const userId = p.userId ?? null
    h.tails.start(conn, eventTypes, userId)
    conn.reply('tail_started', { eventTypes, userId, maxPerSecond: TAIL_MAX_PER_SECOND }, msg.id)
  },

  async list_webhooks (h: Herald, conn: Connection, msg: ClientMessage) {
    const webhooks = await actions.withBackend(h, 'listing the webhook endpoints', async () => await listEndpoints(h.backend.webhooks, Date.now()))
    conn.reply('webhooks', { webhooks, persistent: h.persistent }, msg.id)
  },

  stop_tail (h: Herald, conn: Connection, msg: ClientMessage) {
    h.tails.stop(conn)
    conn.reply('tail_stopped', {}, msg.id)
  },
}
