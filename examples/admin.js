// The admin API on Node: the cluster's nodes, one user's connections, then a
// live tail of every event until Ctrl-C. Against `npm start`, with the admin
// token its banner printed:
//
//   HERALD_ADMIN_TOKEN=eyJ... node examples/admin.js demo-user
//
// HERALD_URL (default http://127.0.0.1:3000) names another node. In your own
// project: the packed @herald/client and `ws` (README, "Installing the
// packages").
import WebSocket from 'ws'
import { HeraldAdmin } from '@herald/client/admin'

if (!process.env.HERALD_ADMIN_TOKEN) throw new Error('set HERALD_ADMIN_TOKEN to an admin token: the one `npm start` printed, or `npx herald token --sub ops --roles admin`')

const url = (process.env.HERALD_URL ?? 'http://127.0.0.1:3000').replace(/^http/, 'ws') + '/ws/admin'
const userId = process.argv[2] ?? 'demo-user'

const admin = new HeraldAdmin({ url, WebSocket, getToken: () => process.env.HERALD_ADMIN_TOKEN ?? null })
admin.on('error', (err) => console.error(err.message))
admin.on('tail', ({ events, dropped }) => {
  for (const e of events) console.log('tail', e.type, e.userId ?? '-', JSON.stringify(e.data))
  if (dropped > 0) console.log(`tail: ${dropped} left out (over 50 a second)`)
})

const stats = await admin.stats()
for (const n of stats.global?.nodes ?? []) console.log('node', n.serverId, n.state, `${n.connections} connections`)
const { connections } = await admin.listConnections(userId)
console.log(`${userId}: ${connections.length} connection(s)`, connections.map((c) => `${c.connectionId}@${c.serverId}`).join(' '))
// await admin.revokeUser(userId) would close them everywhere (4004).
await admin.startTail({ eventTypes: ['*'] })
console.log('tailing')

process.once('SIGINT', () => admin.close())
