// The shipped deploy/haproxy.cfg, run for real by Debian's haproxy in front of
// three real Herald nodes on one private Redis, configured with the
// environment of docker-compose.yml. The config is rewritten for loopback only:
// server addresses become 127.0.0.1:<node port> and the two binds free loopback
// ports; every other line is the shipped one. Clients connect through haproxy;
// a SIGKILLed node is marked DOWN by the /ws/health check and its clients
// reconnect through haproxy to the others; a SIGTERM-drained node turns its
// readiness 503, is taken out of rotation while its connections are still open,
// and its clients, closed with 1001, reconnect to the remaining node.
// deploy/nginx.conf, rewritten the same way, passes `nginx -t`.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { connect, type TestClient } from '../helpers/client.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { freePort } from '../helpers/ports.js'
import { startRedis } from '../helpers/redis.js'
import { token } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'
import { ROOT, binary, composeFile, forceExitMarginMs, heraldServices, read, serviceEnv } from './lib.js'

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

const dir = mkdtempSync(join(tmpdir(), 'herald-lb-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

/**
 * The shipped config with only loopback addresses and ports changed. Returns
 * the text and how many lines changed; throws if a server or bind it expects
 * is missing, so the shipped file cannot drift from this test unnoticed.
 */
function rewriteHaproxy (cfg: string, servers: Record<string, number>, frontend: number, stats: number): { text: string, changed: number } {
  let changed = 0
  const text = cfg.split('\n').map((line) => {
    let m = /^(\s*server\s+(\S+)\s+)(\S+)(.*)$/.exec(line)
    if (m !== null) {
      const port = servers[m[2]!]
      if (port === undefined) throw new Error(`haproxy.cfg: unexpected server ${m[2]}`)
      changed++
      return `${m[1]}127.0.0.1:${port}${m[4]}`
    }
    m = /^(\s*bind\s+):(8080|8404)(\s.*)?$/.exec(line)
    if (m !== null) {
      changed++
      return `${m[1]}127.0.0.1:${m[2] === '8080' ? frontend : stats}${m[3] ?? ''}`
    }
    if (/^\s*bind\s/.test(line)) throw new Error(`haproxy.cfg: unexpected bind ${line.trim()}`)
    return line
  }).join('\n')
  return { text, changed }
}

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

let runs = 0
/** Runs a program to completion, its output in a file (nginx opens /dev/stdout, which a socket pair cannot be). */
async function run (cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, out: string }> {
  const file = join(dir, `run-${++runs}.out`)
  const fd = openSync(file, 'w')
  try {
    const p = spawn(cmd, args, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', fd, fd] })
    const code = await within(20_000, `${cmd} ${args.join(' ')}`, new Promise<number | null>((resolve) => p.once('exit', (c) => resolve(c))))
    return { code, out: readFileSync(file, 'utf8') }
  } finally {
    closeSync(fd)
  }
}

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
  let haproxy: ChildProcess | undefined
  const hlog: string[] = []
  t.teardown(async () => {
    for (const c of clients) await c.close()
    if (haproxy !== undefined && haproxy.exitCode === null && haproxy.signalCode === null) {
      const exited = new Promise((resolve) => haproxy!.once('exit', resolve))
      haproxy.kill('SIGTERM')
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 3000))])
      if (haproxy.exitCode === null && haproxy.signalCode === null) { haproxy.kill('SIGKILL'); await exited }
    }
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

  haproxy = spawn(HAPROXY, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] })
  for (const s of [haproxy.stdout!, haproxy.stderr!]) s.on('data', (b: Buffer) => hlog.push(...b.toString().split('\n').filter((l) => l.length > 0)))
  const tail = (): string => hlog.slice(-15).join('\n')

  /** Server states of backend `herald` from the stats CSV ("UP", "DOWN", "UP 1/2", …). */
  const states = async (): Promise<Record<string, string>> => {
    const res = await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)
    const [header, ...rows] = (await res.text()).trim().split('\n')
    const cols = header!.replace(/^# /, '').split(',')
    const [px, sv, st] = ['pxname', 'svname', 'status'].map((c) => cols.indexOf(c))
    return Object.fromEntries(rows.map((r) => r.split(','))
      .filter((r) => r[px!] === 'herald' && r[sv!] !== 'FRONTEND' && r[sv!] !== 'BACKEND')
      .map((r) => [r[sv!]!, r[st!]!]))
  }
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

  // The README's commands, through the balancer: a token from deploy/token.mjs,
  // a subscription, a publish with the compose API key.
  const minted = await run(process.execPath, [join(ROOT, 'deploy/token.mjs'), 'demo-user'], { JWT_SECRET: SECRET })
  t.equal(minted.code, 0, `deploy/token.mjs: ${minted.code === 0 ? 'token minted' : minted.out}`)
  const demo = await open('demo-user', minted.out.trim())
  await demo.client.subscribe(['authentication.*', 'system.*'])
  t.equal(await publish('/api/events', { type: 'authentication.login.success', userId: 'demo-user', sessionId: 'demo-user-session', data: { ip: '203.0.113.7' } }), 202)
  const ev = await demo.client.nextOfType('event')
  t.equal(ev.payload.type, 'authentication.login.success', 'the demo user receives its event through haproxy')
  t.equal((await fetch(`${lbHttp}/metrics`)).status, 404, '/metrics is not exposed on the balancer')

  // Spread: leastconn hands each node its share.
  let conns: Conn[] = [demo]
  for (let i = 0; i < 11; i++) conns.push(await open(`user-${i}`))
  const spread = Object.fromEntries(NAMES.map((n) => [n, on(conns, n).length]))
  for (const n of NAMES) t.equal(spread[n], 4, `${n} holds 4 of 12 connections (${JSON.stringify(spread)})`)
  t.equal(await publish('/api/notifications/broadcast', { level: 'info', title: 't', message: 'all nodes' }), 202)
  for (const c of conns) await c.client.next((f) => f.type === 'notification' && f.payload.message === 'all nodes')
  t.pass('a broadcast through haproxy reaches the clients of every node')

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
  t.comment(`haproxy counters for herald-2 during the drain: ${JSON.stringify(await counters('herald-2'))}`)
  const exit = await within(DRAIN_MS + forceExitMarginMs() + 5000, 'herald-2 exit', node('herald-2').exit)
  t.same(exit, { code: 0, signal: null }, 'the drained node exits 0')
  conns = [...conns.filter((c) => c.client.closeInfo === null), ...results.map((r) => r.conn)]
  t.ok(conns.every((c) => c.serverId === 'herald-3'), 'every client is now on herald-3')
  t.equal(conns.length, 17, 'and none was lost')
  t.equal(await publish('/api/notifications/broadcast', { level: 'info', title: 't', message: 'after drain' }), 202)
  for (const c of conns) await c.client.next((f) => f.type === 'notification' && f.payload.message === 'after drain')
  t.pass('the remaining node serves every client through haproxy')
  const finalStates = await states()
  t.same(finalStates, { 'herald-1': 'DOWN', 'herald-2': 'DOWN', 'herald-3': 'UP' })
})
