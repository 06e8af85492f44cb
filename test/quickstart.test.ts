// The README quick start, as a newcomer runs it: `npm start` with
// no configuration prints tokens and ready-to-paste commands; pasting them
// connects, subscribes, publishes and shows the event. With configured keys, what
// a node says at boot instead: how to get a token, and what it cannot do.
import t from 'tap'
import { npx } from './helpers/cli.js'
import { connect, refusal } from './helpers/client.js'
import { startNode, startNodes, type NodeProc } from './helpers/node.js'
import { startRedis } from './helpers/redis.js'
import { waitFor } from './helpers/wait.js'

interface Curl { url: string, headers: Record<string, string>, body: string }

/** A printed curl command (continued over lines ending in `\`), as curl would send it. */
function parseCurl (lines: string[], path: string): Curl {
  const i = lines.findIndex((l) => l.includes('curl ') && l.includes(path))
  if (i < 0) throw new Error(`no curl command for ${path} in:\n${lines.join('\n')}`)
  // Join continuation lines (ending in `\`) into one command.
  let cmd = ''
  for (let j = i; j < lines.length; j++) {
    const l = lines[j]!
    cmd += ' ' + l.replace(/\\\s*$/, '')
    if (!/\\\s*$/.test(l)) break
  }
  const url = /curl .*?(https?:\/\/\S+)/.exec(cmd)?.[1]
  const body = /-d '([^']*)'/.exec(cmd)?.[1]
  if (url === undefined || body === undefined) throw new Error(`cannot read the curl command: ${cmd}`)
  if (!/-X POST/.test(cmd)) throw new Error(`expected a POST: ${cmd}`)
  const headers: Record<string, string> = {}
  for (const m of cmd.matchAll(/-H '([^:']+):\s*([^']*)'/g)) headers[m[1]!.toLowerCase()] = m[2]!
  return { url, headers, body }
}

const after = (lines: string[], label: string): string => {
  const line = lines.find((l) => l.trimStart().startsWith(label))
  if (line === undefined) throw new Error(`the banner has no "${label}" line`)
  return line.trimStart().slice(label.length).trim()
}

const wscatUrl = (lines: string[], path: string): string => {
  const line = lines.find((l) => l.includes('wscat -c') && l.includes(path))
  const url = line !== undefined ? /wscat -c "([^"]+)"/.exec(line)?.[1] : undefined
  if (url === undefined) throw new Error(`no wscat command for ${path}`)
  return url
}

t.test('npm start with no configuration: the printed commands work as pasted', { timeout: 30_000 }, async (t) => {
  const node: NodeProc = await startNode({}, { cleanEnv: true })
  t.teardown(() => node.stop())
  // The banner ends with the health line; everything before it is printed by then.
  await node.waitLine((l) => l.includes('Health: http://'), 10_000)
  const lines = node.lines

  const userTok = after(lines, 'user token:')
  const adminTok = after(lines, 'admin token:')
  t.match(userTok, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT for the user')
  t.match(adminTok, /^[\w-]+\.[\w-]+\.[\w-]+$/, 'a JWT for the admin')

  const userUrl = wscatUrl(lines, '/ws/events')
  t.equal(userUrl, `ws://127.0.0.1:${node.port}/ws/events?token=${userTok}`, 'the connect command names this node and the user token')
  const subscribeFrame = lines.map((l) => l.trim()).find((l) => l.startsWith('{"type":"subscribe"'))
  t.ok(subscribeFrame, 'a subscribe frame to paste')
  const publishCmd = parseCurl(lines, '/api/events')
  const broadcastCmd = parseCurl(lines, '/api/notifications/broadcast')
  t.equal(publishCmd.url, `http://127.0.0.1:${node.port}/api/events`)
  t.match(publishCmd.headers.authorization, /^Bearer \S{16,}$/, 'the curl command carries the generated API key')

  // Health reports the in-process backend.
  const health = await fetch(`http://127.0.0.1:${node.port}/ws/health`)
  t.equal(health.status, 200)
  t.match(await health.json(), { healthy: true, backend: 'memory', redisConnected: false })

  // 1. wscat as the user, paste the subscribe frame.
  const user = await connect(userUrl)
  t.teardown(() => user.close())
  const welcome = user.frames[0]!
  t.equal(welcome.type, 'welcome', 'welcome first')
  t.equal(welcome.payload.userId, 'demo-user')
  user.send(subscribeFrame!)
  const sub = await user.next((f) => f.id === '1')
  t.equal(sub.type, 'subscribed')
  t.ok(sub.payload.eventTypes.includes('authentication.*'))

  // 2. the printed curl, sent as curl would.
  const res = await fetch(publishCmd.url, { method: 'POST', headers: publishCmd.headers, body: publishCmd.body })
  t.equal(res.status, 202)
  const { id } = await res.json() as { id: string }
  t.type(id, 'string')
  const ev = await user.next((f) => f.type === 'event' && f.payload.id === id)
  t.match(ev.payload, { type: 'authentication.login.success', userId: 'demo-user', sessionId: 'demo-session', data: { ip: '203.0.113.7' } }, 'the wscat window shows the event')

  const bres = await fetch(broadcastCmd.url, { method: 'POST', headers: broadcastCmd.headers, body: broadcastCmd.body })
  t.equal(bres.status, 202)
  const bid = (await bres.json() as { id: string }).id
  t.match((await user.next((f) => f.type === 'notification' && f.payload.id === bid)).payload, { level: 'info', title: 'Hello' }, 'the broadcast command notifies the user')

  // 3. the admin command opens /ws/admin.
  const adminUrl = wscatUrl(lines, '/ws/admin')
  t.equal(adminUrl, `ws://127.0.0.1:${node.port}/ws/admin?token=${adminTok}`)
  const admin = await connect(adminUrl)
  t.teardown(() => admin.close())
  t.equal(admin.frames[0]!.type, 'welcome')
  const stats = await admin.request('get_stats')
  t.equal(stats.type, 'stats')
  t.equal(stats.payload.global.servers, 1)
  t.equal(stats.payload.server.backend, 'memory')

  // The user token is not an admin token.
  const wrong = await connect(userUrl.replace('/ws/events', '/ws/admin')).then(() => 'accepted', (err: Error) => err.message)
  t.equal(wrong, 'refused with 403', 'the user token does not open /ws/admin')

  // Secrets printed for the user are not in the logs.
  t.notOk(lines.some((l) => l.startsWith('{') && (l.includes(userTok) || l.includes(adminTok))), 'tokens never appear in log lines')
})

t.test('the README quick start shows what the banner prints', { timeout: 30_000 }, async (t) => {
  const { readFile } = await import('node:fs/promises')
  const readme = await readFile(new URL('../README.md', import.meta.url), 'utf8')
  const section = readme.split(/^## /m).find((s) => s.startsWith('Quick start'))
  t.ok(section, 'the README has a Quick start section')
  const docLines = section!.split('\n')

  const node = await startNode({}, { cleanEnv: true })
  t.teardown(() => node.stop())
  await node.waitLine((l) => l.includes('Health: http://'), 10_000)

  const frame = (ls: string[]): string | undefined => ls.map((l) => l.trim()).find((l) => l.startsWith('{"type":"subscribe"'))
  t.equal(frame(docLines), frame(node.lines), 'the same subscribe frame')
  t.equal(parseCurl(docLines, '/api/events').body, parseCurl(node.lines, '/api/events').body, 'the same publish body')
  t.ok(docLines.some((l) => l.includes('npm start')), 'started with npm start')
})

t.test('REDIS_URL=… npm start on three ports, nothing else: one cluster, any banner works on any node', { timeout: 40_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const nodes = await startNodes(t, 3, { REDIS_URL: redis.url }, { cleanEnv: true })
  for (const n of nodes) await n.waitLine((l) => l.includes('Health: http://'), 10_000)
  const [A, B, C] = nodes as [NodeProc, NodeProc, NodeProc]
  t.ok(A.lines.some((l) => l.includes('development mode on Redis')), 'the banner says the key material is shared')

  // A's printed user token on B; C's printed curl (its API key) on A; the event reaches B.
  const onB = await connect(wscatUrl(A.lines, '/ws/events').replace(`:${A.port}/`, `:${B.port}/`))
  t.teardown(() => onB.close())
  await onB.subscribe(['authentication.*'])
  const cmd = parseCurl(C.lines, '/api/events')
  const res = await fetch(cmd.url.replace(`:${C.port}/`, `:${A.port}/`), { method: 'POST', headers: cmd.headers, body: cmd.body })
  t.equal(res.status, 202, 'C\'s API key is accepted by A')
  const { id } = await res.json() as { id: string }
  await onB.next((f) => f.type === 'event' && f.payload.id === id)
  t.equal((await (await fetch(`http://127.0.0.1:${C.port}/api/stats`, { headers: cmd.headers })).json() as { global: { servers: number } }).global.servers, 3, 'C counts three servers')
})

/** A log line (pino JSON) whose msg matches, parsed. */
const logs = (lines: string[], match: RegExp): Array<{ level: number, msg: string }> => lines
  .filter((l) => l.startsWith('{'))
  .map((l) => JSON.parse(l) as { level: number, msg: string })
  .filter((l) => match.test(l.msg ?? ''))

t.test('NODE_ENV=production with JWT_SECRET: no banner, one line saying how to get a token, and that command works', { timeout: 60_000 }, async (t) => {
  const env = { NODE_ENV: 'production', JWT_SECRET: 'production-secret-of-at-least-32-characters' }
  const node = await startNode(env, { cleanEnv: true })
  t.teardown(() => node.stop())
  await node.waitLine((l) => l.includes('to get a token'), 10_000)
  // Boot lines come before the hint; the readiness probe logs nothing at info.
  const hints = logs(node.lines, /to get a token/)
  t.equal(hints.length, 1, 'one hint line')
  t.equal(hints[0]!.level, 30, 'at info')
  const command = /npx herald token [^,]+/.exec(hints[0]!.msg)?.[0]
  t.equal(command, 'npx herald token --sub <user> --roles <user|admin|service> --ttl 1h', 'it names the command')
  t.notOk(node.lines.some((l) => /development mode|user token:|admin token:|Health: http/.test(l)), 'no banner')

  // Neither API_KEYS nor Redis: said once, at warn.
  const alone = logs(node.lines, /production without Redis or API_KEYS/)
  t.equal(alone.length, 1, 'one warning')
  t.equal(alone[0]!.level, 40)
  t.match(alone[0]!.msg, /only service JWTs \(role service\) can publish, and connections, limits and revocations are this node's alone/)

  // The hint, pasted with a user and role filled in, in the node's environment: a
  // service token publishes (the only way, as warned) to a user token's connection.
  const mint = async (sub: string, role: string): Promise<string> => {
    const args = command!.replace('<user>', sub).replace('<user|admin|service>', role).split(' ').slice(1)
    const r = await npx(args, env)
    t.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`)
    return r.stdout.trim()
  }
  const user = await connect(`${node.ws}/ws/events?token=${await mint('u1', 'user')}`)
  t.teardown(() => user.close())
  await user.subscribe(['authentication.*'])
  const res = await node.api('/api/events', { key: await mint('billing', 'service'), body: { type: 'authentication.login.success', userId: 'u1', data: {} } })
  t.equal(res.status, 202, 'a service JWT publishes')
  await user.next((f) => f.type === 'event' && f.payload.id === res.body.id)
  t.equal((await node.api('/api/events', { key: await mint('u1', 'user'), body: { type: 'a.b', userId: 'u1', data: {} } })).status, 403, 'a user JWT does not')
})

t.test('a node that verifies with JWT_PUBLIC_KEY says tokens come from the identity provider; with API_KEYS and Redis, no warning', { timeout: 30_000 }, async (t) => {
  const { generateKeyPairSync } = await import('node:crypto')
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const publicKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const node = await startNode({ NODE_ENV: 'production', JWT_PUBLIC_KEY: publicKey, API_KEYS: 'production-api-key-0123456789', REDIS_URL: redis.url }, { cleanEnv: true })
  t.teardown(() => node.stop())
  const hint = await node.waitLine((l) => l.includes('to get a token'), 10_000)
  t.match(JSON.parse(hint).msg, /^to get a token: your identity provider signs them \(this node verifies with JWT_PUBLIC_KEY\); npx herald token signs only with JWT_SECRET$/)
  t.equal(logs(node.lines, /production without/).length, 0, 'no warning')
})

t.test('development with REDIS_URL unreachable at boot: the banner claims no shared keys, and what it says holds', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  await redis.kill() // nothing listens on its port until restart()
  const A = await startNode({ REDIS_URL: redis.url }, { cleanEnv: true })
  t.teardown(() => A.stop())
  await A.waitLine((l) => l.includes('Health: http://'), 10_000)
  const banner = A.lines.filter((l) => !l.startsWith('{'))
  t.notOk(banner.some((l) => /stored in Redis|share this key material|for the development cluster/.test(l)), 'no claim that keys are shared or stored')
  t.ok(banner.some((l) => l.includes('which was unreachable at boot: the key material below is this node\'s alone')), 'says the keys are this node\'s')
  t.ok(banner.some((l) => l.includes('valid for 12 hours on this node only, which refuses connections (503) until it reaches Redis')), 'says when its commands work')
  const userUrl = wscatUrl(A.lines, '/ws/events')
  t.equal(await connect(userUrl).then(() => 'accepted', (err: Error) => err.message), 'refused with 503', 'refused while Redis is unreachable, as said')
  // The log names the cause, not ioredis's "Connection is closed." nor an error object without its message.
  const boot = JSON.parse(await A.waitLine((l) => l.includes('"backend unreachable at boot'), 10_000)) as { error?: string }
  t.match(boot.error, /ECONNREFUSED 127\.0\.0\.1:\d+/, `the boot error says why: ${boot.error}`)
  const warned = JSON.parse(await A.waitLine((l) => l.includes('"msg":"backend error"'), 10_000)) as { error?: string, code?: string }
  t.same([warned.code, /ECONNREFUSED/.test(warned.error ?? '')], ['ECONNREFUSED', true], 'and each backend error its message and code')

  await redis.restart()
  await waitFor('node A to reach Redis', async () => await (await fetch(`${A.http}/ws/health`)).json() as { redisConnected: boolean }, (h) => h.redisConnected, { timeoutMs: 20_000, intervalMs: 100 })
  const user = await connect(userUrl)
  t.teardown(() => user.close())
  await user.subscribe(['authentication.*'])
  const cmd = parseCurl(A.lines, '/api/events')
  const res = await fetch(cmd.url, { method: 'POST', headers: cmd.headers, body: cmd.body })
  t.equal(res.status, 202, 'the printed curl works against this node')
  const { id } = await res.json() as { id: string }
  await user.next((f) => f.type === 'event' && f.payload.id === id)

  // A node started now stores its own keys: A's are on A only.
  const B = await startNode({ REDIS_URL: redis.url }, { cleanEnv: true })
  t.teardown(() => B.stop())
  await B.waitLine((l) => l.includes('Health: http://'), 10_000)
  t.ok(B.lines.some((l) => l.includes('development mode on Redis: nodes started the same way share this key material')))
  t.equal((await refusal(userUrl.replace(`:${A.port}/`, `:${B.port}/`))).status, 401, 'A\'s token is not accepted by B')
  const onB = parseCurl(B.lines, '/api/events')
  t.equal((await fetch(cmd.url, { method: 'POST', headers: onB.headers, body: onB.body })).status, 401, 'B\'s API key is not accepted by A')
})
