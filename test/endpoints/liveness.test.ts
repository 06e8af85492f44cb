// Liveness and resource bounds on three cluster node processes:
// a peer that neither answers pings nor sends anything is closed 4009; a slow
// consumer is closed 4008 once its send buffer passes MAX_SEND_BUFFER_BYTES,
// while readers on its node and on another keep receiving on time; a
// slowloris that never finishes (or never starts) its upgrade request is cut
// off after HANDSHAKE_TIMEOUT.
import net from 'node:net'
import t from 'tap'
import WebSocket from 'ws'
import { connect, TestClient } from '../helpers/client.js'
import { startCluster } from '../helpers/cluster.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const HEARTBEAT_MS = 300
const SEND_BUFFER = 65536
const HANDSHAKE_MS = 1000

const { nodes, redis } = await startCluster(t, {
  WEBSOCKET_HEARTBEAT_INTERVAL: String(HEARTBEAT_MS),
  MAX_SEND_BUFFER_BYTES: String(SEND_BUFFER),
  HANDSHAKE_TIMEOUT: String(HANDSHAKE_MS),
}, 2)
const [node, lorisNode] = nodes as [NodeProc, NodeProc]
// A consumer that stops reading also stops answering pings: with a 300 ms
// heartbeat it would be closed 4009 long before its buffer fills. The
// backpressure case runs on a second node with the default heartbeat.
const bpNode = await startNode({ REDIS_URL: redis.url, NODE_TTL: '3000', MAX_SEND_BUFFER_BYTES: String(SEND_BUFFER) })
t.teardown(() => bpNode.stop())
const url = (user: string, n: NodeProc = node): string => `${n.ws}/ws/events?token=${encodeURIComponent(userToken(user))}`

/**
 * A client built on its own `ws` instance (options the connect helper does
 * not take). `onPing` counts from the start: a sweep may ping the connection
 * before its welcome has been read.
 */
async function raw (user: string, opts: WebSocket.ClientOptions, onPing?: () => void): Promise<TestClient> {
  const c = new TestClient(new WebSocket(url(user), opts))
  if (onPing !== undefined) c.ws.on('ping', onPing)
  await new Promise<void>((resolve, reject) => { c.ws.once('open', () => resolve()); c.ws.once('error', reject) })
  await c.nextOfType('welcome')
  return c
}

/** Resolves with the node's log line reporting this connection closed. */
async function closeLine (connectionId: string, timeoutMs: number, n: NodeProc = node): Promise<{ code: number }> {
  const line = await n.waitLine((l) => l.includes(connectionId) && l.includes('"connection closed"'), timeoutMs)
  return JSON.parse(line) as { code: number }
}

t.test('heartbeat: a silent peer that does not pong is closed 4009 within a few intervals; others stay', { timeout: 20_000 }, async (t) => {
  const normal = await connect(url('hb-normal'))
  t.teardown(() => normal.close())
  let normalPings = 0
  normal.ws.on('ping', () => { normalPings++ })
  // autoPong off, but it sends frames: any frame counts as a sign of life.
  const chatty = await raw('hb-chatty', { autoPong: false })
  t.teardown(() => chatty.close())
  let chattyReplies = 0
  let chatting = true
  const chatter = (async () => {
    while (chatting && chatty.closeInfo === null) {
      if ((await chatty.request('ping')).type === 'pong') chattyReplies++
      await new Promise((resolve) => setTimeout(resolve, HEARTBEAT_MS / 3)) // pacing, not waiting for an outcome
    }
  })()
  t.teardown(() => { chatting = false })

  let silentPings = 0
  const silent = await raw('hb-silent', { autoPong: false }, () => { silentPings++ })
  t.teardown(() => silent.close())
  const welcomedAt = Date.now()
  const id = silent.frames[0]!.payload.connectionId as string

  const closed = await within(10 * HEARTBEAT_MS, 'the silent peer to be closed', silent.closed)
  const after = Date.now() - welcomedAt
  t.ok(closed.code === 4009 || closed.code === 1006, `closed ${closed.code} (${closed.reason})`)
  t.equal(closed.code, 4009, 'with the heartbeat close code (the client still reads frames)')
  t.ok(silentPings >= 1, `it was pinged first (${silentPings})`)
  t.ok(after <= 4 * HEARTBEAT_MS, `closed ${after} ms after welcome (interval ${HEARTBEAT_MS} ms)`)
  t.comment(`time to 4009: ${after} ms with WEBSOCKET_HEARTBEAT_INTERVAL=${HEARTBEAT_MS}`)
  t.equal((await closeLine(id, 3000)).code, 4009, 'the node logs the close as 4009')
  await node.waitLine((l) => l.includes(id) && l.includes('heartbeat timeout'), 1000)

  // Several more sweeps: the normal client answers pings, the chatty one sends requests.
  const from = normalPings
  await waitFor('five more sweeps', () => normalPings, (n) => n >= from + 5, { timeoutMs: 10 * HEARTBEAT_MS })
  chatting = false
  await chatter
  t.ok(chattyReplies >= 15, `the chatty client was answered throughout (${chattyReplies})`)
  t.equal((await normal.request('ping')).type, 'pong', 'a client that answers pings stays open')
  t.equal(normal.closeInfo, null)
  t.equal(chatty.closeInfo, null, 'a client that sends frames stays open without answering pings')
})

t.test('backpressure: a consumer that stops reading is closed 4008; system.* still reaches a reader', { timeout: 40_000 }, async (t) => {
  const slow = await connect(url('bp-slow', bpNode))
  t.teardown(() => slow.close())
  await slow.subscribe(['*'])
  const fast = await connect(url('bp-fast', bpNode))
  t.teardown(() => fast.close())
  await fast.subscribe(['system.*'])
  // A reader on another node: the slow consumer holds up nothing cluster-wide either.
  const remote = await connect(url('bp-remote', node))
  t.teardown(() => remote.close())
  await remote.subscribe(['system.*'])
  const id = slow.frames[0]!.payload.connectionId as string
  // When each tick's publish was sent, and when each reader got it.
  const publishedAt = new Map<number, number>()
  const lateness = (c: TestClient): number[] => {
    const out: number[] = []
    c.ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as { type: string, payload?: { type?: string, data?: { seq?: number } } }
      if (f.type === 'event' && f.payload?.type === 'system.flood.tick') out.push(Date.now() - publishedAt.get(f.payload.data!.seq!)!)
    })
    return out
  }
  const fastLate = lateness(fast)
  const remoteLate = lateness(remote)

  // Stop reading: the kernel buffers fill, then the node's send buffer grows.
  const sock = (slow.ws as unknown as { _socket: net.Socket })._socket
  sock.pause()
  t.teardown(() => { sock.resume() })
  const blob = 'x'.repeat(8000)
  const MAX_EVENTS = 3000 // 24 MB: far beyond any loopback buffering
  let userEvents = 0
  let ticks = 0
  let closedLine: string | undefined
  const isClosed = (l: string): boolean => l.includes(id) && l.includes('"connection closed"')
  for (let i = 0; i < MAX_EVENTS && closedLine === undefined; i++) {
    const r = await bpNode.api('/api/events', { body: { type: 'session.flood', userId: 'bp-slow', data: { i, blob } } })
    if (r.status !== 202) throw new Error(`publish answered ${r.status}`)
    userEvents++
    if (i % 10 === 0) {
      const seq = ticks
      publishedAt.set(seq, Date.now())
      const s = await bpNode.api('/api/events', { body: { type: 'system.flood.tick', data: { seq } } })
      if (s.status !== 202) throw new Error(`publish answered ${s.status}`)
      ticks++
    }
    closedLine = bpNode.lines.find(isClosed)
  }
  t.ok(closedLine, `the node closed the slow consumer after ${userEvents} events of 8 KB`)
  t.equal(closedLine !== undefined ? JSON.parse(closedLine).code : null, 4008, 'with 4008 (slow consumer)')
  t.equal(closedLine !== undefined ? JSON.parse(closedLine).level : null, 40, 'logged at warn: the node cut a client off')

  // Everything published during the flood reached the client that reads, in order.
  const got = await fast.collect((f) => f.type === 'event', ticks, 10_000)
  t.same(got.map((f) => f.payload.data.seq), Array.from({ length: ticks }, (_x, i) => i), `all ${ticks} system.* events, in order`)
  const gotRemote = await remote.collect((f) => f.type === 'event', ticks, 10_000)
  t.same(gotRemote.map((f) => f.payload.data.seq), Array.from({ length: ticks }, (_x, i) => i), `and on another node, all ${ticks} in order`)
  t.equal((await fast.request('ping')).type, 'pong', 'the reader is still served')
  // On time: measured from the moment the publish request was sent, so the
  // API call is included; what matters is that none waits behind the flood.
  for (const [where, late] of [['same node', fastLate], ['other node', remoteLate]] as const) {
    const sorted = [...late].sort((a, b) => a - b)
    const worst = sorted.at(-1)!
    t.comment(`MEASURED tick lateness during the flood (${where}): median ${sorted[Math.floor(sorted.length / 2)]} ms, worst ${worst} ms over ${sorted.length} ticks`)
    t.ok(worst < 1000, `${where}: every tick arrived within a second of its publish (worst ${worst} ms)`)
  }

  // Reading again, the slow client finds the stream cut short and the socket closed.
  sock.resume()
  const closed = await within(10_000, 'the slow client to see the close', slow.closed)
  t.ok(closed.code === 4008 || closed.code === 1006, `the client sees ${closed.code}`)
  const received = slow.frames.filter((f) => f.type === 'event' && f.payload.type === 'session.flood').length
  t.ok(received < userEvents, `it was not buffered without end: ${received} of ${userEvents} events reached it`)
  t.comment(`slow consumer: closed 4008 after ${userEvents} events published; the client had read ${received}; client saw ${closed.code}`)
})

t.test('slowloris: an upgrade request never finished (or never started) is closed after HANDSHAKE_TIMEOUT', { timeout: 20_000 }, async (t) => {
  const node = lorisNode
  const bystander = await connect(url('sl-bystander', node))
  t.teardown(() => bystander.close())
  const start = (): { sock: net.Socket, closed: Promise<number>, opened: number, received: () => string } => {
    const sock = net.connect(node.port, '127.0.0.1')
    let data = ''
    sock.setEncoding('utf8')
    sock.on('data', (d: string) => { data += d })
    sock.on('error', () => {})
    const opened = Date.now()
    const closed = new Promise<number>((resolve) => sock.once('close', () => resolve(Date.now() - opened)))
    t.teardown(() => { sock.destroy() })
    return { sock, closed, opened, received: () => data }
  }
  // 1. a partial request, then silence.
  const partial = start()
  partial.sock.write(`GET /ws/events?token=${userToken('sl')} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n`)
  // 2. a trickle: one byte every 200 ms never lets the connection look idle.
  const trickle = start()
  trickle.sock.write('GET /ws/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ')
  const drip = setInterval(() => { if (!trickle.sock.destroyed) trickle.sock.write('a') }, 200)
  t.teardown(() => clearInterval(drip))
  // 3. a TCP connection that never sends a byte.
  const mute = start()

  const bound = HANDSHAKE_MS + 1000 /* Node checks once a second */ + 2000
  for (const [what, s] of [['partial request', partial], ['trickled headers', trickle], ['no byte at all', mute]] as const) {
    const took = await within(bound + 1000, `${what}: the node to close the socket`, s.closed)
    t.ok(took >= HANDSHAKE_MS - 100, `${what}: not closed before HANDSHAKE_TIMEOUT (${took} ms)`)
    t.ok(took <= bound, `${what}: closed after ${took} ms (bound ${bound} ms)`)
    t.notOk(s.received().includes('101 Switching Protocols'), `${what}: never upgraded`)
    t.comment(`slowloris ${what}: closed after ${took} ms (HANDSHAKE_TIMEOUT=${HANDSHAKE_MS})`)
  }
  clearInterval(drip)
  t.equal((await bystander.request('ping')).type, 'pong', 'the node kept serving meanwhile')
  const fresh = await connect(url('sl-after', node))
  t.teardown(() => fresh.close())
  t.equal(fresh.frames[0]?.type, 'welcome', 'and accepts new connections')
})
