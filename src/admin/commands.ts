import type { Herald } from '../context.js'
import type { Connection } from '../endpoints/connection.js'
import { commonCommands } from '../endpoints/commands.js'
import type { HandlerTable } from '../endpoints/session.js'
import { NOTIFICATION_LEVELS, type NotificationInput } from '../events/model.js'
import type { ClientMessage } from '../protocol/envelope.js'
import { ID_RULE, isId } from '../protocol/identifiers.js'
import * as actions from './actions.js'
import { statsReply } from './stats.js'

/** payload[field] when it is a usable id; otherwise answers INVALID_PAYLOAD and returns null. */
function idField (conn: Connection, msg: ClientMessage, field: string): string | null {
  const v = msg.payload?.[field]
  if (isId(v)) return v
  conn.fail('INVALID_PAYLOAD', `payload.${field} must be a string of ${ID_RULE}`, msg.id)
  return null
}

const actorOf = (conn: Connection): actions.Actor => ({ kind: 'admin', id: conn.userId })

/** /ws/admin: everything /ws/events offers, plus cluster introspection and control. */
export const adminCommands: HandlerTable = {
  ...commonCommands,

  async get_stats (h: Herald, conn: Connection, msg: ClientMessage) {
    conn.reply('stats', await statsReply(h), msg.id)
  },

  async list_connections (h: Herald, conn: Connection, msg: ClientMessage) {
    const userId = idField(conn, msg, 'userId')
    if (userId === null) return
    conn.reply('connections', { userId, connections: await actions.listConnections(h, userId) }, msg.id)
  },

  async disconnect (h: Herald, conn: Connection, msg: ClientMessage) {
    if (msg.payload?.connectionId !== undefined) {
      const connectionId = idField(conn, msg, 'connectionId')
      if (connectionId === null) return
      await actions.disconnectConnection(h, actorOf(conn), connectionId)
      return conn.reply('disconnected', { connectionId }, msg.id)
    }
    const userId = idField(conn, msg, 'userId')
    if (userId === null) return
    await actions.disconnectUser(h, actorOf(conn), userId)
    conn.reply('disconnected', { userId }, msg.id)
  },

  async revoke_session (h: Herald, conn: Connection, msg: ClientMessage) {
    const sessionId = idField(conn, msg, 'sessionId')
    if (sessionId === null) return
    conn.reply('revoked', await actions.revoke(h, actorOf(conn), { kind: 'session', sessionId, at: Date.now() }), msg.id)
  },

  async revoke_user (h: Herald, conn: Connection, msg: ClientMessage) {
    const userId = idField(conn, msg, 'userId')
    if (userId === null) return
    conn.reply('revoked', await actions.revoke(h, actorOf(conn), { kind: 'user', userId, at: Date.now() }), msg.id)
  },

  async broadcast (h: Herald, conn: Connection, msg: ClientMessage) {
    const p = msg.payload ?? {}
    const ok = typeof p.level === 'string' && (NOTIFICATION_LEVELS as readonly string[]).includes(p.level) &&
      typeof p.title === 'string' && p.title.length >= 1 && p.title.length <= 200 &&
      typeof p.message === 'string' && p.message.length >= 1 && p.message.length <= 2000 &&
      (p.data === undefined || (typeof p.data === 'object' && p.data !== null && !Array.isArray(p.data)))
    if (!ok) return conn.fail('INVALID_PAYLOAD', `payload must be {level: ${NOTIFICATION_LEVELS.join('|')}, title (1-200 chars), message (1-2000 chars), data?: object}`, msg.id)
    const n: NotificationInput = { level: p.level as NotificationInput['level'], title: p.title as string, message: p.message as string }
    if (p.data !== undefined) n.data = p.data as Record<string, unknown>
    conn.reply('broadcasted', await actions.broadcast(h, actorOf(conn), n), msg.id)
  },
}
