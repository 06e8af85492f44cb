// X-Forwarded-For from a trusted proxy (TRUSTED_PROXIES) names the client only
// where it holds IP addresses: from the nearest hop outwards, the first entry
// that is not an IP and everything beyond it are ignored, so a client's address
// (a per-IP limit key, a log field, an admin listing) is never an arbitrary
// string. Both transports, on a node process that trusts 127.0.0.1.
import t from 'tap'
import { connect } from '../helpers/client.js'
import { startNode } from '../helpers/node.js'
import { sioConnect } from '../helpers/sio.js'
import { userToken } from '../helpers/tokens.js'

const CASES: Array<[string, string, string]> = [
  ['a valid client address', '203.0.113.9', '203.0.113.9'],
  ['an IPv6 client address', '2001:db8::7', '2001:db8::7'],
  ['a client behind two proxies', '198.51.100.4, 203.0.113.9', '203.0.113.9'],
  ['not an IP at all', 'not-an-ip', '127.0.0.1'],
  ['a forged entry beyond a valid one', 'evil<script>, 203.0.113.9', '203.0.113.9'],
  ['the nearest entry invalid', '203.0.113.9, unknown', '127.0.0.1'],
  ['an address with a port', '203.0.113.9:4711', '127.0.0.1'],
  ['an empty entry', '203.0.113.9, ', '127.0.0.1'],
  ['4,000 characters', 'x'.repeat(4000), '127.0.0.1'],
]

t.test('a non-IP X-Forwarded-For falls back to the nearest valid hop, on WebSocket and Socket.IO', { timeout: 60_000 }, async (t) => {
  const node = await startNode({ TRUSTED_PROXIES: '127.0.0.1' })
  t.teardown(() => node.stop())
  const ipOf = async (userId: string): Promise<string[]> =>
    ((await node.api(`/api/users/${userId}/connections`)).body.connections as Array<{ ip: string }>).map((c) => c.ip)

  for (const [i, [what, header, expected]] of CASES.entries()) {
    const ws = await connect(`${node.ws}/ws/events`, { token: userToken(`xff-ws-${i}`), headers: { 'x-forwarded-for': header } })
    t.teardown(() => ws.close())
    t.same(await ipOf(`xff-ws-${i}`), [expected], `${what}: WebSocket client recorded as ${expected}`)
    const open = await node.waitLine((l) => l.includes('"connection open"') && l.includes(`"xff-ws-${i}"`), 5000)
    t.equal(JSON.parse(open).ip, expected, `${what}: and logged as ${expected}`)

    for (const transport of ['websocket', 'polling']) {
      const user = `xff-sio-${transport}-${i}`
      const { client } = await sioConnect(node.http, { auth: { token: userToken(user) }, transports: [transport], extraHeaders: { 'x-forwarded-for': header } })
      t.teardown(() => client.close())
      t.same(await ipOf(user), [expected], `${what}: Socket.IO ${transport} client recorded as ${expected}`)
    }
  }
})
