// Every program under examples/ run as its header says (`node examples/…`,
// the packages as built by `npm run build`) against live node processes:
// what it prints is what a user sees, and the events it publishes reach a
// real subscriber. examples/webhook-receiver.js: test/webhooks/example.test.ts.
import { spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { connect } from '../helpers/client.js'
import { startNode, type NodeProc } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, TEST_API_KEY, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'
import { reaped } from '../helpers/children.js'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))

interface Example { proc: ChildProcess, lines: string[], waitLine: (re: RegExp, timeoutMs?: number) => Promise<string>, exit: Promise<number | null> }

/** `node examples/<file>` from the checkout with exactly `env` (and PATH); killed at teardown. */
function runExample (t: Test, file: string, env: Record<string, string>, args: string[] = []): Example {
  const proc = reaped(spawn(process.execPath, [`examples/${file}`, ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] }))
  const lines: string[] = []
  const read = (d: Buffer): void => { lines.push(...d.toString().split('\n').filter(Boolean)) }
  proc.stdout!.on('data', read)
  proc.stderr!.on('data', read)
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)))
  t.teardown(() => { if (proc.exitCode === null) proc.kill('SIGKILL') })
  const waitLine = async (re: RegExp, timeoutMs = 10_000): Promise<string> =>
    (await waitFor(`a line matching ${re} from ${file} (so far: ${lines.slice(-5).join(' | ')})`, () => lines.find((l) => re.test(l)), Boolean, { timeoutMs }))!
  return { proc, lines, waitLine, exit }
}

/** The example's exit code, once it exited by itself within timeoutMs. */
async function exited (ex: Example, timeoutMs = 10_000): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined
  const late = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`the example did not exit within ${timeoutMs} ms: ${ex.lines.slice(-5).join(' | ')}`)), timeoutMs) })
  try { return await Promise.race([ex.exit, late]) } finally { clearTimeout(timer) }
}

async function node (t: Test, env: Record<string, string> = {}): Promise<NodeProc> {
  const n = await startNode(env)
  t.teardown(() => n.stop())
  return n
}

t.test('examples/client.js: the SDK connects, subscribes, prints events and notifications, stops on Ctrl-C', { timeout: 60_000 }, async (t) => {
  const n = await node(t)
  const ex = runExample(t, 'client.js', { HERALD_URL: n.http, HERALD_TOKEN: userToken('ex-client') })
  await ex.waitLine(/^rtt \d+ ms$/)
  t.ok(ex.lines.includes('state connected'), 'state changes printed')
  const ev = await n.api('/api/events', { body: { type: 'security.high_risk.detected', userId: 'ex-client', data: { riskScore: 85 } } })
  t.equal(ev.status, 202)
  t.equal(await ex.waitLine(/^event security/), 'event security.high_risk.detected {"riskScore":85}', 'the pattern subscribed after connecting delivers')
  await n.api('/api/notifications/broadcast', { body: { level: 'info', title: 'Hello', message: 'all' } })
  await ex.waitLine(/^notification info Hello$/)
  ex.proc.kill('SIGINT')
  t.equal(await exited(ex), 0, 'Ctrl-C closes the client and the process ends')
  t.ok(ex.lines.includes('state closed'))
})

t.test('examples/client.js without a token says which variable to set', { timeout: 30_000 }, async (t) => {
  const ex = runExample(t, 'client.js', {})
  t.not(await exited(ex), 0)
  t.ok(ex.lines.some((l) => l.includes('set HERALD_TOKEN')), 'the error names HERALD_TOKEN')
})

t.test('examples/socketio-client.js: Socket.IO on Node subscribes on welcome and prints events', { timeout: 60_000 }, async (t) => {
  const n = await node(t)
  const ex = runExample(t, 'socketio-client.js', { HERALD_URL: n.http, HERALD_TOKEN: userToken('ex-sio') })
  await ex.waitLine(/^connected as ex-sio on /)
  await ex.waitLine(/^subscribed authentication\.\* system\.\*$/)
  await n.api('/api/events', { body: { type: 'authentication.login.success', userId: 'ex-sio', data: { ip: '192.0.2.1' } } })
  t.equal(await ex.waitLine(/^event /), 'event authentication.login.success {"ip":"192.0.2.1"}')
  await n.api('/api/notifications/users/ex-sio', { body: { level: 'warning', title: 'Unusual login', message: 'new device' } })
  await ex.waitLine(/^notification warning Unusual login new device$/)
  ex.proc.kill('SIGINT')
  t.equal(await exited(ex), 0, 'Ctrl-C disconnects and the process ends')
})

t.test('examples/publisher.js: over HTTP, every publish reaches the user, and the process exits', { timeout: 60_000 }, async (t) => {
  const n = await node(t)
  const user = await connect(`${n.ws}/ws/events`, { token: userToken('demo-user', 'demo-session') })
  t.teardown(() => user.close())
  user.send(JSON.stringify({ type: 'subscribe', id: 's', payload: { eventTypes: ['*'] } }))
  await user.next((f) => f.id === 's')
  const ex = runExample(t, 'publisher.js', { HERALD_URL: n.http, HERALD_API_KEY: TEST_API_KEY })
  t.equal(await exited(ex), 0, `close() lets it exit: ${ex.lines.join(' | ')}`)
  const id = /^published (\S+)$/.exec(ex.lines[0] ?? '')?.[1]
  t.ok(id, 'the id printed')
  await user.next((f) => f.type === 'event' && f.payload.id === id)
  for (const type of ['security.high_risk.detected', 'system.maintenance.scheduled', 'session.created']) await user.next((f) => f.type === 'event' && f.payload.type === type)
  await user.next((f) => f.type === 'notification' && f.payload.title === 'Unusual login')
  await user.next((f) => f.type === 'notification' && f.payload.title === 'Maintenance')
  const receipt = JSON.parse(ex.lines.find((l) => l.startsWith('receipt '))!.slice('receipt '.length))
  t.match(receipt, { stream: 'user:demo-user', offset: Number, epoch: String }, 'the receipt names the stream and position')
})

t.test('examples/publisher-redis.js: straight onto Redis, delivered by the nodes, and the process exits', { timeout: 90_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const n = await node(t, { REDIS_URL: redis.url })
  const user = await connect(`${n.ws}/ws/events`, { token: userToken('demo-user', 'demo-session') })
  t.teardown(() => user.close())
  user.send(JSON.stringify({ type: 'subscribe', id: 's', payload: { eventTypes: ['authentication.*'] } }))
  await user.next((f) => f.id === 's')
  const ex = runExample(t, 'publisher-redis.js', { REDIS_URL: redis.url })
  t.equal(await exited(ex, 20_000), 0, `it exits once published (close() and quit()): ${ex.lines.join(' | ')}`)
  const receipt = JSON.parse(ex.lines.find((l) => l.startsWith('published '))!.slice('published '.length))
  const ev = await user.next((f) => f.type === 'event' && f.payload.id === receipt.id)
  t.match(ev.payload, { type: 'authentication.login.success', data: { ip: '192.0.2.10' }, stream: 'user:demo-user', offset: receipt.offset })
  const bid = /^broadcast (\S+)$/.exec(ex.lines.find((l) => l.startsWith('broadcast ')) ?? '')?.[1]
  await user.next((f) => f.type === 'notification' && f.payload.id === bid)
})

t.test('examples/admin.js: nodes, a user\'s connections, then a live tail', { timeout: 60_000 }, async (t) => {
  const n = await node(t)
  const user = await connect(`${n.ws}/ws/events`, { token: userToken('demo-user') })
  t.teardown(() => user.close())
  const ex = runExample(t, 'admin.js', { HERALD_URL: n.http, HERALD_ADMIN_TOKEN: adminToken() }, ['demo-user'])
  t.match(await ex.waitLine(/^node /), new RegExp(`^node ${n.serverId} ready \\d+ connections$`))
  t.match(await ex.waitLine(/^demo-user: /), /^demo-user: 1 connection\(s\) \S+@/)
  await ex.waitLine(/^tailing$/)
  await n.api('/api/events', { body: { type: 'authentication.logout', userId: 'demo-user' } })
  t.equal(await ex.waitLine(/^tail /), 'tail authentication.logout demo-user {}')
  ex.proc.kill('SIGINT')
  t.equal(await exited(ex), 0)
})
