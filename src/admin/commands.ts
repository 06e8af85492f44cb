import type { Herald } from '../context.js'
import type { Connection } from '../endpoints/connection.js'
import { commonCommands } from '../endpoints/commands.js'
import type { HandlerTable } from '../endpoints/session.js'
import type { ClientMessage } from '../protocol/envelope.js'
import { clusterStats, serverStats } from './stats.js'

/** /ws/admin: everything /ws/events offers, plus cluster introspection. */
export const adminCommands: HandlerTable = {
  ...commonCommands,
  async get_stats (h: Herald, conn: Connection, msg: ClientMessage) {
    conn.reply('stats', { server: serverStats(h), global: await clusterStats(h) }, msg.id)
  },
}
