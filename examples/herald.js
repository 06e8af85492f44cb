// What the examples share, in plain JavaScript (Node 22+: its built-in
// WebSocket, fetch and node:crypto; no dependencies): signing a token the way
// your own service would, calling the HTTP API, and a /ws/events connection
// with request/reply.
//
// Environment (the node's own, for a development node started with them):
//   HERALD_URL       default http://127.0.0.1:3000
//   JWT_SECRET       the node's HS256 secret: your service signs user tokens with it
//   HERALD_API_KEY   one of the node's API_KEYS: a service credential
import { createHmac, randomUUID } from 'node:crypto'

export const HERALD_URL = (process.env.HERALD_URL ?? 'http://127.0.0.1:3000').replace(/\/$/, '')

function need (name) {
  const v = process.env[name]
  if (v === undefined || v === '') throw new Error(`set ${name} (see the comment at the top of this example)`)
  return v
}

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

/**
 * An HS256 access token, as your identity service would sign it. Herald reads
 * `sub` (who), `sid` (the session), `roles`, `exp`, and for clients that
 * publish or belong to groups: `publish` (event type patterns it may
 * publish) and `groups` (groups it is a member of for the token's life).
 */
export function sign (claims, ttlSeconds = 3600) {
  const now = Math.floor(Date.now() / 1000)
  const head = b64({ alg: 'HS256', typ: 'JWT' })
  const body = b64({ iat: now, exp: now + ttlSeconds, ...claims })
  const sig = createHmac('sha256', need('JWT_SECRET')).update(`${head}.${body}`).digest('base64url')
  return `${head}.${body}.${sig}`
}

/** The HTTP API with the service credential; throws on anything but 2xx. */
export async function api (method, path, body) {
  const res = await fetch(HERALD_URL + path, {
    method,
    headers: { authorization: `Bearer ${need('HERALD_API_KEY')}`, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    body: body !== undefined ? JSON.stringify(body) : undefined,
  })
  const text = await res.text()
  const json = text === '' ? null : JSON.parse(text)
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${text}`)
  return json
}

/**
 * A /ws/events connection, open once `welcome` arrived. `request` sends a
 * frame with an id and resolves with the reply carrying it (an `error` reply
 * rejects); `on(type, f)` sees pushed frames (`event`, `notification`).
 */
export async function open (token) {
  const ws = new WebSocket(`${HERALD_URL.replace(/^http/, 'ws')}/ws/events?token=${encodeURIComponent(token)}`)
  const waiting = new Map()
  const listeners = new Map()
  let welcome
  const welcomed = new Promise((resolve, reject) => {
    ws.addEventListener('error', () => reject(new Error('could not connect to ' + HERALD_URL)), { once: true })
    ws.addEventListener('close', (e) => reject(new Error(`closed ${e.code} ${e.reason}`)), { once: true })
    welcome = resolve
  })
  ws.addEventListener('message', (m) => {
    const frame = JSON.parse(m.data)
    if (frame.type === 'welcome') return welcome(frame.payload)
    const w = frame.id !== undefined ? waiting.get(frame.id) : undefined
    if (w !== undefined) {
      waiting.delete(frame.id)
      return frame.type === 'error' ? w.reject(new Error(`${frame.payload.code}: ${frame.payload.message}`)) : w.resolve(frame.payload)
    }
    for (const f of listeners.get(frame.type) ?? []) f(frame.payload)
  })
  const info = await welcomed
  return {
    info,
    request (type, payload) {
      const id = randomUUID()
      return new Promise((resolve, reject) => {
        waiting.set(id, { resolve, reject })
        ws.send(JSON.stringify({ type, id, payload }))
      })
    },
    on (type, f) { listeners.set(type, [...(listeners.get(type) ?? []), f]) },
    close () { ws.close(1000) },
  }
}
