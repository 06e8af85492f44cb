// Logs never carry credentials: not tokens from ?token= or the
// Authorization header, not API keys, not service JWTs, not refused tokens;
// logged URLs have no query string; connection logs name the connection.
import net from 'node:net'
import { Writable } from 'node:stream'
import t from 'tap'
import { drain } from '../../src/endpoints/drain.js'
import { startApp } from '../helpers/app.js'
import { connect, refusal } from '../helpers/client.js'
import { startNode } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, serviceToken, TEST_API_KEY, token, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'

class Capture extends Writable {
  readonly lines: string[] = []
  private partial = ''
  override _write (chunk: Buffer | string, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const text = this.partial + chunk.toString()
    const parts = text.split('\n')
    this.partial = parts.pop()!
    for (const p of parts) if (p.length > 0) this.lines.push(p)
    cb()
  }

  get records (): Array<Record<string, any>> {
    return this.lines.map((l) => JSON.parse(l) as Record<string, any>)
  }
}

/** Every string value of a parsed log record, with its path. */
function* strings (v: unknown, path = ''): Generator<[string, string]> {
  if (typeof v === 'string') yield [path, v]
  else if (Array.isArray(v)) for (const [i, x] of v.entries()) yield * strings(x, `${path}[${i}]`)
  else if (typeof v === 'object' && v !== null) for (const [k, x] of Object.entries(v)) yield * strings(x, path ? `${path}.${k}` : k)
}

t.test('no credential reaches the logs; URLs without query; connection logs carry ids', async (t) => {
  const capture = new Capture()
  const node = await startApp({ LOG_LEVEL: 'trace', ALLOWED_ORIGINS: 'https://app.example.com' }, { logStream: capture })
  t.teardown(() => node.close())

  const secrets: Record<string, string> = {}
  const now = Math.floor(Date.now() / 1000)

  // Accepted connections: token in the query, token in the header, an admin.
  secrets.queryToken = userToken('alice', 'sess-alice')
  const viaQuery = await connect(`${node.ws}/ws/events`, { token: secrets.queryToken })
  t.teardown(() => viaQuery.close())
  secrets.headerToken = userToken('bob', 'sess-bob')
  const viaHeader = await connect(`${node.ws}/ws/events`, { headers: { authorization: `Bearer ${secrets.headerToken}` } })
  t.teardown(() => viaHeader.close())
  secrets.adminToken = adminToken('root')
  const admin = await connect(`${node.ws}/ws/admin?token=${encodeURIComponent(secrets.adminToken)}&x=1`)
  t.teardown(() => admin.close())
  await admin.nextOfType('welcome')

  // Refused upgrades with bad tokens, in both places.
  secrets.wrongSecret = token({ sub: 'mallory', roles: ['user'] }, { key: 'another-secret-that-is-at-least-32-characters' })
  secrets.expired = token({ sub: 'mallory', roles: ['user'], iat: now - 7200, exp: now - 3600 })
  secrets.garbage = 'garbage-token-value-0123456789'
  secrets.userOnAdmin = userToken('eve', 'sess-eve')
  t.equal((await refusal(`${node.ws}/ws/events?token=${encodeURIComponent(secrets.wrongSecret)}`)).status, 401)
  t.equal((await refusal(`${node.ws}/ws/events`, { authorization: `Bearer ${secrets.expired}` })).status, 401)
  t.equal((await refusal(`${node.ws}/ws/events?token=${secrets.garbage}`)).status, 401)
  t.equal((await refusal(`${node.ws}/ws/admin?token=${encodeURIComponent(secrets.userOnAdmin)}`)).status, 403)
  secrets.originToken = userToken('olga')
  t.equal((await refusal(`${node.ws}/ws/events?token=${encodeURIComponent(secrets.originToken)}`, { origin: 'https://evil.io' })).status, 403)
  // A plain GET with a token in the query (426).
  secrets.plainGetToken = userToken('pat')
  t.equal((await fetch(`${node.http}/ws/events?token=${encodeURIComponent(secrets.plainGetToken)}`)).status, 426)

  // In-band: a refresh carries a token in a frame.
  secrets.refreshToken = userToken('alice', 'sess-alice-2')
  const refreshed = await viaQuery.request('refresh', { token: secrets.refreshToken })
  t.equal(refreshed.type, 'refreshed')
  secrets.badRefresh = userToken('notalice')
  t.match(await viaQuery.request('refresh', { token: secrets.badRefresh }), { type: 'error' })

  // The API with an API key and a service JWT, accepted and refused.
  t.equal((await node.api('/api/events', { body: { type: 'authentication.login.success', userId: 'alice' } })).status, 202)
  secrets.serviceToken = serviceToken('billing')
  t.equal((await node.api('/api/events', { body: { type: 'authentication.login.success', userId: 'bob' }, key: secrets.serviceToken })).status, 202)
  t.equal((await node.api('/api/stats', { key: secrets.serviceToken })).status, 200)
  secrets.wrongKey = 'wrong-api-key-fedcba9876543210'
  t.equal((await node.api('/api/events', { body: { type: 'a.b' }, key: secrets.wrongKey })).status, 401)
  secrets.userForApi = userToken('ursula')
  t.equal((await node.api('/api/events', { body: { type: 'a.b' }, key: secrets.userForApi })).status, 403)
  t.equal((await node.api(`/api/events?token=${TEST_API_KEY}&api_key=${TEST_API_KEY}`, { body: { type: 'BAD' } })).status, 400)
  t.equal((await node.api(`/nope?token=${encodeURIComponent(secrets.queryToken)}`)).status, 404)
  secrets.apiKey = TEST_API_KEY

  // Requests Node's HTTP parser refuses, carrying a token in the query and in
  // the Authorization header: the parser's error holds the raw request bytes.
  secrets.malformedQuery = userToken('mal-q')
  secrets.malformedHeader = userToken('mal-h')
  secrets.oversizedHeader = userToken('mal-big')
  const { port } = new URL(node.http)
  const rawRequest = async (request: string): Promise<string> => await new Promise((resolve, reject) => {
    const sock = net.connect(Number(port), '127.0.0.1', () => sock.end(request))
    let data = ''
    sock.setEncoding('utf8').on('data', (c: string) => { data += c })
    sock.on('error', reject).on('close', () => resolve(data))
  })
  t.match(await rawRequest(`GET /ws/events?token=${secrets.malformedQuery} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${secrets.malformedHeader}\r\nthis is not a header\r\n\r\n`), /^HTTP\/1\.1 400 /, 'a malformed request is refused')
  t.match(await rawRequest(`GET /api/stats?token=${secrets.oversizedHeader} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${secrets.oversizedHeader}\r\nX-Pad: ${'p'.repeat(20_000)}\r\n\r\n`), /^HTTP\/1\.1 431 /, 'headers too large are refused')
  await waitFor('the parser errors logged', () => capture.records.filter((r) => r.msg === 'client error').length, (n) => n >= 1)
  // Whoever logs such an error with its bytes (Fastify's own clientError handler did, at trace), the err serializer keeps them out.
  secrets.loggedPacket = userToken('mal-logged')
  const parserError = Object.assign(new Error('Parse Error: Invalid header value char'), { code: 'HPE_INVALID_HEADER_TOKEN', rawPacket: Buffer.from(`GET /?token=${secrets.loggedPacket} HTTP/1.1\r\n`) })
  node.app.log.trace({ err: parserError }, 'client error')
  t.match(capture.records.at(-1)?.err, { code: 'HPE_INVALID_HEADER_TOKEN', rawPacket: /^\[\d+ bytes\]$/ }, 'an error\'s bytes are logged as their size only')

  // Close a connection so its close is logged, and wait for that line.
  await viaHeader.close()
  await waitFor('connection closed log line', () => capture.records.some((r) => r.msg === 'connection closed' && r.userId === 'bob'))
  // Every request's completion line is written once its response has gone.
  await within(5000, 'flush', waitFor('every request completed in the log', () => {
    const r = capture.records
    return r.filter((x) => x.msg === 'incoming request').length === r.filter((x) => x.msg === 'request completed').length + 3 // the 3 upgraded sockets
  }))

  const records = capture.records
  t.ok(records.length > 20, `captured ${records.length} log lines`)
  t.equal(node.app.log.level, 'trace', 'the most verbose level is on')
  if (process.env.SHOW_LOGS) console.error(capture.lines.join('\n'))

  // 1. No secret, nor any recognisable part of one, anywhere; bytes logged as
  // JSON arrays ({type: 'Buffer', data: [...]}) are read back as text too.
  const bytes: string[] = []
  for (const r of records) {
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) { v.forEach(walk); return }
      if (typeof v !== 'object' || v === null) return
      const o = v as Record<string, unknown>
      if (o.type === 'Buffer' && Array.isArray(o.data)) bytes.push(Buffer.from(o.data as number[]).toString('latin1'))
      Object.values(o).forEach(walk)
    }
    walk(r)
  }
  t.same(bytes, [], 'no raw bytes are logged')
  t.notOk(records.some((r) => r.err?.rawPacket !== undefined && !/^\[\d+ bytes\]$/.test(r.err.rawPacket)), 'no rawPacket is logged, only its size')
  const raw = capture.lines.join('\n') + '\n' + bytes.join('\n')
  for (const [name, secret] of Object.entries(secrets)) {
    t.notOk(raw.includes(secret), `${name} does not appear in the logs`)
    // The signature part alone would be enough to replay nothing, but the payload+signature would.
    const sig = secret.split('.')[2]
    if (sig !== undefined && sig.length > 10) t.notOk(raw.includes(sig), `${name}'s signature does not appear`)
    t.notOk(raw.includes(encodeURIComponent(secret)), `${name} (URL-encoded) does not appear`)
  }
  t.notOk(/eyJ[A-Za-z0-9_-]{10,}\.eyJ/.test(raw), 'nothing that looks like a JWT')
  t.notOk(/Bearer\s+[A-Za-z0-9]/i.test(raw), 'no bearer credential')

  // 2. Logged URLs carry no query string.
  let urls = 0
  for (const r of records) {
    for (const [path, v] of strings(r)) {
      if (/(^|\.)(url|path|originalUrl)$/i.test(path)) {
        urls++
        t.notOk(v.includes('?'), `${path} has no query string: ${v}`)
      }
      if (v.includes('token=')) t.fail(`a value mentions token=: ${path}`)
    }
  }
  t.ok(urls > 5, `checked ${urls} logged URLs`)
  t.ok(records.some((r) => r.req?.url === '/ws/events'), 'the upgrade requests were logged, by path')

  // 3. Connection logs carry connectionId and userId (a child logger per connection).
  const opens = records.filter((r) => r.msg === 'connection open')
  t.equal(opens.length, 3, 'three connections opened')
  const welcomeIds = new Map([['alice', viaQuery.frames[0]!.payload.connectionId], ['bob', viaHeader.frames[0]!.payload.connectionId], ['root', admin.frames[0]!.payload.connectionId]])
  for (const [user, connectionId] of welcomeIds) {
    const open = opens.find((r) => r.userId === user)
    t.ok(open, `${user}: connection open logged with userId`)
    t.equal(open?.connectionId, connectionId, `${user}: connectionId is the one from welcome`)
  }
  const closed = records.find((r) => r.msg === 'connection closed' && r.userId === 'bob')
  t.equal(closed?.connectionId, welcomeIds.get('bob'), 'close log carries the connectionId')
  t.type(closed?.code, 'number')
  // Every line logged by a connection carries both ids.
  for (const r of records.filter((x) => x.connectionId !== undefined)) {
    t.type(r.userId, 'string', `line "${r.msg}" carries userId`)
  }
  // Refusals are logged, with their code but without the token.
  const refusedLines = records.filter((r) => r.msg === 'upgrade refused')
  t.ok(refusedLines.length >= 5, 'refused upgrades are logged')
  t.ok(refusedLines.some((r) => r.code === 'TOKEN_EXPIRED'))
})

t.test('a normal shutdown logs no backend fault', { timeout: 30_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())

  // In process, as main.ts runs it on SIGTERM: drain, then close. The Redis
  // connections the close ends used to be reported as an outage.
  const capture = new Capture()
  const node = await startApp({ REDIS_URL: redis.url, LOG_LEVEL: 'info' }, { logStream: capture })
  let closing = false
  t.teardown(async () => { if (!closing) await node.close() })
  const c = await connect(`${node.ws}/ws/events`, { token: userToken('shutdown') })
  await c.subscribe(['system.*'])
  t.ok(capture.records.some((r) => r.msg === 'backend connected'), 'the node was on Redis')
  const ended = new Promise<void>((resolve) => node.app.herald.backend.broker.onStateChange((healthy) => { if (!healthy) resolve() }))
  closing = true
  await drain(node.app.herald, 0)
  await node.close()
  // Listeners run in the order they were added: the node's own ran before this one.
  await within(10_000, 'the broker\'s connections to end', ended)
  t.equal((await c.closed).code, 1001, 'the client was told to go elsewhere')
  const faults = capture.records.filter((r) => r.level >= 40)
  t.same(faults.map((r) => r.msg), [], 'nothing at warn or above: no "backend unreachable"')

  // And a node process stopped with SIGTERM exits 0 without one.
  const proc = await startNode({ REDIS_URL: redis.url, DRAIN_TIMEOUT: '200' })
  t.teardown(() => proc.stop())
  const p = await connect(`${proc.ws}/ws/events`, { token: userToken('shutdown-proc') })
  proc.proc.kill('SIGTERM')
  t.equal((await p.closed).code, 1001)
  t.same(await proc.exit, { code: 0, signal: null }, 'exit code 0')
  t.notOk(proc.lines.some((l) => l.includes('backend unreachable')), 'no "backend unreachable" line')
})
