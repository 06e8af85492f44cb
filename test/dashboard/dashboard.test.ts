// The admin dashboard in a real browser: headless Chromium (playwright-core,
// /usr/bin/chromium) opens GET /admin on one of three node processes sharing
// a private Redis, signs in with the keyboard, and watches the cluster:
// three nodes, a connection opened by the test in its node's count, a
// published event in the live tail and a filter that hides another, a user's
// connections on two nodes in the inspector and the user revoked (the real
// clients close 4004), a killed node shown unreachable. Every request the
// page makes goes to the node that served it; no console error. Screenshots
// of the main views, light and dark, go to test-output/dashboard/.
import { existsSync, mkdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { connect, type TestClient } from '../helpers/client.js'
import { startCluster } from '../helpers/cluster.js'
import type { NodeProc } from '../helpers/node.js'
import { startReceiver } from '../helpers/receiver.js'
import { adminToken, userToken } from '../helpers/tokens.js'

const CHROMIUM = '/usr/bin/chromium'
const SHOTS = fileURLToPath(new URL('../../test-output/dashboard/', import.meta.url))
// As the SDK's browser test launches it: no background networking (this machine's network is closed).
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']

t.test('the dashboard in Chromium against a three-node cluster', { timeout: 240_000 }, async (t) => {
  if (!existsSync(CHROMIUM)) {
    t.fail(`${CHROMIUM} is missing: install Debian's chromium (apt-get install -y chromium; .ci/run does this) to run the browser tests`)
    return
  }
  const { chromium } = await import('playwright-core')
  mkdirSync(SHOTS, { recursive: true })

  // The page's own origin is not in ALLOWED_ORIGINS: /ws/admin must take it as the node's own.
  const cl = await startCluster(t, { ALLOWED_ORIGINS: 'https://app.example.com', NODE_TTL: '6000', ADMIN_METRICS_INTERVAL: '300', WEBHOOK_ALLOW_PRIVATE: '127.0.0.1', WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_RETRY_BASE: '60000' }, 3)
  const [A, B, C] = cl.nodes as [NodeProc, NodeProc, NodeProc]
  const clients: TestClient[] = []
  t.teardown(() => Promise.all(clients.map(async (c) => await c.close())))
  const open = async (node: NodeProc, userId: string, sid = `${userId}-s`): Promise<TestClient> => {
    const c = await connect(`${node.ws}/ws/events`, { token: userToken(userId, sid) })
    clients.push(c)
    return c
  }
  const publish = async (node: NodeProc, type: string, userId?: string, data: Record<string, unknown> = {}): Promise<string> => {
    const r = await node.api('/api/events', { body: { type, ...(userId !== undefined ? { userId } : {}), data } })
    if (r.status !== 202) throw new Error(`publish ${type}: ${r.status} ${JSON.stringify(r.body)}`)
    return r.body.id as string
  }

  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: FLAGS })
  t.teardown(() => browser.close())
  const context = await browser.newContext({ viewport: { width: 1440, height: 900 }, colorScheme: 'light' })
  const page = await context.newPage()
  const requests: string[] = []
  const sockets: string[] = []
  const consoleErrors: string[] = []
  page.on('request', (r) => requests.push(r.url()))
  page.on('websocket', (ws) => sockets.push(ws.url()))
  page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') consoleErrors.push(`${m.type()}: ${m.text()}`) })
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`))
  const shot = async (name: string): Promise<void> => { await page.screenshot({ path: `${SHOTS}${name}.png`, fullPage: true }) }
  const text = async (sel: string): Promise<string> => (await page.textContent(sel)) ?? ''
  const cell = async (node: NodeProc, field: string): Promise<string> => await text(`#nodes tr[data-node="${node.serverId}"] td[data-field="${field}"]`)

  const res = await page.goto(`${A.http}/admin`)
  t.equal(res?.status(), 200)
  t.match(res?.headers()['content-security-policy'], /script-src 'self';/)

  // --- sign in, with the keyboard only
  const focusOrder: string[] = []
  for (let i = 0; i < 4; i++) {
    await page.keyboard.press('Tab')
    focusOrder.push(await page.evaluate(() => (globalThis as any).document.activeElement?.id ?? ''))
  }
  t.same(focusOrder, ['skip', 'theme', 'token', 'sign-in-button'], 'focus order: skip link, theme, the token field, the sign-in button')
  t.equal(await page.evaluate(() => { const d = (globalThis as any).document; return (globalThis as any).getComputedStyle(d.activeElement).outlineStyle }), 'solid', 'keyboard focus is visible')
  t.equal(await page.evaluate(() => (globalThis as any).document.querySelector('label[for="token"]') !== null), true, 'the token field has its label')

  await page.focus('#token')
  await page.keyboard.insertText(userToken('not-an-admin'))
  await page.keyboard.press('Enter')
  await page.waitForFunction(() => /ROLE_FORBIDDEN/.test((globalThis as any).document.getElementById('sign-in-error').textContent), undefined, { timeout: 10_000 })
  t.match(await text('#sign-in-error'), /Refused: ROLE_FORBIDDEN: the token lacks the role/, 'a refused token shows the node\'s reason')
  t.equal(await page.evaluate(() => (globalThis as any).sessionStorage.length), 0, 'a refused token is not kept')

  const admin = adminToken('dashboard-ops')
  await page.fill('#token', admin)
  await page.keyboard.press('Enter')
  await page.waitForSelector('#nodes tbody tr[data-state="ready"]:nth-child(3)', { timeout: 15_000 })
  const rows = await page.$$eval('#nodes tbody tr[data-node]', (trs) => trs.map((tr) => [(tr as any).dataset.node, (tr as any).dataset.state]))
  t.same(rows.map(([id]) => id).sort(), [A.serverId, B.serverId, C.serverId].sort(), 'three nodes')
  t.ok(rows.every(([, s]) => s === 'ready'), 'each ready')
  t.match(await text('#link'), `Connected to ${A.serverId}`, 'on /ws/admin of the node that served the page')
  const stored = await page.evaluate(() => ({ session: { ...(globalThis as any).sessionStorage }, local: { ...(globalThis as any).localStorage }, cookie: (globalThis as any).document.cookie }))
  t.same(stored.session, { 'herald.admin.token': admin }, 'the token is in session storage')
  t.notOk(JSON.stringify(stored.local).includes(admin), 'never in local storage')
  t.equal(stored.cookie, '', 'never in a cookie')
  t.same(await context.cookies(), [], 'the browser holds no cookie at all')

  // --- a connection opened by the test shows in its node's count
  const before = Number(await cell(B, 'connections'))
  await open(B, 'count-user-1')
  await open(B, 'count-user-2')
  await page.waitForFunction(([id, n]) => (globalThis as any).document.querySelector(`#nodes tr[data-node="${id}"] td[data-field="connections"]`)?.textContent === String(n), [B.serverId, before + 2] as const, { timeout: 10_000 })
  t.equal(Number(await cell(B, 'connections')), before + 2, `B's count went from ${before} to ${before + 2}`)
  t.equal(Number(await cell(B, 'ws')), before + 2, 'both WebSocket connections')

  // Traffic for the charts and leaderboards: a user on every node, events through every node.
  for (const n of [A, B, C]) await (await open(n, 'busy-user', `busy-${n.port}`)).subscribe(['*'])
  for (let i = 0; i < 30; i++) await publish([A, B, C][i % 3]!, i % 3 === 0 ? 'orders.created' : 'users.login.success', 'busy-user', { i })
  // Group members: two on A, one on C (a token's claim), another one on B through the API.
  for (const [n, u] of [[A, 'room-a1'], [A, 'room-a2'], [C, 'room-c1']] as const) clients.push(await connect(`${n.ws}/ws/events`, { token: userToken(u, undefined, { groups: ['dash-room'] }) }))
  await open(B, 'room-b1')
  t.equal((await B.api('/api/groups/dash-room/members/room-b1', { method: 'PUT' })).status, 200)

  // --- the live tail: a published event shows, the filter hides another
  await page.click('#tab-tail')
  await page.fill('#tail-pattern', 'orders.*')
  await page.click('#tail-start')
  await page.waitForFunction(() => /Tailing orders\.\*/.test((globalThis as any).document.getElementById('tail-status').textContent), undefined, { timeout: 10_000 })
  const hidden = await publish(C, 'billing.charged', 'tail-u1', { amount: 12 })
  const shown = await publish(C, 'orders.created', 'tail-u1', { total: 99 })
  await page.waitForSelector(`#tail-events tr[data-id="${shown}"]`, { timeout: 10_000 })
  t.match(await text(`#tail-events tr[data-id="${shown}"]`), /orders\.created.*tail-u1.*"total":99/, 'the matching event, with its user and data')
  t.equal(await page.$(`#tail-events tr[data-id="${hidden}"]`), null, 'billing.charged does not match orders.*: not shown')
  // Narrowed to one user.
  await page.fill('#tail-user', 'tail-u2')
  await page.click('#tail-start')
  await page.waitForFunction(() => /of user tail-u2/.test((globalThis as any).document.getElementById('tail-status').textContent), undefined, { timeout: 10_000 })
  const otherUser = await publish(B, 'orders.created', 'tail-u1')
  const thisUser = await publish(B, 'orders.shipped', 'tail-u2')
  await page.waitForSelector(`#tail-events tr[data-id="${thisUser}"]`, { timeout: 10_000 })
  t.equal(await page.$(`#tail-events tr[data-id="${otherUser}"]`), null, 'another user\'s event is filtered out')
  // A burst far over the cap: the page shows what the node sent and says how many it left out.
  for (let i = 0; i < 200; i += 50) await Promise.all(Array.from({ length: 50 }, async (_v, j) => await publish(j % 2 === 0 ? B : C, 'orders.burst', 'tail-u2', { n: i + j })))
  await page.waitForSelector('#tail-events tr.dropped', { timeout: 10_000 })
  t.match(await text('#tail-events tr.dropped'), /^\d+ more matching events? here, over the node's cap of 50 a second: not shown$/, 'a "left out" marker')
  await page.waitForFunction(() => { const m = /Shown (\d+) · left out by the cap (\d+)/.exec((globalThis as any).document.getElementById('tail-counts').textContent); return m !== null && Number(m[1]) + Number(m[2]) >= 202 }, undefined, { timeout: 10_000 })
  const [, shownN, droppedN] = /Shown (\d+) · left out by the cap (\d+)/.exec(await text('#tail-counts'))!
  t.equal(Number(shownN) + Number(droppedN), 202, `every matching event shown (${shownN}) or counted as left out (${droppedN})`)
  t.ok(Number(droppedN) > 0)
  await shot('tail-light')

  // --- the inspector: one user's connections on two nodes, revoked after a confirmation
  const onB = await open(B, 'insp-user', 'insp-s1')
  const onC = await open(C, 'insp-user', 'insp-s2')
  await page.click('#tab-inspector')
  await page.fill('#inspect-user', 'insp-user')
  await page.keyboard.press('Enter')
  await page.waitForSelector('#inspect-connections tr[data-connection]:nth-child(2)', { timeout: 10_000 })
  const listed = await page.$$eval('#inspect-connections tr[data-connection]', (trs) => trs.map((tr) => (tr as any).dataset.node))
  t.same(listed.sort(), [B.serverId, C.serverId].sort(), 'one connection on each of two nodes')
  t.match(await text('#inspect-title'), 'insp-user: 2 connections on 2 nodes')
  await shot('inspector-light')

  await page.click('#inspect-revoke-user')
  await page.waitForSelector('#confirm[open]')
  t.equal(await page.evaluate(() => (globalThis as any).document.activeElement?.id), 'confirm-cancel', 'the dialog focuses Cancel')
  t.match(await text('#confirm-title'), 'Revoke user insp-user?')
  await shot('inspector-confirm-light')
  await page.keyboard.press('Escape')
  await page.waitForSelector('#confirm', { state: 'hidden' })
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(onB.closeInfo, null, 'Escape cancels: nothing revoked')
  await page.click('#inspect-revoke-user')
  await page.click('#confirm-ok')
  const [closedB, closedC] = await Promise.all([onB.closed, onC.closed])
  t.equal(closedB.code, 4004, 'the real client on B closed 4004')
  t.equal(closedC.code, 4004, 'the real client on C closed 4004')
  await page.waitForFunction(() => /Revoked user insp-user/.test((globalThis as any).document.getElementById('inspect-status').textContent), undefined, { timeout: 10_000 })
  await shot('inspector-revoked-light')

  // --- the overview with traffic, light and dark; the leaderboards (nodes add their counts every 5 s)
  await page.click('#tab-overview')
  await page.waitForFunction(() => /orders\.created/.test((globalThis as any).document.getElementById('top-types').textContent), undefined, { timeout: 20_000 })
  // busy-user opened one connection on each node: 3, once every node has added its counts.
  await page.waitForFunction(() => /busy-user3/.test((globalThis as any).document.getElementById('top-users').textContent.replace(/\s/g, '')), undefined, { timeout: 20_000 })
  await page.waitForFunction(() => /4004/.test((globalThis as any).document.getElementById('tally-disconnects').textContent), undefined, { timeout: 10_000 })
  t.match(await text('#tally-auth'), /ROLE_FORBIDDEN/, 'the refused sign-in is among the auth failures')
  await page.waitForFunction(() => /dash-room\s*4 on 3 nodes/.test((globalThis as any).document.querySelector('#groups li[data-group="dash-room"]')?.textContent ?? ''), undefined, { timeout: 20_000 })
  t.pass('the groups panel: 4 member connections on 3 nodes, one of them made a member through the API while connected')
  t.notMatch(await text('#c-lat'), /^–$/, 'delivery latency shown')
  await shot('overview-light')
  const light = await page.evaluate(() => (globalThis as any).getComputedStyle((globalThis as any).document.body).backgroundColor)
  await page.emulateMedia({ colorScheme: 'dark' })
  const dark = await page.evaluate(() => (globalThis as any).getComputedStyle((globalThis as any).document.body).backgroundColor)
  t.not(dark, light, `prefers-color-scheme: dark gives a dark page (${light} -> ${dark})`)
  await shot('overview-dark')
  await page.click('#tab-tail')
  await shot('tail-dark')
  await page.click('#tab-overview')
  // The toggle overrides the system's choice: auto -> light -> dark.
  await page.click('#theme')
  t.equal(await page.evaluate(() => (globalThis as any).document.documentElement.dataset.theme), 'light')
  t.equal(await page.evaluate(() => (globalThis as any).getComputedStyle((globalThis as any).document.body).backgroundColor), light, 'pinned light under a dark system')
  await page.click('#theme')
  t.equal(await page.evaluate(() => (globalThis as any).getComputedStyle((globalThis as any).document.body).backgroundColor), dark, 'then dark')
  await page.click('#theme')

  // --- webhooks: a healthy endpoint and a failing one, their queues and latest attempts
  const good = await startReceiver(t)
  const bad = await startReceiver(t)
  bad.answer = () => ({ status: 503 })
  const hooks: Record<string, string> = {}
  for (const [name, r] of [['good', good], ['failing', bad]] as const) {
    const made = await A.api('/api/webhooks', { body: { url: r.url, eventTypes: ['orders.*'], description: `the ${name} receiver` } })
    if (made.status !== 201) throw new Error(`create ${name}: ${made.status} ${JSON.stringify(made.body)}`)
    hooks[name] = made.body.id as string
  }
  await page.click('#tab-webhooks')
  await page.waitForSelector(`#webhooks-list tr[data-webhook="${hooks.failing!}"]`, { timeout: 10_000 })
  // Through the node the endpoints were made on: it knows them at once (the others within a second).
  const hooked = await publish(A, 'orders.created', 'hook-user', { total: 5 })
  await Promise.all([good.count(1, (x) => x.body.includes(hooked)), bad.count(1, (x) => x.body.includes(hooked))])
  // The failing endpoint keeps the event queued for its retry (a minute away here); the view reads again every 5 s, or at once on Refresh.
  await page.click('#webhooks-refresh')
  await page.waitForFunction((id) => /server_error 503/.test((globalThis as any).document.querySelector(`#webhooks-list tr[data-webhook="${id}"] td[data-field="last"]`)?.textContent ?? ''), hooks.failing!, { timeout: 15_000 })
  const row = async (name: string, field: string): Promise<string> => await text(`#webhooks-list tr[data-webhook="${hooks[name]!}"] td[data-field="${field}"]`)
  t.equal(await row('failing', 'depth'), '1', 'the failed delivery is queued for its retry')
  t.equal(await row('failing', 'failed'), '1 of 1', 'one attempt, failed')
  t.equal(await row('good', 'depth'), '0', 'the healthy endpoint has nothing pending')
  t.match(await row('good', 'last'), /^success 200 at /, 'its latest attempt succeeded')
  t.equal(await row('good', 'state'), 'enabled')
  t.match(await text('#webhooks-status'), /^2 endpoints · 1 delivery queued · 0 breakers open/, 'the summary line')
  t.equal(await page.isVisible('#webhooks-persistence'), true, 'a backend without AOF is pointed out')
  await shot('webhooks-dark')
  await page.click('#tab-overview')

  // --- a killed node shows unreachable
  await C.stop('SIGKILL')
  await page.waitForSelector(`#nodes tr[data-node="${C.serverId}"][data-state="unreachable"]`, { timeout: 15_000 })
  t.match(await text(`#nodes tr[data-node="${C.serverId}"] td[data-field="state"]`), 'unreachable')
  t.equal(await page.$$eval('#nodes tr[data-state="ready"]', (trs) => trs.length), 2, 'the other two still ready')
  await shot('overview-unreachable-dark')
  // Reclaimed by a live node, it leaves the list.
  await page.waitForFunction((id) => (globalThis as any).document.querySelector(`#nodes tr[data-node="${id}"]`) === null, C.serverId, { timeout: 20_000 })
  t.pass('once reclaimed, it is gone')

  // --- sign out forgets the token
  await page.click('#sign-out')
  t.equal(await page.evaluate(() => (globalThis as any).sessionStorage.length), 0, 'signed out: nothing kept')
  t.equal(await page.isVisible('#sign-in'), true)

  // --- everything the page did, it did with its own node
  const origin = new URL(A.http).origin
  const foreign = requests.filter((u) => new URL(u).origin !== origin)
  t.same(foreign, [], `${requests.length} requests, all to ${origin}`)
  t.ok(requests.some((u) => u.endsWith('/admin/verify')), 'the sign-in check among them')
  t.ok(sockets.length >= 1 && sockets.every((u) => u.startsWith(`ws://${new URL(A.http).host}/ws/admin?token=`)), `its WebSocket: /ws/admin of the same node (${sockets.length})`)
  t.same(consoleErrors, [], 'no console error or warning, no uncaught exception')
})
