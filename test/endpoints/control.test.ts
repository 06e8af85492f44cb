// The race between an upgrade's revocation check and the revocation message:
// a connection whose upgrade read the store just before the revocation was
// written, and that registered on its node just after the message went by,
// must still be closed 4004 at once, not at the next sync of the log.
import t from 'tap'
import { applyRevocation } from '../../src/endpoints/control.js'
import { startApp } from '../helpers/app.js'
import { connect } from '../helpers/client.js'
import { userToken } from '../helpers/tokens.js'
import { within } from '../helpers/wait.js'

t.test('a connection that opens just after a revocation message is closed 4004', async (t) => {
  // A long sync interval: only the check when the connection registers can close it in time.
  const node = await startApp({ REVOCATION_SYNC_INTERVAL: '600000' })
  t.teardown(() => node.close())
  const h = node.app.herald
  // The message arrives right after the upgrade's admission batch read the
  // store (and before the node registers the connection): it saw no revocation.
  const acquire = h.connectionLimiter.acquire.bind(h.connectionLimiter)
  const messages: Record<string, Parameters<typeof applyRevocation>[1]> = {
    'race-u1': { kind: 'session', sessionId: 'race-s1', at: Date.now() },
    'race-u2': { kind: 'user', userId: 'race-u2', at: Date.now() + 1000 },
  }
  h.connectionLimiter.acquire = async (record, who) => {
    const verdict = await acquire(record, who)
    const m = messages[record.userId]
    if (m !== undefined) {
      delete messages[record.userId]
      applyRevocation(h, m)
    }
    return verdict
  }

  const late = await connect(`${node.ws}/ws/events`, { token: userToken('race-u1', 'race-s1'), waitWelcome: false })
  t.teardown(() => late.close())
  t.equal((await within(3000, 'the close', late.closed)).code, 4004, 'the session\'s connection is closed 4004')
  const lateUser = await connect(`${node.ws}/ws/events`, { token: userToken('race-u2', 'race-s2'), waitWelcome: false })
  t.teardown(() => lateUser.close())
  t.equal((await within(3000, 'the close', lateUser.closed)).code, 4004, 'a token of the revoked user issued before the revocation: 4004')

  // Other sessions, and the same user with a token issued after, are untouched.
  const other = await connect(`${node.ws}/ws/events`, { token: userToken('race-u1', 'race-s9') })
  t.teardown(() => other.close())
  t.equal((await other.request('ping')).type, 'pong', 'another session of the same user is served')
  const fresh = await connect(`${node.ws}/ws/events`, { token: userToken('race-u2', 'race-s3', { iat: Math.floor(Date.now() / 1000) + 3 }) })
  t.teardown(() => fresh.close())
  t.equal((await fresh.request('ping')).type, 'pong', 'a token issued after the user revocation is served')
})
