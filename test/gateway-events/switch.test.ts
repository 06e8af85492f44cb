// GATEWAY_EVENTS switches the gateway's events off: all of them (`none`), or
// a family. Each node drives the triggers, then publishes a marker through
// the same node: the marker comes after whatever the triggers published on
// the admin channel, so its arrival without them proves they were not.
import t, { type Test } from 'tap'
import { connect } from '../helpers/client.js'
import { attempt, startCluster } from '../helpers/cluster.js'
import type { NodeProc } from '../helpers/node.js'
import { token } from '../helpers/tokens.js'
import { name, Secrets } from './helpers.js'

/** A session opened, a bad frame, a forged token; then the marker. Resolves with the gateway events the admin saw before the marker. */
async function drive (t: Test, node: NodeProc, secrets: Secrets): Promise<any[]> {
  const admin = await connect(`${node.ws}/ws/admin`, { token: secrets.admin(name('admin')) })
  t.teardown(() => admin.close())
  await admin.subscribe(['session.*', 'security.*', 'test.*'])
  const u = name('user')
  const c = await connect(`${node.ws}/ws/events`, { token: secrets.user(u) })
  t.teardown(() => c.close())
  c.send('not json')
  await c.nextOfType('error')
  const forged = await attempt(`${node.ws}/ws/events`, { token: token({ sub: u }, { key: 'another-key-of-at-least-32-characters!!' }) })
  t.notOk(forged.ok, 'the forged token refused')
  const r = await node.api('/api/events', { body: { type: 'test.marker', data: {} } })
  t.equal(r.status, 202)
  const at = admin.frames.indexOf(await admin.next((f) => f.type === 'event' && f.payload.type === 'test.marker'))
  return admin.frames.slice(0, at).filter((f) => f.type === 'event' && f.payload.data?.source === 'gateway').map((f) => f.payload)
}

t.test('GATEWAY_EVENTS=none publishes nothing', { timeout: 60_000 }, async (t) => {
  const { nodes } = await startCluster(t, { GATEWAY_EVENTS: 'none' }, 1)
  const node = nodes[0]!
  const secrets = new Secrets()
  t.same((await drive(t, node, secrets)).map((e) => e.type), [], 'no gateway event before the marker')
  const metrics = (await node.api('/metrics', { key: '' })).body as string
  t.notMatch(metrics, /herald_gateway_events_(suppressed_)?total\{/, 'none counted either: nothing was even offered')
})

t.test('GATEWAY_EVENTS=session,security.validation.failed with GATEWAY_EVENTS_IP=admins: the rest of security is off; the IP only in admin-only events', { timeout: 60_000 }, async (t) => {
  const { nodes } = await startCluster(t, { GATEWAY_EVENTS: 'session,security.validation.failed', GATEWAY_EVENTS_IP: 'admins' }, 1)
  const seen = await drive(t, nodes[0]!, new Secrets())
  const types = seen.map((e) => e.type as string)
  t.ok(types.includes('session.created'), `session events published (${types.join(', ')})`)
  t.notOk(types.includes('security.suspicious.activity'), 'no suspicious activity (forged token): its type is off')
  const created = seen.find((e) => e.type === 'session.created')
  t.ok(created.userId !== undefined && !('ip' in created.data), 'a user\'s event carries no IP')
  const token = seen.find((e) => e.type === 'security.validation.failed' && e.data.reason === 'token')
  t.equal(token?.data.ip, '127.0.0.1', 'an admin-only event does')
  const frame = seen.find((e) => e.type === 'security.validation.failed' && e.data.reason === 'frame')
  t.ok(frame !== undefined && !('ip' in frame.data), 'the bad frame is the user\'s event: no IP')
})
