// Load generator: opens `count` subscriber connections of one kind and reports
// to the parent over IPC: when all are ready, then deliveries, sampled
// latencies and the close codes of connections the server closed, every
// second. Parses only sampled frames, to stay cheap.
import { createSigner } from 'fast-jwt'
import { io as ioClient } from 'socket.io-client'
import WebSocket from 'ws'

interface Job {
  kind: 'herald' | 'ws' | 'sio'
  url: string
  count: number
  offset: number
  localAddress?: string
  concurrency: number
  secret: string
  sampleEvery: number
  /** herald: users; each client is user `u<offset+i>` unless `sharedUser` */
  pattern: string
  /** ready at the server's first frame (welcome), without subscribing: a connect-rate run */
  untilWelcome?: boolean
  /**
   * Raw WebSocket kinds: only every sampleEvery-th client parses what it
   * gets (and samples every message it gets); the others count frames in the
   * bytes as they come. With every client parsing every frame, the
   * generators, not the server, set how far a server that sends each event
   * to a socket alone (uWebSockets.js) got at 10,000 subscribers.
   */
  countRaw?: boolean
}

let delivered = 0
let total = 0
let seen = 0
/** close codes of connections the server closed, since the start */
const closes: Record<string, number> = {}
const closedWith = (code: number | string): void => { closes[code] = (closes[code] ?? 0) + 1 }
let samples: number[] = []
const now = (): number => performance.timeOrigin + performance.now()

function sample (text: string): void {
  if (++seen % job.sampleEvery !== 0) return
  const ms = stamp(text)
  if (!Number.isNaN(ms)) samples.push(ms)
}

/** ms since the message's `t` (its publish time), NaN when it has none. */
function stamp (text: string): number {
  const i = text.indexOf('"t":')
  if (i < 0) return NaN
  let j = i + 4
  while (j < text.length && '0123456789.'.includes(text[j]!)) j++
  return now() - Number(text.slice(i + 4, j))
}

/**
 * From now on `ws`'s socket is read here, not by ws: frames are counted (text
 * and binary ones are deliveries) and pings answered, nothing is parsed.
 * Called between frames (after the subscription's answer, before events
 * flow). Server frames are unmasked; a pong goes back masked with a zero key.
 */
function countFrames (ws: WebSocket): void {
  const sock = (ws as unknown as { _socket: import('node:net').Socket })._socket
  sock.removeAllListeners('data')
  let skip = 0
  let head: Buffer | null = null
  sock.on('data', (chunk: Buffer) => {
    const buf = head === null ? chunk : Buffer.concat([head, chunk])
    head = null
    let at = 0
    for (;;) {
      if (skip > 0) {
        const n = Math.min(skip, buf.length - at)
        skip -= n
        at += n
        if (skip > 0) return
      }
      if (buf.length - at < 2) break
      const opcode = buf[at]! & 0x0f
      let len = buf[at + 1]! & 0x7f
      let hdr = 2
      if (len === 126) { if (buf.length - at < 4) break; len = buf.readUInt16BE(at + 2); hdr = 4 } else if (len === 127) { if (buf.length - at < 10) break; len = Number(buf.readBigUInt64BE(at + 2)); hdr = 10 }
      if (opcode === 9) {
        if (buf.length - at < hdr + len) break
        sock.write(Buffer.concat([Buffer.from([0x8a, 0x80 | len, 0, 0, 0, 0]), buf.subarray(at + hdr, at + hdr + len)]))
      } else if (opcode === 1 || opcode === 2) {
        delivered++
        if ((++total & 1023) === 0) report()
      }
      at += hdr
      skip = len
    }
    if (at < buf.length) head = buf.subarray(at)
  })
}

let job: Job
let stopping = false
let reporting = false
let lastReport = 0

/**
 * A report a second. Checked from the timer and every 1024 messages: a
 * generator flooded with frames runs its timers seconds late (one poll can
 * hand it megabytes on every socket), and its reports must not stop then.
 * `total` and `at` let the parent take a rate over exactly the reports it saw.
 */
function report (): void {
  const t = now()
  if (!reporting || t - lastReport < 1000) return
  lastReport = t
  process.send!({ tick: true, delivered, total, at: t, samples, closes })
  delivered = 0
  samples = []
}
const sockets: Array<{ close: () => void }> = []

async function openOne (i: number, sign: (p: object) => string): Promise<void> {
  const id = job.offset + i
  if (job.kind === 'sio') {
    const s = ioClient(job.url, { transports: ['websocket'], reconnection: false, forceNew: true, ...(job.localAddress ? { localAddress: job.localAddress } : {}) } as Parameters<typeof ioClient>[1])
    sockets.push({ close: () => s.close() })
    await new Promise<void>((resolve, reject) => { s.once('welcome', () => resolve()); s.once('connect_error', reject) })
    s.on('event', (p: { t: number }) => { delivered++; if ((++total & 1023) === 0) report(); if (++seen % job.sampleEvery === 0) samples.push(now() - p.t) })
    s.on('disconnect', (reason: string) => { if (!stopping) closedWith(reason) })
    return
  }
  const url = job.kind === 'herald' ? `${job.url}?token=${sign({ sub: `u${id}`, sid: `s${id}`, roles: ['user'] })}` : job.url
  const ws = new WebSocket(url, { perMessageDeflate: false, ...(job.localAddress ? { localAddress: job.localAddress } : {}) })
  sockets.push({ close: () => ws.terminate() })
  // countRaw: this client parses and samples every message, or counts frames only.
  const sampler = job.countRaw === true && i % job.sampleEvery === 0
  await new Promise<void>((resolve, reject) => {
    const ready = (): void => {
      if (job.countRaw === true && !sampler && job.untilWelcome !== true) countFrames(ws)
      resolve()
    }
    let welcomed = false
    ws.on('message', (data: Buffer) => {
      if (!welcomed) {
        welcomed = true
        if (job.kind !== 'herald' || job.untilWelcome === true) return ready()
        ws.send(JSON.stringify({ type: 'subscribe', id: 's', payload: { eventTypes: [job.pattern] } }))
        return
      }
      if (job.kind === 'herald' && data.length < 200 && data.includes('"subscribed"')) return ready()
      delivered++
      if ((++total & 1023) === 0) report()
      if (sampler) { const ms = stamp(data.toString()); if (!Number.isNaN(ms)) samples.push(ms) }
      else if ((seen + 1) % job.sampleEvery === 0) sample(data.toString())
      else seen++
    })
    ws.once('error', reject)
    ws.once('close', (code: number) => { if (!stopping) closedWith(code) })
    ws.once('unexpected-response', (_r, res) => reject(new Error(`HTTP ${res.statusCode}`)))
  })
}

process.on('message', (m: { job?: Job, stop?: boolean }) => {
  if (m.stop) {
    stopping = true
    for (const s of sockets) s.close()
    setTimeout(() => process.exit(0), 200)
    return
  }
  if (!m.job) return
  job = m.job
  const sign = createSigner({ key: job.secret, algorithm: 'HS256', expiresIn: 3600_000 })
  const t0 = now()
  let next = 0
  let failed = 0
  const reasons = new Map<string, number>()
  const worker = async (): Promise<void> => {
    while (next < job.count) {
      const i = next++
      // A refused or reset connect is retried a few times, as a real client would.
      for (let attempt = 0; ; attempt++) {
        try { await openOne(i, sign); break } catch (err) {
          if (attempt < 3) { await new Promise((r) => setTimeout(r, 50 * (attempt + 1))); continue }
          failed++
          const why = (err as Error).message
          reasons.set(why, (reasons.get(why) ?? 0) + 1)
          break
        }
      }
    }
  }
  void Promise.all(Array.from({ length: Math.min(job.concurrency, job.count) }, worker)).then(() => {
    process.send!({ ready: job.count - failed, failed, reasons: [...reasons].slice(0, 3), connectMs: now() - t0 })
    reporting = true
    lastReport = now()
    setInterval(report, 250).unref()
  })
})
process.on('disconnect', () => process.exit(0))
