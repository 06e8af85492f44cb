// A support chat: a staff member and an anonymous website visitor in one
// conversation (the group `conv-<id>`), and an automation flow that receives
// every message as a webhook (examples/webhook-receiver.js, started here).
//
// What the service behind the website does, in order: mint a visitor token
// for the conversation (POST /api/visitors: a fresh identity, a member of
// that group only, allowed to publish chat messages only), make the staff
// member a member (PUT /api/groups/:group/members/:userId), register the
// automation webhook. The visitor's browser and the staff console then talk
// through Herald, possibly through different nodes.
//
//   JWT_SECRET=<32+ chars> API_KEYS=<16+ chars> WEBHOOK_ALLOW_HTTP=true WEBHOOK_ALLOW_PRIVATE=127.0.0.1/32 npm start
//   JWT_SECRET=... HERALD_API_KEY=... node examples/support-chat.js
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { api, open, sign } from './herald.js'

const CONVERSATION = `conv-${randomUUID().slice(0, 8)}`
const STAFF = 'staff-ana'

// The automation flow: the webhook receiver example, on a free port.
const port = await new Promise((resolve) => { const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)) }) })
const endpoint = await api('POST', '/api/webhooks', { url: `http://127.0.0.1:${port}/`, eventTypes: ['chat.*'], description: `automation for ${CONVERSATION}` })
const automation = spawn(process.execPath, [fileURLToPath(new URL('./webhook-receiver.js', import.meta.url))], { env: { ...process.env, WEBHOOK_SECRET: endpoint.secret, PORT: String(port) }, stdio: ['ignore', 'pipe', 'inherit'] })
const automated = []
automation.stdout.on('data', (d) => {
  for (const line of d.toString().split('\n').filter((l) => l.startsWith('{'))) {
    automated.push(JSON.parse(line))
    console.log(`automation: got ${line}`)
  }
})
await new Promise((resolve) => automation.stdout.once('data', resolve)) // "listening ..."

try {
  // The service: a visitor token for this conversation, and the staff member in it.
  const visitor = await api('POST', '/api/visitors', { group: CONVERSATION, publish: ['chat.message', 'chat.typing'], ttlSeconds: 900 })
  await api('PUT', `/api/groups/${CONVERSATION}/members/${STAFF}`)
  console.log(`service: visitor ${visitor.userId} and ${STAFF} in ${CONVERSATION}`)

  const visitorSocket = await open(visitor.token)
  const staffSocket = await open(sign({ sub: STAFF, sid: randomUUID(), roles: ['staff'], publish: ['chat.*'] }))
  await visitorSocket.request('subscribe', { eventTypes: ['chat.*'] })
  await staffSocket.request('subscribe', { eventTypes: ['chat.*'] })
  const heard = (socket, who) => new Promise((resolve) => socket.on('event', (e) => {
    console.log(`${who} sees: ${e.source.userId === STAFF ? 'staff' : 'visitor'}: ${e.data.text ?? e.type}`)
    if (e.type === 'chat.message' && e.source.userId !== (who === 'staff' ? STAFF : visitor.userId)) resolve(e)
  }))
  const staffHeard = heard(staffSocket, 'staff')
  const visitorHeard = heard(visitorSocket, 'visitor')

  const say = async (socket, text) => await socket.request('publish', { type: 'chat.message', group: CONVERSATION, data: { text } })
  const first = await say(visitorSocket, 'Hi, my order has not arrived.')
  await staffHeard
  const answer = await say(staffSocket, 'Sorry about that. Let me check it for you.')
  await visitorHeard
  // The visitor may publish its message types in its conversation, nothing else.
  await visitorSocket.request('publish', { type: 'chat.message', group: 'conv-someone-else', data: { text: 'hello?' } }).then(
    () => { throw new Error('the visitor published into another conversation') },
    (err) => console.log(`visitor: another conversation refused (${err.message.split(':')[0]})`),
  )

  // The automation flow got both messages, signed and verified.
  const ids = new Set([first.id, answer.id])
  const deadline = Date.now() + 10_000
  while (automated.filter((a) => ids.has(a.id)).length < 2) {
    if (Date.now() > deadline) throw new Error('the automation webhook did not receive both messages')
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  console.log('automation: received the whole conversation')
  visitorSocket.close()
  staffSocket.close()
  await api('DELETE', `/api/groups/${CONVERSATION}/members/${STAFF}`)
} finally {
  await api('DELETE', `/api/webhooks/${endpoint.id}`).catch(() => {})
  automation.kill()
}
