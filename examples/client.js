// The client SDK on Node: connects as a user, subscribes, and prints the
// events and notifications that arrive until Ctrl-C. Against `npm start`,
// with the user token its banner printed:
//
//   HERALD_TOKEN=eyJ... node examples/client.js
//
// HERALD_URL (default http://127.0.0.1:3000) names another node. In your own
// project: the packed @herald/client and `ws` (README, "Installing the
// packages"); browsers need no `ws`.
import WebSocket from 'ws' // browsers: leave it out, the global WebSocket is used
import { HeraldClient } from '@herald/client'

if (!process.env.HERALD_TOKEN) throw new Error('set HERALD_TOKEN to a user token: the one `npm start` printed, or `npx herald token --sub u1`')

const url = (process.env.HERALD_URL ?? 'http://127.0.0.1:3000').replace(/^http/, 'ws') + '/ws/events'

// Where the token comes from is your app's business: here the environment.
// In an app, ask your own backend instead (Node needs an absolute URL):
//   const res = await fetch('https://app.example.com/herald/token', { credentials: 'include' })
//   if (res.status === 401) return null // signed out: the client stops
//   if (!res.ok) throw new Error(`token endpoint: ${res.status}`) // retried with backoff
//   return await res.text()
async function getToken () {
  return process.env.HERALD_TOKEN ?? null
}

const client = new HeraldClient({
  url,
  WebSocket,
  getToken,
  eventTypes: ['authentication.*', 'system.*'],
})
client.on('event', (e) => console.log('event', e.type, JSON.stringify(e.data)))
client.on('notification', (n) => console.log('notification', n.level, n.title))
client.on('state', (s) => console.log('state', s))
client.on('revoked', (reason) => console.log('signed out:', reason))
client.on('error', (err) => console.error(err.code, err.message))
await client.connect()
await client.subscribe(['security.*'])
console.log('rtt', await client.ping(), 'ms')

// It reconnects by itself (a node draining, a network blip) until closed.
process.once('SIGINT', () => client.close())
