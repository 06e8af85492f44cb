// A Socket.IO client on Node: connects as a user, subscribes on every
// `welcome`, refreshes its token in band, and prints what arrives until
// Ctrl-C. Against `npm start`, with the user token its banner printed:
//
//   HERALD_TOKEN=eyJ... node examples/socketio-client.js
//
// HERALD_URL (default http://127.0.0.1:3000) names another node. In your own
// project: `npm install socket.io-client`. In a browser the same code runs
// with `getToken` reading your app's token store (localStorage, a cookie-backed
// endpoint) instead of the environment.
import { io } from 'socket.io-client'

if (!process.env.HERALD_TOKEN) throw new Error('set HERALD_TOKEN to a user token: the one `npm start` printed, or `npx herald token --sub u1`')

const eventTypes = ['authentication.*', 'system.*']
// Your application's token source; called before every (re)connect.
const getToken = () => process.env.HERALD_TOKEN

const socket = io(process.env.HERALD_URL ?? 'http://127.0.0.1:3000', {
  auth: (cb) => cb({ token: getToken() }),
})

// `welcome` starts every connection, the first and each automatic reconnect.
socket.on('welcome', async (w) => {
  console.log('connected as', w.userId, 'on', w.serverId)
  const reply = await socket.timeout(5000).emitWithAck('subscribe', { eventTypes })
  if (reply.type === 'subscribed') console.log('subscribed', reply.payload.eventTypes.join(' '))
  else console.error('subscribe failed', reply.payload) // { code, message }
})
socket.on('event', (e) => console.log('event', e.type, JSON.stringify(e.data)))
socket.on('notification', (n) => console.log('notification', n.level, n.title, n.message))
// Before the token expires: refresh in band, no reconnect.
socket.on('auth_expiring', async () => {
  const reply = await socket.timeout(5000).emitWithAck('refresh', { token: getToken() })
  if (reply.type !== 'refreshed') console.error('refresh failed', reply.payload)
})
// Closed by the server (4001 expired, 4003 disconnected by an admin, 4004 revoked, …):
// socket.io-client does not reconnect after these; decide what the app does.
socket.on('close', ({ code, reason }) => console.log('closed by the server', code, reason))
// A refusal with data (bad token, connection limit, …) is final for socket.io-client.
// Without data it is a transport-level refusal, retried by itself.
socket.on('connect_error', (err) => console.log('refused:', err.message, err.data)) // data: { code, status, retryAfter? }

process.once('SIGINT', () => socket.disconnect())
