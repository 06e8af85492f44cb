// What src/endpoints/socketio-sessions.ts assumes of engine.io (pinned in
// package.json), checked against a bare engine.io server and a raw polling
// client: everything queued for a client that does not poll sits in the
// socket's writeBuffer, and passes `packetCreate` on its way in and `flush`
// on its way out, so the byte count the send bound reads equals what the
// buffer holds; and a discarding close ends a session nobody polls at once.
// If an engine.io upgrade changes any of this, this test fails first.
import http from 'node:http'
import { Server, type Socket } from 'engine.io'
import t, { type Test } from 'tap'
import { EngineSessions } from '../../src/endpoints/socketio-sessions.js'
import { handshake } from '../helpers/polling.js'
import { within } from '../helpers/wait.js'

const TIMEOUT_MS = 1000

const server = http.createServer()
const engine = new Server({ pingInterval: 60_000, pingTimeout: 60_000, transports: ['polling'] })
engine.attach(server, { path: '/socket.io/' })
await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`
t.teardown(async () => {
  engine.close()
  await new Promise((resolve) => server.close(resolve))
})

const sessions = new EngineSessions(TIMEOUT_MS)
const opened: Socket[] = []
engine.on('connection', (raw: Socket) => {
  sessions.opened(raw, '127.0.0.1')
  opened.push(raw)
})

/** What engine.io's write buffer holds, in bytes, read from the private field itself. */
function buffered (t: Test, raw: Socket): { packets: number, bytes: number } {
  const buf = (raw as unknown as { writeBuffer: Array<{ data?: unknown }> }).writeBuffer
  t.ok(Array.isArray(buf), 'engine.io keeps its queue in socket.writeBuffer')
  let bytes = 0
  for (const p of buf) bytes += typeof p.data === 'string' ? Buffer.byteLength(p.data) : Buffer.isBuffer(p.data) ? p.data.length : 0
  return { packets: buf.length, bytes }
}

t.test('a polling client that does not poll: every packet waits in writeBuffer, and the count matches it byte for byte', async (t) => {
  const hs = await handshake(base)
  const raw = opened.at(-1)!
  sessions.authenticated(raw) // no timeout in this test
  t.same(sessions.queued(raw), { bytes: 0, packets: 0 }, 'the handshake\'s open packet went out with the handshake')

  raw.send('a'.repeat(1000))
  raw.send('é'.repeat(500)) // 1,000 bytes in UTF-8
  raw.send(Buffer.alloc(300))
  for (let i = 0; i < 50; i++) raw.send(`event ${i}`)
  const inBuffer = buffered(t, raw)
  t.equal(inBuffer.packets, 53, 'all 53 packets wait in the write buffer')
  t.same(sessions.queued(raw), inBuffer, `the count equals the buffer: ${inBuffer.bytes} bytes in ${inBuffer.packets} packets`)

  const r = await hs.session!.poll()
  t.equal(r.status, 200, 'a poll collects them')
  t.equal(r.body.split('\x1e').length, 53, 'all of them')
  t.same(buffered(t, raw), { packets: 0, bytes: 0 }, 'the buffer is empty after the poll')
  t.same(sessions.queued(raw), { packets: 0, bytes: 0 }, 'and so is the count')

  // With a poll waiting, a packet goes straight out: nothing stays queued.
  const waiting = hs.session!.poll()
  await within(2000, 'engine.io to take the waiting poll', new Promise<void>((resolve) => {
    const check = (): void => { if ((raw.transport as unknown as { writable: boolean }).writable) resolve(); else setTimeout(check, 10) }
    check()
  }))
  raw.send('straight out')
  t.same(sessions.queued(raw), { packets: 0, bytes: 0 }, 'a packet sent while a poll waits is not counted as queued')
  t.match(await waiting, { status: 200, body: /straight out/ }, 'and reaches the client')
  raw.close(true)
})

t.test('a session never authenticated is discarded at the timeout, not kept for the client to poll', async (t) => {
  const hs = await handshake(base)
  const raw = opened.at(-1)!
  raw.send('x'.repeat(10_000))
  t.equal(sessions.pending, 1, 'the session counts as pending')
  const startedAt = Date.now()
  const reason = await within(TIMEOUT_MS + 2000, 'the session to close', new Promise<string>((resolve) => raw.once('close', (why: string) => resolve(why))))
  t.equal(raw.readyState, 'closed', `closed outright after ${Date.now() - startedAt} ms (${reason}), not left "closing"`)
  t.equal(sessions.pending, 0, 'and no longer pending')
  t.match(await hs.session!.poll(), { status: 400, body: /Session ID unknown/ }, 'engine.io forgot it')
})
