// The shipped deploy/haproxy.cfg, run for real by Debian's haproxy in front of
// three real Herald nodes on one private Redis, configured with the
// environment of docker-compose.yml. The config is rewritten for loopback only:
// server addresses become 127.0.0.1:<node port> and the two binds free loopback
// ports; every other line is the shipped one. Clients connect through haproxy;
// a SIGKILLed node is marked DOWN by the /ws/health check and its clients
// reconnect through haproxy to the others; a SIGTERM-drained node turns its
// readiness 503, is taken out of rotation while its connections are still open,
// and its clients, closed with 1001, reconnect to the remaining node; upgrades
// that reach it in the meantime are retried by haproxy on another node.
// /metrics stays unreachable through haproxy however the path is spelt, while
// the node itself serves those spellings; a Socket.IO long-polling session
// stays on one node by haproxy's cookie.
// An upgrade whose client gives up before the node answers is closed on the
// node's side too (`option abortonclose`), so the node drops it unread.
// deploy/nginx.conf, rewritten the same way, passes `nginx -t` and runs in
// front of the same nodes: WebSockets pass, /metrics does not.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { connect, type TestClient } from '../helpers/client.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { haproxyStates, rewriteHaproxy, startHaproxy, type Haproxy } from '../helpers/haproxy.js'
import { freePort } from '../helpers/ports.js'
import { startRedis } from '../helpers/redis.js'
import { sioAttempt, sioConnect, type SioClient } from '../helpers/sio.js'
import { token } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'
import { ROOT, binary, composeFile, forceExitMarginMs, heraldServices, read, runIn, serviceEnv } from './lib.js'
import { reaped } from '../helpers/children.js'

const HAPROXY = binary('haproxy')
const NGINX = binary('nginx')
const compose = composeFile()
const services = heraldServices(compose)
const NAMES = ['herald-1', 'herald-2', 'herald-3'] as const
type Name = typeof NAMES[number]
const shippedEnv = serviceEnv(services['herald-1']) // docker-compose.yml's defaults
const SECRET = shippedEnv.JWT_SECRET!
const API_KEY = shippedEnv.API_KEYS!.split(',')[0]!
const DRAIN_MS = Number(shippedEnv.DRAIN_TIMEOUT ?? 10_000)
// Upgrades sent at a draining node that haproxy has not taken out yet.
const BURST = 8

const dir = mkdtempSync(join(tmpdir(), 'herald-lb-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

function rewriteNginx (cfg: string, servers: Record<string, number>, listen: number): { text: string, changed: number } {
  let changed = 0
  const text = cfg.split('\n').map((line) => {
    let m = /^(\s*server\s+)([^\s:;]+):\d+(.*)$/.exec(line)
    if (m !== null) {
      const port = servers[m[2]!]
      if (port === undefined) throw new Error(`nginx.conf: unexpected server ${m[2]}`)
      changed++
      return `${m[1]}127.0.0.1:${port}${m[3]}`
    }
    m = /^(\s*listen\s+)8080;(.*)$/.exec(line)
    if (m !== null) { changed++; return `${m[1]}127.0.0.1:${listen};${m[2]}` }
    if (/^\s*listen\s/.test(line)) throw new Error(`nginx.conf: unexpected listen ${line.trim()}`)
    return line
  }).join('\n')
  return { text, changed }
}

/**
 * Spellings of /metrics, written to the socket byte for byte (fetch would
 * normalise the target). `routed`: the node's router sends it to the metrics
 * route, checked against the node itself below, so the list cannot rot into
 * spellings nothing serves. Percent-escapes and the absolute form are decoded
 * by the node but not by a raw-path match in the balancer.
 */
const METRICS_SPELLINGS: Array<{ target: string, routed: boolean }> = [
  { target: '/metrics', routed: true },
  { target: '/%6detrics', routed: true },
  { target: '/%6D%65%74%72%69%63%73', routed: true },
  { target: '/metric%73', routed: true },
  { target: '/metrics?x=1', routed: true },
  { target: '/metrics?', routed: true },
  { target: '/metrics#x', routed: true },
  { target: 'http://herald/metrics', routed: true },
  { target: 'http://herald/%6detrics', routed: true },
  { target: '//metrics', routed: false },
  { target: '/metrics/', routed: false },
  { target: '/METRICS', routed: false },
  { target: '/%4detrics', routed: false },
  { target: '/metrics;x', routed: false },
  { target: '/x/../metrics', routed: false },
  { target: '/%2fmetrics', routed: false },
]
const isMetricsBody = (body: string): boolean => /# (HELP|TYPE) herald_/.test(body)

/** One GET with the target exactly as given; status and body (latin1; chunk sizes left in, which the checks ignore). */
async function rawGet (port: number, target: string): Promise<{ status: number, body: string }> {
  const sock = net.connect(port, '127.0.0.1')
  try {
    return await within(5000, `GET ${target} on :${port}`, new Promise((resolve, reject) => {
      let data = ''
      sock.setEncoding('latin1')
      sock.on('connect', () => sock.write(`GET ${target} HTTP/1.1\r\nHost: herald\r\nConnection: close\r\n\r\n`))
      sock.on('data', (d: string) => { data += d })
      sock.on('error', reject)
      sock.on('close', () => {
        const m = /^HTTP\/1\.[01] (\d{3})/.exec(data)
        if (m === null) reject(new Error(`GET ${target} on :${port}: no HTTP response (${JSON.stringify(data.slice(0, 120))})`))
        else resolve({ status: Number(m[1]), body: data.slice(data.indexOf('\r\n\r\n') + 4) })
      })
    }))
  } finally {
    sock.destroy()
  }
}

/** Stops a daemon started here: SIGTERM, then SIGKILL to it and its children (nginx workers outlive a killed master). */
async function stopProcess (p: ChildProcess | undefined): Promise<void> {
  if (p === undefined || p.exitCode !== null || p.signalCode !== null) return
  const exited = new Promise((resolve) => p.once('exit', resolve))
  let children: number[] = []
  try { children = readFileSync(`/proc/${p.pid}/task/${p.pid}/children`, 'utf8').trim().split(/\s+/).filter((x) => x.length > 0).map(Number) } catch {}
  p.kill('SIGTERM')
  await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))])
  if (p.exitCode === null && p.signalCode === null) {
    for (const c of children) { try { process.kill(c, 'SIGKILL') } catch {} }
    p.kill('SIGKILL')
    await exited
  }
}

const run = async (cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, out: string }> => await runIn(dir, cmd, args, env)

t.test('nginx -t accepts deploy/nginx.conf rewritten for loopback', async (t) => {
  const servers = { 'herald-1': await freePort(), 'herald-2': await freePort(), 'herald-3': await freePort() }
  const { text, changed } = rewriteNginx(read('deploy/nginx.conf'), servers, await freePort())
  t.equal(changed, 7, 'six server lines and the listen line, nothing else')
  const file = join(dir, 'nginx.conf')
  writeFileSync(file, text)
  const r = await run(NGINX, ['-t', '-p', dir, '-c', file])
  t.equal(r.code, 0, r.out)
  t.match(r.out, /syntax is ok/)
  // The check is real: a broken directive fails it.
  writeFileSync(file, text.replace('least_conn;', 'least_conns;'))
  t.not((await run(NGINX, ['-t', '-p', dir, '-c', file])).code, 0, 'nginx -t refuses a misspelt directive')
})

t.test('haproxy balances WebSocket clients over three nodes and takes a dead or draining node out', async (t) => {
  const redis = await startRedis()
  const nodes = new Map<Name, NodeProc>()
  const clients: TestClient[] = []
  const sioClients: SioClient[] = []
  let haproxy: ChildProcess | undefined
  let nginx: ChildProcess | undefined
  const hlog: string[] = []
  t.teardown(async () => {
    for (const c of clients) await c.close()
    for (const c of sioClients) c.close()
    await stopProcess(haproxy)
    await stopProcess(nginx)
    await Promise.all([...nodes.values()].map(async (n) => await n.stop('SIGKILL')))
    await redis.stop()
  })

  // Three nodes with the compose environment; only what loopback needs changes.
  await Promise.all(NAMES.map(async (name) => {
    const env = { ...serviceEnv(services[name]), REDIS_URL: redis.url, HOST: '127.0.0.1', PORT: '0', TRUSTED_PROXIES: '127.0.0.1' }
    nodes.set(name, await startNode(env, { cleanEnv: true }))
  }))
  const node = (n: Name): NodeProc => nodes.get(n)!
  for (const n of NAMES) {
    t.equal(node(n).serverId, n)
    await waitFor(`${n} ready`, async () => (await fetch(`${node(n).http}/ws/health`)).status, (s) => s === 200, { timeoutMs: 10_000 })
  }

  const fePort = await freePort()
  const statsPort = await freePort()
  const shipped = read('deploy/haproxy.cfg')
  const { text, changed } = rewriteHaproxy(shipped, Object.fromEntries(NAMES.map((n) => [n, node(n).port])), fePort, statsPort)
  t.equal(changed, 8, 'six server lines and two binds rewritten, nothing else')
  t.equal(text.split('\n').length, shipped.split('\n').length)
  const cfg = join(dir, 'haproxy.cfg')
  writeFileSync(cfg, text)
  const check = await run(HAPROXY, ['-c', '-f', cfg])
  t.equal(check.code, 0, `haproxy -c: ${check.out}`)

  haproxy = reaped(spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] }))
  for (const s of [haproxy.stdout!, haproxy.stderr!]) s.on('data', (b: Buffer) => hlog.push(...b.toString().split('\n').filter((l) => l.length > 0)))
  const tail = (): string => hlog.slice(-15).join('\n')

  const states = async (): Promise<Record<string, string>> => await haproxyStates(statsPort)
  /** Per-server retry and redispatch counters of backend `herald`. */
  const counters = async (n: Name): Promise<{ retries: number, redispatches: number }> => {
    const [header, ...rows] = (await (await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)).text()).trim().split('\n')
    const cols = header!.replace(/^# /, '').split(',')
    const row = rows.map((r) => r.split(',')).find((r) => r[cols.indexOf('pxname')] === 'herald' && r[cols.indexOf('svname')] === n)!
    return { retries: Number(row[cols.indexOf('wretr')] || 0), redispatches: Number(row[cols.indexOf('wredis')] || 0) }
  }
  const stateOf = async (n: Name): Promise<string | undefined> => (await states())[n]
  await waitFor('all three servers UP in haproxy', states, (s) => NAMES.every((n) => s[n] === 'UP'), { timeoutMs: 15_000 })
    .catch((err: Error) => { throw new Error(`${err.message}\nhaproxy:\n${tail()}`) })

  const lb = `ws://127.0.0.1:${fePort}`
  const lbHttp = `http://127.0.0.1:${fePort}`
  const publish = async (path: string, body: unknown): Promise<number> =>
    (await fetch(lbHttp + path, { method: 'POST', headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })).status

  interface Conn { user: string, client: TestClient, serverId: string, refusals: number }
  /** Connects through haproxy as a real client would: retry with jitter, bounded. */
  const open = async (user: string, tok = token({ sub: user, sid: `${user}-s`, roles: ['user'] }, { key: SECRET })): Promise<Conn> => {
    const deadline = Date.now() + 10_000
    let refusals = 0
    for (;;) {
      try {
        const client = await connect(`${lb}/ws/events`, { token: tok })
        clients.push(client)
        const welcome = await client.nextOfType('welcome')
        return { user, client, serverId: welcome.payload.serverId as string, refusals }
      } catch (err) {
        refusals++
        if (Date.now() > deadline) throw new Error(`${user}: no connection through haproxy in 10 s (${refusals} refusals, last: ${(err as Error).message})\nhaproxy:\n${tail()}`)
        await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 100))
      }
    }
  }
  const on = (conns: Conn[], n: Name): Conn[] => conns.filter((c) => c.serverId === n && c.client.closeInfo === null)

  // The README's commands, through the balancer: a token from `herald token`,
  // a subscription, a publish with the compose API key.
  const minted = await run(process.execPath, [join(ROOT, 'dist/cli.js'), 'token', '--sub', 'demo-user', '--sid', 'demo-user-session'], { JWT_SECRET: SECRET })
  t.equal(minted.code, 0, `herald token: ${minted.code === 0 ? 'token minted' : minted.out}`)
  const demo = await open('demo-user', minted.out.trim())
  await demo.client.subscribe(['authentication.*', 'system.*'])
  t.equal(await publish('/api/events', { type: 'authentication.login.success', userId: 'demo-user', sessionId: 'demo-user-session', data: { ip: '203.0.113.7' } }), 202)
  const ev = await demo.client.nextOfType('event')
  t.equal(ev.payload.type, 'authentication.login.success', 'the demo user receives its event through haproxy')

  // /metrics: every spelling the node routes is served by the node itself (so
  // each check below could fail) and refused by haproxy.
  for (const { target, routed } of METRICS_SPELLINGS) {
    const direct = await rawGet(node('herald-1').port, target)
    t.equal(isMetricsBody(direct.body), routed, `${target}: the node ${routed ? 'serves' : 'does not route'} it (${direct.status})`)
    const via = await rawGet(fePort, target)
    t.ok([400, 404].includes(via.status) && !isMetricsBody(via.body), `${target}: refused by haproxy (${via.status})`)
  }
  t.equal((await rawGet(fePort, '/ws/health')).status, 200, 'while the rest of the node still answers through haproxy')

  // nginx, the alternative, in front of the same nodes: WebSockets pass, /metrics does not.
  const ngPort = await freePort()
  const ngDir = join(dir, 'nginx-run')
  mkdirSync(join(ngDir, 'logs'), { recursive: true })
  const ng = rewriteNginx(read('deploy/nginx.conf'), Object.fromEntries(NAMES.map((n) => [n, node(n).port])), ngPort)
  writeFileSync(join(ngDir, 'nginx.conf'), ng.text)
  // A file, not a pipe, for stdout: nginx opens /dev/stdout for its access log.
  const ngOut = openSync(join(ngDir, 'out.log'), 'w')
  // `pid` here: Debian's built-in pid path is the system nginx's /run/nginx.pid.
  nginx = reaped(spawn(NGINX, ['-p', ngDir, '-c', join(ngDir, 'nginx.conf'), '-g', `daemon off; pid ${join(ngDir, 'nginx.pid')};`], { stdio: ['ignore', ngOut, ngOut] }))
  closeSync(ngOut)
  await waitFor('nginx listening', async () => (await rawGet(ngPort, '/ws/health')).status, (s) => s === 200, { timeoutMs: 10_000 })
    .catch((err: Error) => { throw new Error(`${err.message}\nnginx:\n${readFileSync(join(ngDir, 'out.log'), 'utf8').slice(-2000)}`) })
  for (const { target } of METRICS_SPELLINGS) {
    const via = await rawGet(ngPort, target)
    t.ok([400, 404].includes(via.status) && !isMetricsBody(via.body), `${target}: refused by nginx (${via.status})`)
  }
  const viaNginx = await connect(`ws://127.0.0.1:${ngPort}/ws/events`, { token: token({ sub: 'nginx-user', sid: 'nginx-user-s', roles: ['user'] }, { key: SECRET }) })
  clients.push(viaNginx)
  t.ok(NAMES.includes((await viaNginx.nextOfType('welcome')).payload.serverId), 'a WebSocket upgrades through nginx')
  await viaNginx.close()
  await stopProcess(nginx)

  // Spread: leastconn hands each node its share.
  let conns: Conn[] = [demo]
  for (let i = 0; i < 11; i++) conns.push(await open(`user-${i}`))
  const spread = Object.fromEntries(NAMES.map((n) => [n, on(conns, n).length]))
  for (const n of NAMES) t.equal(spread[n], 4, `${n} holds 4 of 12 connections (${JSON.stringify(spread)})`)
  t.equal(await publish('/api/notifications/broadcast', { level: 'info', title: 't', message: 'all nodes' }), 202)
  for (const c of conns) await c.client.next((f) => f.type === 'notification' && f.payload.message === 'all nodes')
  t.pass('a broadcast through haproxy reaches the clients of every node')

  // Socket.IO long polling: every request of a session is its own HTTP request
  // and must reach the node holding the session. socket.io-client in Node keeps
  // cookies (haproxy's herald_node) only with withCredentials: true.
  const sioToken = (sub: string): string => token({ sub, sid: `${sub}-s`, roles: ['user'] }, { key: SECRET })
  const sioLog = (from: number): string[] => hlog.slice(from).filter((l) => / herald_socketio\//.test(l))
  const logFrom = hlog.length
  const polling = await sioConnect(lbHttp, { transports: ['polling'], withCredentials: true, auth: { token: sioToken('poller') } })
  sioClients.push(polling.client)
  const pinned = polling.welcome.serverId as string
  t.ok(NAMES.includes(pinned as Name), `the polling session opened on ${pinned}`)
  t.equal(polling.client.socket.io.engine.transport.name, 'polling')
  t.same(await polling.client.subscribe(['authentication.*']), ['authentication.*'])
  for (let i = 0; i < 3; i++) {
    t.equal(await publish('/api/events', { type: 'authentication.login.success', userId: 'poller', sessionId: 'poller-s', data: { n: i } }), 202)
    await polling.client.next((r) => r.event === 'event' && r.payload?.data?.n === i, 5000)
    t.equal((await polling.client.request('ping')).type, 'pong')
  }
  t.same(polling.client.disconnects, [], 'the session survived its requests')
  polling.client.close()
  // haproxy logs a request when it ends; the pending long poll ends with the close.
  const served = await waitFor('the session\'s requests in the haproxy log', () => sioLog(logFrom), (ls) => ls.length >= 10, { timeoutMs: 5000 })
  const perNode: Record<string, number> = {}
  for (const l of served) { const n = / herald_socketio\/(\S+) /.exec(l)![1]!; perNode[n] = (perNode[n] ?? 0) + 1 }
  t.same(Object.keys(perNode), [pinned], `all ${served.length} requests of the session went to ${pinned} (${JSON.stringify(perNode)})`)
  // Without its cookie the same client is spread by leastconn and loses its session.
  const cookieless = await sioAttempt(lbHttp, { transports: ['polling'], auth: { token: sioToken('no-cookie') } })
  sioClients.push(cookieless.client)
  // Either refused outright, or admitted and then dropped when a request lands on another node.
  const lost = cookieless.ok ? await cookieless.client.disconnected(1, 5000).then((d) => `disconnected: ${d.reason}`, () => null) : `refused: ${cookieless.message}`
  t.ok(lost !== null, `without the cookie the session fails (${lost ?? 'it survived'})`)
  cookieless.client.close()

  // 1. SIGKILL herald-1: its clients lose their connection and reconnect through
  // haproxy at once; the health check marks it DOWN.
  const killedConns = on(conns, 'herald-1')
  const reconnects = killedConns.map(async (c) => { await c.client.closed; return await open(c.user) })
  node('herald-1').proc.kill('SIGKILL')
  const killedAt = Date.now()
  const back = await within(15_000, 'reconnects after the kill', Promise.all(reconnects))
  for (const c of back) t.not(c.serverId, 'herald-1', `${c.user} reconnected to ${c.serverId}`)
  await waitFor('herald-1 DOWN in haproxy', () => stateOf('herald-1'), (s) => s === 'DOWN', { timeoutMs: 10_000 })
  t.pass(`haproxy marked the killed node DOWN ${Date.now() - killedAt} ms after the kill`)
  conns = [...conns.filter((c) => c.client.closeInfo === null), ...back]
  t.same(NAMES.map((n) => on(conns, n).length).reduce((a, b) => a + b), 12, 'all 12 clients connected again')
  for (let i = 0; i < 4; i++) {
    const fresh = await open(`after-kill-${i}`)
    t.not(fresh.serverId, 'herald-1', 'new clients avoid the dead node')
    conns.push(fresh)
  }

  // 2. SIGTERM herald-2: readiness 503 at once; haproxy takes it out while it
  // still holds connections (the drain spreads closes over DRAIN_TIMEOUT);
  // each closed client (1001) reconnects to herald-3.
  const drained = on(conns, 'herald-2')
  t.ok(drained.length >= 4, `herald-2 holds ${drained.length} connections`)
  const reconnected = drained.map(async (c) => {
    const info = await c.client.closed
    return { info, conn: await open(c.user) }
  })
  const termAt = Date.now()
  node('herald-2').proc.kill('SIGTERM')
  await waitFor('herald-2 readiness 503', async () => (await fetch(`${node('herald-2').http}/ws/health`)).status, (s) => s === 503, { timeoutMs: 2000 })
  // Until its health check fails twice haproxy still sends herald-2 upgrades,
  // which the draining node answers 503: haproxy must retry them elsewhere.
  const retriedBefore = await counters('herald-2')
  const stateAtBurst = await stateOf('herald-2')
  t.match(stateAtBurst, /^UP/, `herald-2 still in rotation in haproxy (${stateAtBurst}) as the burst starts`)
  const burst = await within(10_000, 'upgrades while herald-2 drains', Promise.all(Array.from({ length: BURST }, async (_, i) => await open(`burst-${i}`))))
  const retriedAfter = await counters('herald-2')
  t.same(burst.map((c) => c.serverId), burst.map(() => 'herald-3'), 'every upgrade sent during the drain ends on herald-3')
  t.same(burst.map((c) => c.refusals), burst.map(() => 0), 'none of them was refused to the client')
  t.ok(retriedAfter.retries + retriedAfter.redispatches > retriedBefore.retries + retriedBefore.redispatches,
    `because haproxy retried herald-2's 503s on another node (${JSON.stringify(retriedBefore)} → ${JSON.stringify(retriedAfter)})`)
  conns.push(...burst)
  await waitFor('herald-2 DOWN in haproxy', () => stateOf('herald-2'), (s) => s === 'DOWN', { timeoutMs: 8000, intervalMs: 50 })
  const stillOpen = drained.filter((c) => c.client.closeInfo === null).length
  t.ok(stillOpen > 0, `out of rotation ${Date.now() - termAt} ms after SIGTERM, with ${stillOpen} of ${drained.length} connections not yet closed`)
  const during = await open('during-drain')
  t.equal(during.serverId, 'herald-3', 'a new client during the drain lands on the remaining node')
  conns.push(during)
  const results = await within(DRAIN_MS + 10_000, 'drained clients reconnecting', Promise.all(reconnected))
  for (const r of results) {
    t.equal(r.info.code, 1001, `${r.conn.user} was closed with 1001 (going away)`)
    t.equal(r.conn.serverId, 'herald-3', `${r.conn.user} reconnected to herald-3`)
  }
  t.same(results.map((r) => r.conn.refusals), results.map(() => 0), 'no reconnect was refused: haproxy retried any 503 from the draining node on another')
  const exit = await within(DRAIN_MS + forceExitMarginMs() + 5000, 'herald-2 exit', node('herald-2').exit)
  t.same(exit, { code: 0, signal: null }, 'the drained node exits 0')
  conns = [...conns.filter((c) => c.client.closeInfo === null), ...results.map((r) => r.conn)]
  t.ok(conns.every((c) => c.serverId === 'herald-3'), 'every client is now on herald-3')
  t.equal(conns.length, 17 + BURST, 'and none was lost')
  t.equal(await publish('/api/notifications/broadcast', { level: 'info', title: 't', message: 'after drain' }), 202)
  for (const c of conns) await c.client.next((f) => f.type === 'notification' && f.payload.message === 'after drain')
  t.pass('the remaining node serves every client through haproxy')
  const finalStates = await states()
  t.same(finalStates, { 'herald-1': 'DOWN', 'herald-2': 'DOWN', 'herald-3': 'UP' })
})

// A node busy with a reconnect storm answers upgrades late; a client that gave
// up meanwhile (the SDK waits 10 s for its welcome) must take its request with
// it, or the node does the handshake for nobody when it gets there. The
// shipped config's `option abortonclose`: haproxy closes the node's side as
// soon as the client leaves, and the node, reading a request whose socket has
// ended, drops it before the token check. The node is stopped (SIGSTOP) for
// the moment the client waits and gives up.
t.test('haproxy closes the node\'s side of an upgrade whose client gave up before the node answered', async (t) => {
  const redis = await startRedis()
  const node = await startNode({ REDIS_URL: redis.url, TRUSTED_PROXIES: '127.0.0.1' })
  const lbDir = mkdtempSync(join(tmpdir(), 'herald-lb-abort-'))
  let lb: Haproxy | undefined
  t.teardown(async () => {
    try { node.proc.kill('SIGCONT') } catch {}
    await lb?.stop()
    await node.stop()
    await redis.stop()
    rmSync(lbDir, { recursive: true, force: true })
  })
  // One node in rotation; the config's other two servers point nowhere and stay out.
  lb = await startHaproxy({ dir: lbDir, servers: { 'herald-1': node.port, 'herald-2': await freePort(), 'herald-3': await freePort() }, disabled: ['herald-2', 'herald-3'] })
  const disconnects = async (): Promise<number> => {
    const text = (await node.api('/metrics')).body as string
    return [...text.matchAll(/^herald_disconnects_total\{[^}]*endpoint="events"[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0)
  }
  const before = await disconnects()

  node.proc.kill('SIGSTOP')
  const gaveUp = token({ sub: 'gave-up', sid: 'gave-up-s', roles: ['user'] })
  const sock = net.connect(lb.port, '127.0.0.1')
  await new Promise((resolve) => sock.once('connect', resolve))
  sock.write(`GET /ws/events?token=${gaveUp} HTTP/1.1\r\nHost: herald\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`)
  await new Promise((resolve) => setTimeout(resolve, 300))
  sock.destroy()
  // haproxy logs a request when it ends: at once, with the node still stopped, and without an answer from it.
  const line = await waitFor('the abandoned upgrade in haproxy\'s log', () => lb!.tail(50).split('\n').filter((l) => l.includes(' herald herald/herald-1 ') && l.includes('/ws/events?token=')), (ls) => ls.length > 0, { timeoutMs: 2000, intervalMs: 50 })
    .finally(() => node.proc.kill('SIGCONT'))
  const m = / herald herald\/herald-1 \S+ (-?\d+) \S+ - - (\S{4}) /.exec(line[0]!)
  t.ok(m !== null, `a log line haproxy wrote: ${line[0]!.slice(0, 160)}`)
  t.not(m![1], '101', `the node never answered it (status ${m![1]})`)
  t.equal(m![2]![0], 'C', `the client ended it (termination state ${m![2]})`)

  // Resumed, the node drops the request unread: no connection opened (and so none closed), and it serves the next client.
  const next = await connect(`${lb.ws}/ws/events`, { token: token({ sub: 'next', sid: 'next-s', roles: ['user'] }) })
  t.equal((await next.nextOfType('welcome')).payload.userId, 'next', 'the resumed node welcomes a new client through haproxy')
  await next.close()
  await waitFor('the new client\'s close counted', disconnects, (n) => n === before + 1, { timeoutMs: 5000 })
  t.equal(await disconnects(), before + 1, 'the one connection the node opened and closed is the new client\'s: the abandoned upgrade was never opened')
})
