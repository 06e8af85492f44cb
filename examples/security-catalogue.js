// A service publishing the authentication, security and session catalogue to
// its users: each event names the user it concerns, and reaches that user's
// connections (and admins, and webhooks) only. These types are the services'
// own: no client may publish them, whatever its token says.
//
//   JWT_SECRET=<32+ chars> API_KEYS=<16+ chars> npm start
//   JWT_SECRET=... HERALD_API_KEY=... node examples/security-catalogue.js
import { randomUUID } from 'node:crypto'
import { api, open, sign } from './herald.js'

const USER = 'user-jo'
const SESSION = `sess-${randomUUID().slice(0, 8)}`
const CATALOGUE = [
  ['authentication.login.success', { ip: '203.0.113.7', method: 'password' }],
  ['authentication.mfa.challenge', { factor: 'totp' }],
  ['security.suspicious.activity', { reason: 'new device', country: 'NL' }],
  ['session.created', { device: 'Firefox on Linux' }],
  ['session.revoked', { by: 'user', reason: 'signed out elsewhere' }],
]

// The user's app: subscribed to the three families.
const app = await open(sign({ sub: USER, sid: SESSION, roles: ['user'], publish: ['*'] }))
await app.request('subscribe', { eventTypes: ['authentication.*', 'security.*', 'session.*'] })
const seen = []
const all = new Promise((resolve) => app.on('event', (e) => {
  console.log(`app: ${e.type} ${JSON.stringify(e.data)} (${e.stream} #${e.offset ?? '-'})`)
  seen.push(e.type)
  if (seen.length === CATALOGUE.length) resolve()
}))

// Even a token allowed to publish anything cannot forge the service's events.
await app.request('publish', { type: 'security.suspicious.activity', data: {} }).then(
  () => { throw new Error('a client published a security event') },
  (err) => console.log(`app: publishing security.* itself refused (${err.message.split(':')[0]})`),
)

// The service: one POST per event, for that user.
for (const [type, data] of CATALOGUE) {
  const r = await api('POST', '/api/events', { type, userId: USER, sessionId: SESSION, data })
  console.log(`service: ${type} accepted as ${r.id}`)
}
await all
console.log(`app: received all ${seen.length} events`)
app.close()
