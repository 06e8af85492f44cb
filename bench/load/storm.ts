// Load generator for the reconnect storm: opens `count` Herald connections
// (users u<offset+i>, each subscribed) to one node, reports ready, then, when
// a connection drops (its node was killed), reconnects at once to one of
// `then` (by index, so the clients split between them), subscribes again,
// and reports when all are subscribed again, with the time the last one was.
// A refused or failed reconnect is retried as the SDK would: a 503 within a
// random second, anything else after a short pause; every wait is bounded by the parent, which kills this process.
// The clients are raw-ws.ts's: on a machine whose cores the nodes share,
// ws's client took 3.5-4.1 CPU s of a 10,000-client storm, these 2.0-2.8.
import { createSigner } from 'fast-jwt'
import { openRaw } from './raw-ws.js'

interface Job { url: string, then: string[], count: number, offset: number, concurrency: number, secret: string }

const now = (): number => performance.timeOrigin + performance.now()
let job: Job
let resubscribed = 0
let retries = 0
const why = new Map<string, number>()
let lastAt = 0

/** Resolves once the connection is subscribed; `onDrop` runs if it closes after that. */
function open (url: string, token: string, onDrop: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let subscribed = false
    openRaw(`${url}?token=${token}`, {
      text (text, send) {
        if (subscribed) return
        if (text.includes('"welcome"')) send('{"type":"subscribe","id":"s","payload":{"eventTypes":["system.*"]}}')
        else if (text.includes('"subscribed"')) { subscribed = true; resolve() }
      },
      refused (status) { reject(new Error(`HTTP ${status}`)) },
      closed (code, err) { if (subscribed) onDrop(); else reject(err ?? new Error(`closed ${code} before subscribed`)) },
    })
  })
}

async function reconnect (i: number, token: string): Promise<void> {
  const url = job.then[i % job.then.length]!
  for (;;) {
    try {
      await open(url, token, () => {})
      break
    } catch (err) {
      retries++
      const m = (err as Error).message
      why.set(m, (why.get(m) ?? 0) + 1)
      // A 503 (the node busy: NODE_FULL past WEBSOCKET_MAX_OPENING, or not ready) is retried as the SDK retries
      // "try another node": within a random second (drainJitterMs); anything else after a short pause.
      await new Promise((resolve) => setTimeout(resolve, m === 'HTTP 503' ? Math.random() * 1000 : 20 + Math.random() * 80))
    }
  }
  lastAt = now()
  if (++resubscribed === job.count) process.send!({ resubscribed, retries, lastAt, why: [...why].sort((a, b) => b[1] - a[1]).slice(0, 3) })
}

process.on('message', (m: { job?: Job }) => {
  if (!m.job) return
  job = m.job
  const sign = createSigner({ key: job.secret, algorithm: 'HS256', expiresIn: 3600_000 })
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < job.count) {
      const i = next++
      const id = job.offset + i
      const token = sign({ sub: `u${id}`, sid: `s${id}`, roles: ['user'] })
      await open(job.url, token, () => { void reconnect(i, token) })
    }
  }
  void Promise.all(Array.from({ length: Math.min(job.concurrency, job.count) }, worker)).then(
    () => process.send!({ ready: job.count }),
    (err: Error) => process.send!({ ready: 0, error: err.message }),
  )
})
process.on('disconnect', () => process.exit(0))
