// A validly signed token whose time claims are absurd (exp of
// Number.MAX_SAFE_INTEGER, past the Date range, in ms or µs; iat or nbf out of
// range) is refused at the handshake (401 TOKEN_INVALID) on both transports and
// on refresh (REFRESH_REJECTED), and the node stays up: it used to accept the
// token, throw a RangeError building `welcome`, and shut down (1001 to everyone).
import { createHmac } from 'node:crypto'
import t from 'tap'
import { connect, refusal } from '../helpers/client.js'
import { startNode } from '../helpers/node.js'
import { sioAttempt, sioConnect } from '../helpers/sio.js'
import { TEST_SECRET, userToken } from '../helpers/tokens.js'

const b64 = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url')
/** HS256 with exactly these claims, signed with the node's secret. */
const signed = (claims: Record<string, unknown>): string => {
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`
  return `${input}.${createHmac('sha256', TEST_SECRET).update(input).digest('base64url')}`
}
const nowS = (): number => Math.floor(Date.now() / 1000)
const nowMs = Date.now()

const CASES: Array<[string, Record<string, unknown>]> = [
  ['exp Number.MAX_SAFE_INTEGER', { exp: Number.MAX_SAFE_INTEGER }],
  ['exp past the Date range', { exp: 8.64e12 + 1 }],
  ['exp in milliseconds', { exp: nowMs + 3600_000 }],
  ['exp in microseconds', { exp: (nowMs + 3600_000) * 1000 }],
  ['iat Number.MAX_SAFE_INTEGER', { iat: Number.MAX_SAFE_INTEGER }],
  ['iat far before 1970', { iat: -1e300 }],
  ['nbf far before 1970', { nbf: -1e300 }],
]

t.test('absurd time claims are refused on both transports and on refresh; the node and its clients stay up', { timeout: 60_000 }, async (t) => {
  const node = await startNode()
  t.teardown(() => node.stop())

  // Bystanders on both transports, subscribed, before any bad token arrives.
  const ws = await connect(`${node.ws}/ws/events`, { token: userToken('by-ws') })
  t.teardown(() => ws.close())
  await ws.subscribe(['system.*'])
  const { client: io } = await sioConnect(node.http, { auth: { token: userToken('by-sio') }, transports: ['websocket'] })
  await io.subscribe(['system.*'])

  for (const [what, extra] of CASES) {
    const claims = { sub: 'mallory', sid: 'm-1', roles: ['user'], iat: nowS(), exp: nowS() + 3600, ...extra }
    const tok = signed(claims)

    const r = await refusal(`${node.ws}/ws/events?token=${encodeURIComponent(tok)}`)
    t.equal(r.status, 401, `${what}: WebSocket handshake refused 401`)
    t.equal(r.body?.error?.code, 'TOKEN_INVALID', `${what}: TOKEN_INVALID`)

    for (const transports of [['websocket'], ['polling']]) {
      const a = await sioAttempt(node.http, { auth: { token: tok }, transports })
      t.equal(a.ok, false, `${what}: Socket.IO (${transports[0]}) refused`)
      if (!a.ok) t.match(a.data, { code: 'TOKEN_INVALID', status: 401 }, `${what}: Socket.IO (${transports[0]}) TOKEN_INVALID`)
      else a.client.close()
    }

    // Refresh with the same subject as the bystander, so only the claim range is at fault.
    const wsRefresh = await ws.request('refresh', { token: signed({ ...claims, sub: 'by-ws' }) })
    t.match(wsRefresh, { type: 'error', payload: { code: 'REFRESH_REJECTED' } }, `${what}: WebSocket refresh REFRESH_REJECTED`)
    const sioRefresh = await io.request('refresh', { token: signed({ ...claims, sub: 'by-sio' }) })
    t.match(sioRefresh, { type: 'error', payload: { code: 'REFRESH_REJECTED' } }, `${what}: Socket.IO refresh REFRESH_REJECTED`)
  }

  // The node is up and its clients kept their connections and subscriptions.
  t.equal(node.proc.exitCode, null, 'the node process is still running')
  t.equal(ws.closeInfo, null, 'the WebSocket bystander is still open')
  t.equal(io.disconnects.length, 0, 'the Socket.IO bystander never disconnected')
  t.equal((await node.api('/api/events', { body: { type: 'system.still.up', data: { ok: true } } })).status, 202)
  t.equal((await ws.nextOfType('event')).payload.type, 'system.still.up', 'the WebSocket bystander still receives')
  t.equal((await io.nextOf('event')).type, 'system.still.up', 'the Socket.IO bystander still receives')
  t.notOk(node.lines.some((l) => l.includes('RangeError')), 'no RangeError in the node\'s output')
  const fresh = await connect(`${node.ws}/ws/events`, { token: userToken('after') })
  t.teardown(() => fresh.close())
  t.equal(fresh.frames[0]?.type, 'welcome', 'a new client is welcomed')
})
