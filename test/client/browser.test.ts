// The client SDK in a real browser: src/client/index.ts bundled for the
// browser with esbuild at test time, served with a tiny page from 127.0.0.1,
// and run in headless Chromium (playwright-core, /usr/bin/chromium) with the
// browser's native WebSocket against a node process on a private Redis.
import { existsSync } from 'node:fs'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import t from 'tap'
import { startNode, type NodeProc } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { userToken } from '../helpers/tokens.js'

const CHROMIUM = '/usr/bin/chromium'
const ENTRY = fileURLToPath(new URL('../../src/client/index.ts', import.meta.url))

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>Herald SDK</title></head>
<body><script src="/herald.js"></script>
<script>
  // The page's own glue: one client, everything it emits recorded for the test.
  window.log = { events: [], notifications: [], states: [], welcomes: [], disconnects: [], errors: [] }
  window.start = async (url, token, eventTypes) => {
    const c = new Herald.HeraldClient({ url, getToken: () => token, eventTypes, baseDelayMs: 100, maxDelayMs: 400 })
    window.client = c
    c.on('event', (e) => log.events.push(e))
    c.on('notification', (n) => log.notifications.push(n))
    c.on('state', (s) => log.states.push(s))
    c.on('welcome', (w) => log.welcomes.push(w))
    c.on('disconnect', (d) => log.disconnects.push(d))
    c.on('error', (e) => log.errors.push(String(e && e.message)))
    return await c.connect()
  }
</script></body></html>`

async function serve (bundle: string): Promise<{ server: http.Server, origin: string }> {
  const server = http.createServer((req, res) => {
    if (req.url === '/herald.js') {
      res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8' })
      return res.end(bundle)
    }
    if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
      return res.end(PAGE)
    }
    res.writeHead(404).end()
  })
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(0, '127.0.0.1', () => resolve()) })
  return { server, origin: `http://127.0.0.1:${(server.address() as AddressInfo).port}` }
}

t.test('the SDK in headless Chromium: native WebSocket, subscribe, receive an event published via the API', { timeout: 60_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does this) to run the browser tests`)
    return
  }
  const { chromium } = await import('playwright-core')

  // The browser bundle, built now from the SDK's source: no Node built-ins allowed in it.
  const out = await build({ entryPoints: [ENTRY], bundle: true, format: 'iife', globalName: 'Herald', platform: 'browser', target: 'es2020', write: false, logLevel: 'silent' })
  const bundle = out.outputFiles[0]!.text
  t.ok(bundle.length > 1000, `bundled the SDK for the browser (${bundle.length} bytes)`)

  const page1 = await serve(bundle)
  t.teardown(() => new Promise<void>((resolve) => page1.server.close(() => resolve())))
  const foreign = await serve(bundle)
  t.teardown(() => new Promise<void>((resolve) => foreign.server.close(() => resolve())))

  const redis = await startRedis()
  t.teardown(() => redis.stop())
  // Only the page's own origin may open connections (browser CSWSH check).
  const node: NodeProc = await startNode({ REDIS_URL: redis.url, ALLOWED_ORIGINS: page1.origin })
  t.teardown(() => node.stop())

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  })
  t.teardown(() => browser.close())
  const context = await browser.newContext()
  const page = await context.newPage()
  const pageErrors: string[] = []
  page.on('pageerror', (e) => pageErrors.push(e.message))
  await page.goto(`${page1.origin}/`)
  t.equal(await page.evaluate(() => typeof (globalThis as any).Herald?.HeraldClient), 'function', 'the bundle exposes Herald.HeraldClient')
  t.match(await page.evaluate(() => (globalThis as any).navigator.userAgent), /HeadlessChrome|Chrome/, 'a real Chromium')

  const u = 'browser-user'
  const wsUrl = `${node.ws}/ws/events`
  const welcome = await page.evaluate(async ([url, token]) => await (globalThis as any).start(url, token, ['authentication.*']), [wsUrl, userToken(u, 'browser-sid')] as const)
  t.match(welcome, { serverId: node.serverId, userId: u, sessionId: 'browser-sid' }, 'connected with the browser\'s WebSocket')
  t.same(await page.evaluate(() => (globalThis as any).log.states), ['connecting', 'connected'])
  t.same(await page.evaluate(async () => await (globalThis as any).client.subscribe(['system.*'])), ['authentication.*', 'system.*'], 'subscribe from the page')
  const rtt = await page.evaluate(async () => await (globalThis as any).client.ping())
  t.ok(typeof rtt === 'number' && rtt >= 0, `ping from the page: ${rtt} ms`)

  // Published through the HTTP API; awaited in the page.
  const r = await node.api('/api/events', { body: { type: 'authentication.login.success', userId: u, data: { ip: '198.51.100.4' } } })
  t.equal(r.status, 202)
  await page.waitForFunction((id) => (globalThis as any).log.events.some((e: any) => e.id === id), r.body.id, { timeout: 5000 })
  const ev = await page.evaluate((id) => (globalThis as any).log.events.find((e: any) => e.id === id), r.body.id)
  t.match(ev, { id: r.body.id, type: 'authentication.login.success', userId: u, data: { ip: '198.51.100.4' } }, 'the event arrived in the page')
  const other = await node.api('/api/events', { body: { type: 'authentication.login.success', userId: 'someone-else' } })
  const sys = await node.api('/api/events', { body: { type: 'system.maintenance.scheduled', data: { at: '04:00' } } })
  const note = await node.api('/api/notifications/broadcast', { body: { level: 'info', title: 'hello', message: 'browsers' } })
  await page.waitForFunction((id) => (globalThis as any).log.notifications.some((n: any) => n.id === id), note.body.id, { timeout: 5000 })
  const ids = await page.evaluate(() => (globalThis as any).log.events.map((e: any) => e.id))
  t.same(ids, [r.body.id, sys.body.id], 'its own event and the system event; never another user\'s')
  t.notOk(ids.includes(other.body.id))

  // The same SDK on a page of another origin is refused by the node (and keeps retrying, never connected).
  const page2 = await context.newPage()
  await page2.goto(`${foreign.origin}/`)
  void page2.evaluate(async ([url, token]) => { await (globalThis as any).start(url, token, []).catch(() => {}) }, [wsUrl, userToken('foreign-user')] as const)
  await page2.waitForFunction(() => (globalThis as any).log?.disconnects?.length >= 2, undefined, { timeout: 10_000 })
  const foreignLog = await page2.evaluate(() => (globalThis as any).log)
  t.same(foreignLog.welcomes, [], 'a page of a foreign Origin never got a welcome')
  t.notOk(foreignLog.states.includes('connected'))
  t.ok(foreignLog.disconnects.every((d: any) => d.code === 1006 && d.delayMs !== null), 'the browser saw the refused handshake (1006) and backs off')
  const refusedLine = await node.waitLine((l) => l.includes('ORIGIN_FORBIDDEN'), 5000)
  t.ok(refusedLine, 'the node refused it as ORIGIN_FORBIDDEN')
  await page2.evaluate(() => (globalThis as any).client.close())

  await page.evaluate(() => (globalThis as any).client.close())
  t.equal(await page.evaluate(() => (globalThis as any).client.state), 'closed')
  t.same(pageErrors, [], 'no uncaught errors in the pages')
})
