// Token expiry on a live connection, on a cluster node process:
// `auth_expiring` AUTH_EXPIRY_WARNING before exp; `refresh {token}` with a fresh
// token of the same sub answers `refreshed {expiresAt}` and keeps the connection
// past the old exp; a refresh for another sub, garbage, or an expired token is
// REFRESH_REJECTED and changes nothing; without a refresh, `auth_expired` and
// close 4001 at exp. Behaviour is time-based: the test awaits frames and closes,
// and waits for the old exp to pass with one bounded timer. Each scenario runs
// at once on each of three node processes sharing one Redis.
import t, { type Test } from 'tap'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { startCluster } from '../helpers/cluster.js'
import type { NodeProc } from '../helpers/node.js'
import { token } from '../helpers/tokens.js'
import { within } from '../helpers/wait.js'

const WARNING_MS = 2000
const LIFETIME_S = 4 // exp has second precision: the token lives 3 to 4 s from now
const SLACK_MS = 50 // timers never fire early by more than this

const { nodes } = await startCluster(t, { AUTH_EXPIRY_WARNING: String(WARNING_MS) }, 3)
const nowS = (): number => Math.floor(Date.now() / 1000)
const iso = (s: number): string => new Date(s * 1000).toISOString()

/** A connection that timestamps every frame it receives. */
async function timed (t: Test, node: NodeProc, tok: string): Promise<{ c: TestClient, at: Map<Frame, number>, closedAt: () => number }> {
  const c = await connect(`${node.ws}/ws/events`, { token: tok })
  t.teardown(() => c.close())
  const at = new Map<Frame, number>()
  let closedAt = 0
  // Registered after TestClient's own listener, so the frame is already recorded.
  c.ws.on('message', () => { const f = c.frames[c.frames.length - 1]; if (f !== undefined && !at.has(f)) at.set(f, Date.now()) })
  c.ws.on('close', () => { closedAt = Date.now() })
  return { c, at, closedAt: () => closedAt }
}

const msUntil = (expS: number): number => expS * 1000 - Date.now()

t.test('auth_expiring before exp, refresh with the same sub keeps the connection past the old exp', { timeout: 20_000 }, async (t) => {
  await Promise.all(nodes.map(async (node, i) => await refreshKeepsAlive(t, node, `exp-u1-${i}`)))
})

async function refreshKeepsAlive (t: Test, node: NodeProc, sub: string): Promise<void> {
  const exp = nowS() + LIFETIME_S
  const { c, at } = await timed(t, node, token({ sub, sid: 'e1', roles: ['user'], exp }))
  t.equal(c.frames[0]!.payload.expiresAt, iso(exp), 'welcome carries the token exp')

  const warn = await c.nextOfType('auth_expiring', msUntil(exp) + 1000)
  const warnedAt = at.get(warn)!
  t.ok(warnedAt < exp * 1000, `auth_expiring arrived ${exp * 1000 - warnedAt} ms before exp`)
  t.ok(warnedAt >= exp * 1000 - WARNING_MS - SLACK_MS, 'and not before exp - AUTH_EXPIRY_WARNING')
  t.equal(warn.payload.expiresAt, iso(exp), 'auth_expiring names the exp')

  const newExp = nowS() + 120
  const r = await c.request('refresh', { token: token({ sub, sid: 'e1', roles: ['user'], exp: newExp }) })
  t.equal(r.type, 'refreshed', 'refreshed')
  t.equal(r.payload.expiresAt, iso(newExp), 'with the new expiry')

  // Let the old exp pass (bounded), then prove the connection is still served.
  const wait = msUntil(exp) + 500
  await new Promise((resolve) => setTimeout(resolve, Math.max(0, wait)))
  t.ok(Date.now() > exp * 1000 + 400, 'the original exp has passed')
  const pong = await c.request('ping')
  t.equal(pong.type, 'pong', 'still served after the old exp')
  t.equal(c.closeInfo, null, 'still open')
  t.notOk(c.frames.some((f) => f.type === 'auth_expired'), 'no auth_expired')
  t.equal(c.frames.filter((f) => f.type === 'auth_expiring').length, 1, 'no second warning for the new, distant exp')
}

t.test('rejected refreshes change nothing: auth_expired and close 4001 at exp', { timeout: 20_000 }, async (t) => {
  await Promise.all(nodes.map(async (node, i) => await rejectedRefreshes(t, node, `exp-u2-${i}`)))
})

async function rejectedRefreshes (t: Test, node: NodeProc, sub: string): Promise<void> {
  const exp = nowS() + LIFETIME_S
  const { c, at, closedAt } = await timed(t, node, token({ sub, sid: 'e2', roles: ['user'], exp }))
  const later = nowS() + 3600
  const cases: Array<[string, unknown]> = [
    ['another sub', token({ sub: 'exp-someone-else', sid: 'e2', roles: ['user'], exp: later })],
    ['garbage', 'definitely.not.ajwt'],
    ['an expired token of the same sub', token({ sub, sid: 'e2', roles: ['user'], iat: nowS() - 7200, exp: nowS() - 3600 })],
    ['a token signed with another key', token({ sub, sid: 'e2', roles: ['user'], exp: later }, { key: 'some-other-secret-of-at-least-32-characters!' })],
  ]
  for (const [what, tok] of cases) {
    const r = await c.request('refresh', { token: tok })
    t.equal(r.type, 'error', `${what}: error`)
    t.equal(r.payload?.code, 'REFRESH_REJECTED', `${what}: REFRESH_REJECTED`)
  }
  t.equal((await c.request('ping')).type, 'pong', 'the connection stays open after rejected refreshes')

  const warn = await c.nextOfType('auth_expiring', msUntil(exp) + 1000)
  t.ok(at.get(warn)! < exp * 1000, 'auth_expiring still arrives before the original exp')
  const closed = await within(msUntil(exp) + 2000, 'the 4001 close', c.closed)
  t.equal(closed.code, 4001, `closed 4001 (${closed.reason})`)
  const expired = c.frames.find((f) => f.type === 'auth_expired')
  t.ok(expired, 'auth_expired was sent')
  t.equal(c.frames.indexOf(expired!), c.frames.length - 1, 'auth_expired is the last frame')
  const expiredAt = at.get(expired!)!
  t.ok(expiredAt >= exp * 1000 - SLACK_MS, `auth_expired ${expiredAt - exp * 1000} ms after exp (not before)`)
  t.ok(closedAt() - exp * 1000 < 1500, `closed ${closedAt() - exp * 1000} ms after exp`)
  t.comment(`auth_expired ${expiredAt - exp * 1000} ms after exp, close ${closedAt() - exp * 1000} ms after exp`)
}
