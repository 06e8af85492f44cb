// A security agent streaming heartbeats, status and log batches up its
// socket, and a SOC dashboard watching them live: the agent publishes into
// the group `soc:agents`, the dashboard is a member of it. The agent's
// identity comes from its token (`sub`), never from what it sends: Herald
// stamps each event with `source`, and refuses an event that claims another
// agent's id.
//
//   JWT_SECRET=<32+ chars> API_KEYS=<16+ chars> npm start          # a node
//   JWT_SECRET=... HERALD_API_KEY=... node examples/soc-agent.js    # this
//
// ROUNDS=n stops after n heartbeats (default: runs until Ctrl-C).
import { randomUUID } from 'node:crypto'
import { hostname } from 'node:os'
import { open, sign } from './herald.js'

const AGENT = `agent-${hostname().replace(/[^A-Za-z0-9_.-]/g, '').slice(0, 32) || 'host'}`
const GROUP = 'soc:agents'
const ROUNDS = Number(process.env.ROUNDS ?? Infinity)

// The dashboard: a member of the group (token claim), watching agent.* events.
const dashboard = await open(sign({ sub: 'soc-dashboard', sid: randomUUID(), roles: ['user'], groups: [GROUP] }))
await dashboard.request('subscribe', { eventTypes: ['agent.*'] })
// The group's events reach it in the order they were published: once it
// has the agent's `stopping`, it has everything the agent sent before.
let done
const finished = new Promise((resolve) => { done = resolve })
dashboard.on('event', (e) => {
  const what = e.type === 'agent.logs' ? `${e.data.lines.length} log lines` : JSON.stringify(e.data)
  console.log(`dashboard: ${e.type} from ${e.source.userId} (${e.stream} #${e.offset ?? '-'}): ${what}`)
  if (e.type === 'agent.status' && e.data.state === 'stopping') done()
})

// The agent: may publish agent.* events (its `publish` claim), into the group (its `groups` claim).
const agent = await open(sign({ sub: AGENT, sid: randomUUID(), roles: ['agent'], publish: ['agent.*'], groups: [GROUP] }))
const publish = async (type, data, key) => await agent.request('publish', { type, group: GROUP, data, ...(key !== undefined ? { key } : {}) })

await publish('agent.status', { state: 'started', version: '1.4.2' })
// Claiming to be someone else is refused: identity comes from the token.
await publish('agent.status', { agentId: 'agent-someone-else' }).then(
  () => { throw new Error('a forged agentId was accepted') },
  (err) => console.log(`agent: forged agentId refused (${err.message.split(':')[0]})`),
)

const buffered = []
const tick = setInterval(() => buffered.push(`${new Date().toISOString()} sshd[${process.pid}]: session check ok`), 100)
let round = 0
while (round < ROUNDS) {
  round++
  const hb = await publish('agent.heartbeat', { cpu: Math.round(Math.random() * 100), uptimeS: Math.round(process.uptime()) })
  console.log(`agent: heartbeat ${round} published as ${hb.id}`)
  if (buffered.length > 0) {
    // A batch carries an idempotency key: if the reply is lost and the agent
    // sends it again, it lands once.
    const lines = buffered.splice(0)
    await publish('agent.logs', { lines }, `logs-${AGENT}-${round}`)
  }
  if (round < ROUNDS) await new Promise((resolve) => setTimeout(resolve, 1000))
}
clearInterval(tick)
await publish('agent.status', { state: 'stopping' })
await finished
agent.close()
dashboard.close()
