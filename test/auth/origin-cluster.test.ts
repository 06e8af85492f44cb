// The Origin check and the client address, on three node processes: every
// node refuses the same look-alike origins before the upgrade and
// welcomes the listed ones and clients that send no Origin; X-Forwarded-For is
// believed only from a peer inside TRUSTED_PROXIES (here a CIDR), and ignored
// by a node whose list does not hold the peer.
import t from 'tap'
import { connect, refusal } from '../helpers/client.js'
import type { NodeProc } from '../helpers/node.js'
import { opsCluster } from '../helpers/ops.js'
import { userToken } from '../helpers/tokens.js'

const ORIGINS = 'https://example.com,https://*.example.org,http://localhost:5173'
const cl = await opsCluster(t, { ALLOWED_ORIGINS: ORIGINS, NODE_TTL: '3000' }, ['orig-a', 'orig-b', 'orig-c'], [
  { TRUSTED_PROXIES: '127.0.0.0/8' },
  { TRUSTED_PROXIES: '127.0.0.0/8,::1' },
  { TRUSTED_PROXIES: '10.0.0.0/8' }, // the test's peer (127.0.0.1) is not a proxy here
])
const [A, B, C] = cl.nodes as [NodeProc, NodeProc, NodeProc]

t.test('look-alike origins are refused 403 on every node; listed ones and no Origin are welcomed', async (t) => {
  const refusedOrigins = [
    'https://evil-example.com', // suffix of an exact entry
    'https://notexample.com',
    'https://example.com.evil.io', // the entry as a prefix
    'http://example.com', // http for an https entry
    'https://example.com:8443', // another port
    'https://example.org', // the apex of a wildcard entry
    'https://app.example.org.evil.io',
    'https://app-example.org',
    'http://app.example.org', // scheme of a wildcard entry
    'http://localhost:5174',
    'https://localhost:5173',
    'null',
    'file://',
    '',
  ]
  for (const n of [A, B, C]) {
    for (const origin of refusedOrigins) {
      const r = await refusal(`${n.ws}/ws/events?token=${userToken('orig-u')}`, { origin })
      t.match(r, { status: 403, body: { error: { code: 'ORIGIN_FORBIDDEN' } } }, `${n.serverId}: ${JSON.stringify(origin)} refused`)
    }
    for (const origin of ['https://example.com', 'https://app.example.org', 'https://a.b.example.org', 'http://localhost:5173', undefined]) {
      const c = await connect(`${n.ws}/ws/events`, { token: userToken('orig-u'), headers: origin !== undefined ? { origin } : {} })
      t.equal(c.frames[0]?.type, 'welcome', `${n.serverId}: ${origin ?? 'no Origin'} welcomed`)
      await c.close()
    }
  }
})

t.test('X-Forwarded-For counts only from a peer in TRUSTED_PROXIES (CIDR)', async (t) => {
  const open = async (n: NodeProc, user: string, xff: string): Promise<string> => {
    const c = await connect(`${n.ws}/ws/events`, { token: userToken(user), headers: { 'x-forwarded-for': xff } })
    t.teardown(() => c.close())
    const listed = await n.api(`/api/users/${user}/connections`)
    return listed.body.connections[0].ip as string
  }
  t.equal(await open(A, 'xff-a', '198.51.100.7'), '198.51.100.7', 'A (127.0.0.0/8 trusted): the forwarded address')
  t.equal(await open(B, 'xff-b', '203.0.113.9, 198.51.100.8'), '198.51.100.8', 'B: the last address the trusted proxy appended')
  t.equal(await open(C, 'xff-c', '198.51.100.9'), '127.0.0.1', 'C (only 10.0.0.0/8 trusted): the peer address, the header ignored')
})
