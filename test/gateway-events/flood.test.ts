// Three node processes under USER_CONNECTION_POLICY=evict-oldest: a fourth
// connection evicts the oldest (session.concurrent_limit, from the node that
// admitted it, to the user's other connection and an admin). Then a flood of
// 10,000 forged-token handshakes from one IP (127.0.0.1) spread over the three
// nodes: the gateway publishes a bounded number of events about it (each
// window's first, and a summary counting what it folded), and every event
// folded is accounted for; meanwhile a user's subscriber keeps receiving
// what is published for it within the deadline.
import net from 'node:net'
import t from 'tap'
import { connect, type TestClient } from '../helpers/client.js'
import { startCluster } from '../helpers/cluster.js'
import type { NodeProc } from '../helpers/node.js'
import { token } from '../helpers/tokens.js'
import { carries, gw, name, noSecrets, observer, Secrets } from './helpers.js'

const FLOOD = 10_000
/** Handshakes in flight at once: far under the 20,000 open files a process may hold. */
const POOL = 120
const WINDOW_MS = 10_000
/** Delivery to others during the flood must stay within this. */
const DEADLINE_MS = 2000

/** One upgrade with `tok`, on a raw socket: resolves with the HTTP status of the answer. */
async function handshake (port: number, tok: string): Promise<number> {
  return await new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    let head = ''
    const timer = setTimeout(() => { s.destroy(); reject(new Error('no answer to a handshake within 10 s')) }, 10_000)
    s.setEncoding('latin1')
    s.on('connect', () => {
      s.write(`GET /ws/events?token=${tok} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`)
    })
    s.on('data', (d: string) => {
      head += d
      if (!head.includes('\r\n')) return
      clearTimeout(timer)
      s.destroy()
      resolve(Number(head.slice(9, 12)))
    })
    s.on('error', (err) => { clearTimeout(timer); reject(err) })
  })
}

t.test('evict-oldest, and a flood of 10,000 bad handshakes', { timeout: 170_000 }, async (t) => {
  const { nodes } = await startCluster(t, { GATEWAY_EVENTS: 'session,security', MAX_CONNECTIONS_PER_USER: '3', USER_CONNECTION_POLICY: 'evict-oldest', GATEWAY_EVENTS_WINDOW: String(WINDOW_MS) })
  const [A, B, C] = nodes as [NodeProc, NodeProc, NodeProc]
  const secrets = new Secrets()
  const admin = await observer(t, `${B.ws}/ws/admin`, secrets.admin(name('admin')))
  const clients: TestClient[] = [admin]

  t.test('a fourth connection at three under evict-oldest: the oldest goes, session.concurrent_limit', async (t) => {
    const u = name('evicting')
    const oldest = await connect(`${C.ws}/ws/events`, { token: secrets.user(u, `${u}-old`) })
    t.teardown(() => oldest.close())
    const mine = await observer(t, `${A.ws}/ws/events`, secrets.user(u, `${u}-watcher`))
    clients.push(mine)
    const third = await connect(`${B.ws}/ws/events`, { token: secrets.user(u, `${u}-3`) })
    t.teardown(() => third.close())
    const fourth = await connect(`${B.ws}/ws/events`, { token: secrets.user(u, `${u}-4`) })
    t.teardown(() => fourth.close())
    t.equal((await oldest.closed).code, 4003, 'the oldest is closed 4003')
    for (const [who, cl] of [['the user', mine], ['the admin', admin]] as const) {
      const e = (await cl.next(gw('session.concurrent_limit', (e) => e.userId === u))).payload
      carries(t, e, B, u, who)
      t.match(e.data, {
        policy: 'evict-oldest', limit: 3, connectionId: fourth.frames[0]!.payload.connectionId, evictedConnectionId: oldest.frames[0]!.payload.connectionId, evictedNode: C.serverId,
      }, `${who}: policy, limit, the new connection and the evicted one`)
    }
  })

  t.test(`${FLOOD} forged-token handshakes from 127.0.0.1: bounded events, delivery to others unharmed`, async (t) => {
    const d = name('bystander')
    const bystander = await connect(`${A.ws}/ws/events`, { token: secrets.user(d) })
    t.teardown(() => bystander.close())
    await bystander.subscribe(['probe.*'])
    const forged = secrets.add(token({ sub: name('nobody'), roles: ['user'] }, { key: 'an-attacker-key-that-is-at-least-32-chars' }))

    // Events for the bystander through node C every 50 ms while the flood runs; each must arrive within the deadline.
    const latencies: number[] = []
    const sent = new Map<number, number>()
    let seq = 0
    let flooding = true
    const ticks = (async () => {
      while (flooding) {
        const i = ++seq
        sent.set(i, Date.now())
        const r = await C.api('/api/events', { body: { type: 'probe.tick', userId: d, data: { i } } })
        if (r.status !== 202) throw new Error(`publish answered ${r.status}`)
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
    })()
    const arrivedAt = new Map<number, number>()
    bystander.ws.on('message', (raw) => {
      const f = JSON.parse(String(raw))
      if (f.type === 'event' && f.payload.type === 'probe.tick') arrivedAt.set(f.payload.data.i, Date.now())
    })

    const started = Date.now()
    let next = 0
    const statuses = new Map<number, number>()
    await Promise.all(Array.from({ length: POOL }, async () => {
      while (next < FLOOD) {
        const i = next++
        const status = await handshake(nodes[i % 3]!.port, forged)
        statuses.set(status, (statuses.get(status) ?? 0) + 1)
      }
    }))
    const floodMs = Date.now() - started
    flooding = false
    await ticks
    await bystander.next(() => arrivedAt.size === seq, DEADLINE_MS)
    for (const [i, at] of arrivedAt) latencies.push(at - sent.get(i)!)
    t.same([...statuses], [[401, FLOOD]], `all ${FLOOD} refused 401 in ${floodMs} ms`)
    t.equal(latencies.length, seq, `every one of the ${seq} events published during the flood delivered`)
    const sorted = [...latencies].sort((a, b) => a - b)
    const max = sorted[sorted.length - 1]!
    t.ok(max < DEADLINE_MS, `delivery during the flood: median ${sorted[sorted.length >> 1]} ms, max ${max} ms (deadline ${DEADLINE_MS} ms)`)

    // Every window open at the flood's end has ended (and its summary gone out) a window later.
    const fromFlood = (e: any): boolean => e.data.ip === '127.0.0.1' && ['token', 'forged_token', 'refusal_burst'].includes(e.data.reason)
    const isFlood = (f: any): boolean => f.type === 'event' && f.payload.data?.source === 'gateway' && fromFlood(f.payload)
    const summaries = (type: string, reason: string) => (f: any): boolean => isFlood(f) && f.payload.type === type && f.payload.data.reason === reason
    const accounted = (type: string, reason: string): number => admin.frames.filter(summaries(type, reason)).reduce((n, f) => n + (f.payload.data.folded ?? 1), 0)
    await admin.next(() => accounted('security.validation.failed', 'token') === FLOOD && accounted('security.suspicious.activity', 'forged_token') === FLOOD, WINDOW_MS + 10_000)
    const events = admin.frames.filter(isFlood)
    const windows = Math.ceil(floodMs / WINDOW_MS) + 1
    const bound = 3 * 3 * 2 * windows
    t.ok(events.length <= bound, `${events.length} events for ${FLOOD} bad handshakes (bound: 3 nodes × 3 kinds × 2 a window × ${windows} windows = ${bound})`)
    t.comment(`flood: ${FLOOD} handshakes in ${floodMs} ms; ${events.length} gateway events (${events.filter((f) => f.payload.data.folded !== undefined).length} summaries); delivery to a bystander: median ${sorted[sorted.length >> 1]} ms, max ${max} ms over ${seq} events`)
    const ids = new Set(nodes.map((n) => n.serverId))
    t.ok(events.every((f) => !('userId' in f.payload) && ids.has(f.payload.data.node)), 'each admins only, naming the node that saw it')
    t.same(new Set(events.map((f) => f.payload.data.node)), ids, 'the three nodes each reported their share')
    t.ok(events.some((f) => f.payload.data.reason === 'refusal_burst'), 'the burst was detected')
    t.equal(accounted('security.validation.failed', 'token'), FLOOD, 'every refused token is one event or counted in a summary')
    t.equal(accounted('security.suspicious.activity', 'forged_token'), FLOOD, 'every forged token too')

    const metrics = (await A.api('/metrics', { key: '' })).body as string
    const folded = /herald_gateway_events_suppressed_total\{type="security.validation.failed",reason="folded"[^}]*\} (\d+)/.exec(metrics)
    t.ok(folded !== null && Number(folded[1]) > 1000, `the folded events counted on node A (${folded?.[1]})`)
    t.match(metrics, /herald_gateway_events_total\{type="security.suspicious.activity"[^}]*\} [1-9]/, 'the published ones too')
    clients.push(bystander)
    noSecrets(t, secrets, clients, nodes)
  })
})
