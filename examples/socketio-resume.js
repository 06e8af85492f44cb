// A Socket.IO client of Herald in plain JavaScript that resumes after every
// reconnect (a node draining or dying, a network blip) without losing or
// doubling a message: it keeps the last position per stream, and on each
// `welcome` subscribes with `since`.
//
//   HERALD_URL=http://127.0.0.1:3000 HERALD_TOKEN=<user token> node examples/socketio-resume.js
//
// Prints one JSON line per message handled ({kind, id, stream, offset}) and
// one per connect's subscribe, the first included, which resumes from where
// the streams are ({resumed, recovered, unrecovered}). `recovered: false`
// means messages may be missing: refetch what the app shows from those streams.
import { io } from 'socket.io-client'

const URL = process.env.HERALD_URL ?? 'http://127.0.0.1:3000'
const TOKEN = process.env.HERALD_TOKEN
if (!TOKEN) throw new Error('set HERALD_TOKEN to a user token: the one `npm start` printed, or `npx herald token --sub u1`')
const PATTERNS = (process.env.PATTERNS ?? '*').split(',')

/** stream -> {epoch, offset}: the last message handled (keep it in storage to survive a restart of the app) */
const positions = new Map()
/** while a resume runs: stream -> messages that came meanwhile, replayed and live alike */
let held = null

const out = (x) => process.stdout.write(JSON.stringify(x) + '\n')

function handle (kind, m) {
  // The app's work goes here.
  out({ kind, id: m.id, stream: m.stream, offset: m.offset })
}

function onMessage (kind, m) {
  const last = m.stream === undefined ? undefined : positions.get(m.stream)
  if (last === undefined || m.offset === undefined) return handle(kind, m)
  const waiting = held?.get(m.stream)
  if (waiting !== undefined) return void waiting.push({ kind, m })
  if (m.epoch !== last.epoch) out({ resumed: false, recovered: false, unrecovered: [m.stream] })
  else if (m.offset <= last.offset) return // had it already
  positions.set(m.stream, { epoch: m.epoch, offset: m.offset })
  handle(kind, m)
}

const socket = io(URL, { auth: { token: TOKEN }, transports: ['websocket'] })

socket.on('welcome', (w) => {
  // Per stream this connection reads: where we are, else (first connect) where the stream is now.
  const since = {}
  for (const [stream, top] of Object.entries(w.positions ?? {})) {
    if (!positions.has(stream)) positions.set(stream, top)
    since[stream] = positions.get(stream)
  }
  held = new Map(Object.keys(since).map((s) => [s, []]))
  // The acknowledgement comes after the replayed messages and before any live one.
  socket.emit('subscribe', { eventTypes: PATTERNS, since }, (reply) => {
    if (reply.type === 'error') {
      process.stderr.write(`subscribe refused: ${reply.payload.code} ${reply.payload.message}\n`)
      return socket.disconnect()
    }
    for (const [stream, at] of Object.entries(reply.payload.positions ?? {})) {
      const messages = (held.get(stream) ?? []).sort((a, b) => a.m.offset - b.m.offset)
      let last = positions.get(stream)
      for (const { kind, m } of messages) {
        // Replayed and live copies of one message: handled once, in stream order.
        if (m.epoch !== at.epoch || (last.epoch === m.epoch && m.offset <= last.offset)) continue
        last = { epoch: m.epoch, offset: m.offset }
        handle(kind, m)
      }
      if (last.epoch !== at.epoch || last.offset < at.offset) last = at
      positions.set(stream, last)
    }
    held = null
    out({ resumed: true, recovered: reply.payload.recovered, unrecovered: reply.payload.unrecovered })
  })
})
socket.on('event', (e) => onMessage('event', e))
socket.on('notification', (n) => onMessage('notification', n))
// Messages already held for this connection are read again on the next one, from the same positions.
socket.on('disconnect', () => { held = null })
socket.on('close', (c) => process.stderr.write(`closed by the server: ${c.code} ${c.reason}\n`))
socket.on('connect_error', (err) => process.stderr.write(`connect_error: ${err.message}\n`))
