// Socket.IO clients that do what socket.io-client never would, against a node
// process on a private Redis: a polling client that stops polling and a
// WebSocket client that stops reading are closed 4008 at MAX_SEND_BUFFER_BYTES
// and hold nothing after (read from the node's heap through its inspector);
// floods of engine.io handshakes without a token are bounded per IP and per
// node and dropped at HANDSHAKE_TIMEOUT while clients with tokens get in; an
// event name that is not a string is answered UNKNOWN_TYPE through its ack.
import type net from 'node:net'
import t from 'tap'
import { session } from '../../bench/inspector.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { handshake, type PollingSession } from '../helpers/polling.js'
import { startRedis } from '../helpers/redis.js'
import { sioConnect } from '../helpers/sio.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

const SEND_BUFFER = 256 * 1024
const HANDSHAKE_MS = 1000
// As the source says (src/endpoints/socketio-sessions.ts); repeated here so a
// change to them is a visible change to this test.
const PER_IP = 32
const PER_NODE = 1024
const BLOB = 'x'.repeat(60 * 1024 - 100) // the largest event data the API takes
const MiB = 2 ** 20

const redis = await startRedis()
t.teardown(async () => { await redis.stop() })
const node = await startNode({
  REDIS_URL: redis.url,
  MAX_SEND_BUFFER_BYTES: String(SEND_BUFFER),
  HANDSHAKE_TIMEOUT: String(HANDSHAKE_MS),
  NODE_OPTIONS: '--inspect=127.0.0.1:0',
})
t.teardown(() => node.stop())
const inspector = await session(/(ws:\/\/\S+)/.exec(await node.waitLine((l) => l.includes('Debugger listening on')))![1]!)
t.teardown(() => inspector.close())

/** The node's heap after full collections: what it really holds. */
async function heap (): Promise<number> {
  for (let i = 0; i < 3; i++) await inspector.send('HeapProfiler.collectGarbage')
  return (await inspector.send<{ usedSize: number }>('Runtime.getHeapUsage')).usedSize
}

let uniq = 0
const user = (name: string): string => `${name}-${++uniq}`

/** A raw polling session with a Socket.IO connection for `userId`, subscribed to big.*; returns its connection id. */
async function pollingSubscriber (userId: string): Promise<{ p: PollingSession, connectionId: string }> {
  const hs = await handshake(node.http)
  if (hs.session === null) throw new Error(`handshake answered ${hs.status} ${hs.body}`)
  const p = hs.session
  await p.send(`40${JSON.stringify({ token: userToken(userId) })}`)
  const welcome = await p.until((x) => x.startsWith('42["welcome"'))
  await p.send('421["subscribe",{"eventTypes":["big.*"]}]')
  await p.until((x) => x.startsWith('431'))
  return { p, connectionId: (JSON.parse(welcome.slice(2)) as [string, { connectionId: string }])[1].connectionId }
}

/**
 * Publishes `max` events of 60 KB to userId, one at a time, noting after how
 * many the node logged the connection's close. Goes on to the end either way:
 * whatever a closed connection still held would show in the heap.
 */
async function flood (userId: string, connectionId: string, max: number): Promise<{ closedAfter: number | null, code: number | null }> {
  let closedAfter: number | null = null
  let line: string | undefined
  const isClose = (l: string): boolean => l.includes(connectionId) && l.includes('"connection closed"')
  for (let i = 1; i <= max; i++) {
    const r = await node.api('/api/events', { body: { type: 'big.one', userId, data: { i, blob: BLOB } } })
    if (r.status !== 202) throw new Error(`publish answered ${r.status} ${JSON.stringify(r.body)}`)
    if (closedAfter === null && (line = node.lines.find(isClose)) !== undefined) closedAfter = i
  }
  line ??= node.lines.find(isClose)
  return { closedAfter, code: line !== undefined ? JSON.parse(line).code as number : null }
}

t.test('a polling client that stops polling is closed 4008 at MAX_SEND_BUFFER_BYTES, and its queue is freed', { timeout: 60_000 }, async (t) => {
  const u = user('no-poll')
  const { p, connectionId } = await pollingSubscriber(u)
  const before = await heap()
  // It stops polling here. 200 events of 60 KB: 12 MB, far past the 256 KiB bound
  // (and short of the 1,024 packets that bounded it before).
  const { closedAfter, code } = await flood(u, connectionId, 200)
  const held = await heap() - before
  // The events that fit, the one that crossed the bound, the one whose
  // delivery found it crossed; the close is logged after Redis delivered it,
  // so the publish after that may have answered first.
  const bound = Math.ceil(SEND_BUFFER / BLOB.length) + 3
  t.ok(closedAfter !== null && closedAfter <= bound, `closed after ${closedAfter} events of 60 KB (at most ${bound})`)
  t.equal(code, 4008, 'as a slow consumer (4008)')
  t.ok(held < 2 * MiB, `the node holds ${(held / MiB).toFixed(2)} MiB more than before the flood (12 MB published to the client)`)
  t.comment(`MEASURED non-polling client: closed after ${closedAfter} events of 60 KB; node heap +${(held / MiB).toFixed(2)} MiB after 200 events`)
  const after = await p.poll()
  t.match(after, { status: 400, body: /Session ID unknown/ }, 'the session is gone, not kept for the client to collect')
})

t.test('a WebSocket Socket.IO client that stops reading is closed 4008 too: engine.io\'s queue behind the socket counts', { timeout: 60_000 }, async (t) => {
  const u = user('no-read')
  const { client, welcome } = await sioConnect(node.http, { transports: ['websocket'], auth: { token: userToken(u) } })
  t.teardown(() => client.close())
  await client.subscribe(['big.*'])
  const sock = (client.socket.io.engine.transport as unknown as { ws: { _socket: net.Socket } }).ws._socket
  sock.pause()
  t.teardown(() => { sock.resume() })
  const before = await heap()
  // Loopback buffers take a few MB before the node's own queue grows; 400
  // events (24 MB) go far past both, and short of 1,024 packets.
  const { closedAfter, code } = await flood(u, welcome.connectionId as string, 400)
  const held = await heap() - before
  t.ok(closedAfter !== null, `closed after ${closedAfter} events of 60 KB`)
  t.equal(code, 4008, 'as a slow consumer (4008)')
  t.ok(held < 2 * MiB, `the node holds ${(held / MiB).toFixed(2)} MiB more than before the flood (24 MB published to the client)`)
  t.comment(`MEASURED WebSocket client not reading: closed after ${closedAfter} events of 60 KB; node heap +${(held / MiB).toFixed(2)} MiB after 400 events`)
  sock.resume()
  await within(10_000, 'the client to see its transport go', client.disconnected(1, 10_000))
})

/** `n` handshakes without a token from one loopback address, at once. */
async function handshakes (from: string, n: number): Promise<Awaited<ReturnType<typeof handshake>>[]> {
  return await Promise.all(Array.from({ length: n }, async () => await handshake(node.http, { localAddress: from })))
}
const codeOf = (body: string): string | undefined => { try { return (JSON.parse(body) as { message?: string }).message } catch { return undefined } }

/**
 * Resolves once engine.io no longer knows the session. Probed with a noop
 * POST, answered at once either way (a poll would wait, and change what it
 * looks at): 200 while the session is held, even while it only waits for a
 * poll to carry its close; 400 once it is gone.
 */
async function gone (s: PollingSession): Promise<boolean> {
  const r = await waitFor(`session ${s.sid} to be gone`, async () => await s.send('6'), (x) => x.status === 400, { timeoutMs: HANDSHAKE_MS + 4000, intervalMs: 50 })
  return /Session ID unknown/.test(r.body)
}

t.test('handshakes without a token: at most 32 per IP, past that 403 CONNECTION_LIMIT; others (with tokens) get in meanwhile; all dropped at HANDSHAKE_TIMEOUT', { timeout: 30_000 }, async (t) => {
  const flooder = '127.0.0.2'
  const first = await handshakes(flooder, PER_IP)
  t.equal(first.filter((h) => h.session !== null).length, PER_IP, `${PER_IP} handshakes from ${flooder} open sessions`)
  const over = await handshake(node.http, { localAddress: flooder })
  t.equal(over.status, 403, 'the next one is refused')
  t.equal(codeOf(over.body), 'CONNECTION_LIMIT', 'as CONNECTION_LIMIT (socket.io-client retries it with backoff)')

  // Meanwhile: another address opens a session, and a client with a token connects over polling.
  const other = await handshake(node.http, { localAddress: '127.0.0.3' })
  t.equal(other.status, 200, 'another address is not affected')
  const u = user('legit')
  const { client } = await sioConnect(node.http, { transports: ['polling'], auth: { token: userToken(u) } })
  t.teardown(() => client.close())
  t.equal((await client.request('ping')).type, 'pong', 'a client with a token connects and is served')

  // A session that sent a bad token is one without a connection too.
  const bad = first[0]!.session!
  await bad.send(`40${JSON.stringify({ token: 'not-a-token' })}`)
  t.match(await bad.until((x) => x.startsWith('44')), /TOKEN_INVALID/, 'a bad token is refused (connect_error)')

  // Dropped at HANDSHAKE_TIMEOUT, none polled since: the flooder's quota frees by itself.
  const openedAt = Date.now()
  const again = await waitFor('a handshake from the flooder to be accepted again', async () => await handshake(node.http, { localAddress: flooder }), (h) => h.status === 200, { timeoutMs: HANDSHAKE_MS + 4000, intervalMs: 100 })
  t.comment(`MEASURED unauthenticated sessions dropped within ${Date.now() - openedAt} ms (HANDSHAKE_TIMEOUT ${HANDSHAKE_MS} ms)`)
  t.ok(again.session, 'the flooder\'s address gets a session again')
  for (const s of [...first.slice(1).map((h) => h.session!), bad]) t.ok(await gone(s), 'an old session is gone, not kept for a poll to collect its close')
  t.equal((await client.request('ping')).type, 'pong', 'the client with a token stays connected')
  // Leave no session pending for the next test, which counts them.
  for (const s of [again.session!, other.session!]) await s.send('1')
})

t.test(`handshakes without a token from many addresses: at most ${PER_NODE} per node, past that 403 NODE_FULL, free again at HANDSHAKE_TIMEOUT`, { timeout: 60_000 }, async (t) => {
  // A node of its own, with a timeout that outlasts opening ${PER_NODE}
  // sessions on a loaded machine: the first ones must still be open when the
  // one past the bound arrives.
  const slowMs = 8000
  const node = await startNode({ REDIS_URL: redis.url, HANDSHAKE_TIMEOUT: String(slowMs) })
  t.teardown(() => node.stop())
  const handshakes = async (from: string, n: number): Promise<Array<Awaited<ReturnType<typeof handshake>>>> =>
    await Promise.all(Array.from({ length: n }, async () => await handshake(node.http, { localAddress: from })))
  const addresses = Array.from({ length: PER_NODE / PER_IP }, (_v, i) => `127.0.1.${i + 1}`)
  const opened = (await Promise.all(addresses.map(async (a) => await handshakes(a, PER_IP)))).flat()
  t.equal(opened.filter((h) => h.status === 200).length, PER_NODE, `${PER_NODE} sessions from ${addresses.length} addresses`)
  const over = await handshake(node.http, { localAddress: '127.0.2.1' })
  t.equal(over.status, 403, 'one more, from a fresh address, is refused')
  t.equal(codeOf(over.body), 'NODE_FULL', 'as NODE_FULL')
  const again = await waitFor('the node to take handshakes again', async () => await handshake(node.http, { localAddress: '127.0.2.1' }), (h) => h.status === 200, { timeoutMs: slowMs + 8000, intervalMs: 100 })
  t.pass('the node takes handshakes again once they time out')
  const ended = await Promise.all(opened.map(async (h) => await gone(h.session!)))
  t.equal(ended.filter((x) => x).length, PER_NODE, `all ${PER_NODE} sessions are gone`)
  await again.session!.send('1')
})

t.test('an event name that is not a string (42[123,{}]) is answered UNKNOWN_TYPE through its ack; the connection carries on', { timeout: 20_000 }, async (t) => {
  const u = user('numeric')
  const { client } = await sioConnect(node.http, { transports: ['websocket'], auth: { token: userToken(u) } })
  t.teardown(() => client.close())
  const reply = await client.socket.timeout(3000).emitWithAck(123 as unknown as string, {}) as { type: string, payload: { code: string, message: string } }
  t.equal(reply.type, 'error', 'the ack is answered with an error')
  t.equal(reply.payload.code, 'UNKNOWN_TYPE', 'UNKNOWN_TYPE')
  // Without an ack the error arrives as an event.
  const from = client.records.length
  client.socket.emit(456 as unknown as string, {})
  t.equal((await client.next((r) => r.event === 'error', 3000, from)).payload.code, 'UNKNOWN_TYPE', 'and as an error event without one')
  t.equal((await client.request('ping')).type, 'pong', 'the connection carries on')
  t.notOk(node.lines.some((l) => l.includes('handler failed') || l.includes('"INTERNAL"')), 'nothing was logged as an internal error')
})

t.test('a packet nested too deeply for JSON to write is answered DATA_TOO_DEEP, a publish or not; the connection carries on', { timeout: 20_000 }, async (t) => {
  // socket.io-client cannot encode such a packet: the raw polling transport sends it.
  const hs = await handshake(node.http)
  if (hs.session === null) throw new Error(`handshake answered ${hs.status} ${hs.body}`)
  const p = hs.session
  t.teardown(async () => { await p.send('1').catch(() => {}) })
  await p.send(`40${JSON.stringify({ token: userToken(user('deep'), undefined, { publish: ['chat.*'] }) })}`)
  await p.until((x) => x.startsWith('42["welcome"'))
  // 6,000 levels in 12 KB: under MAX_PUBLISH_BYTES, past what JSON.stringify walks.
  const deep = `${'['.repeat(6000)}${']'.repeat(6000)}`
  await p.send(`421["publish",{"type":"chat.message","data":{"a":${deep}}}]`)
  const publish = await p.until((x) => x.startsWith('431'))
  t.match(publish, /"code":"DATA_TOO_DEEP"/, 'the publish is refused DATA_TOO_DEEP')
  await p.send(`422["subscribe",{"eventTypes":${deep}}]`)
  t.match(await p.until((x) => x.startsWith('432')), /"code":"DATA_TOO_DEEP"/, 'as is any other packet that deep')
  await p.send('423["ping"]')
  t.match(await p.until((x) => x.startsWith('433')), /"type":"pong"/, 'the connection carries on')
  t.notOk(node.lines.some((l) => l.includes('handler failed') || l.includes('"INTERNAL"')), 'nothing was logged as an internal error')
})

t.test('binary attachments are refused INVALID_PAYLOAD on both transports; arguments after the payload count toward MAX_MESSAGE_BYTES', { timeout: 20_000 }, async (t) => {
  for (const transport of ['websocket', 'polling']) {
    const { client } = await sioConnect(node.http, { transports: [transport], auth: { token: userToken(user('bin'), undefined, { publish: ['chat.*'] }) } })
    t.teardown(() => client.close())
    const ask = async (...args: unknown[]): Promise<any> => await client.socket.timeout(3000).emitWithAck(...args as [string, ...unknown[]])
    t.match(await ask('publish', { type: 'chat.message', data: { b: Buffer.from('hello') } }), { type: 'error', payload: { code: 'INVALID_PAYLOAD', message: /binary attachments/ } }, `${transport}: a publish carrying a Buffer`)
    t.match(await ask('subscribe', { eventTypes: ['chat.*'], extra: new Uint8Array([1, 2, 3]).buffer }), { type: 'error', payload: { code: 'INVALID_PAYLOAD' } }, `${transport}: any event carrying an ArrayBuffer`)
    t.equal((await client.request('ping')).type, 'pong', `${transport}: the next event, plain JSON, is served`)
    // Sent in one go (one POST on polling): each event judged by what it holds.
    const [bin, plain, bin2] = await Promise.all([ask('publish', { type: 'chat.message', data: { b: Buffer.from('x') } }), ask('ping'), ask('ping', { b: new Uint16Array([1]) })])
    t.same([bin.payload.code, plain.type, bin2.payload.code], ['INVALID_PAYLOAD', 'pong', 'INVALID_PAYLOAD'], `${transport}: a binary event, a plain one and a binary one sent together`)
    t.equal((await client.request('publish', { type: 'chat.message', data: { text: 'json' } })).type, 'published', `${transport}: as is a plain publish`)
  }
  // Socket.IO hands every argument over, and the node reads only the first.
  const { client } = await sioConnect(node.http, { transports: ['websocket'], auth: { token: userToken(user('args')) } })
  t.teardown(() => client.close())
  client.socket.emit('ping', {}, 'x'.repeat(50_000))
  t.match((await client.next((r) => r.event === 'close')).payload, { code: 1009 }, 'a ping with 50 KB after its payload is closed 1009, as a 50 KB frame')
})
