// deploy/grafana/: the Grafana dashboard and the Prometheus alert rules.
// A real node on a private Redis is driven through what an operator's panels
// show (connections, an event published and delivered, a refused handshake,
// a connection limit, a normal close, a slow consumer closed 4008, webhooks
// delivered to an endpoint seeded from its configuration), then:
// - every PromQL expression of the dashboard, of the rules and of the rules'
//   unit tests is parsed with the Prometheus project's grammar
//   (@prometheus-io/lezer-promql) and must read only metrics, label names and
//   label values found in the node's /metrics;
// - the dashboard type-checks against Grafana's own schema types
//   (@grafana/schema 11.6, excess fields refused) and refers to its data
//   source only through a Prometheus data source variable;
// - promtool (Debian's prometheus package) checks the rules file and runs its
//   unit tests, which say when each alert fires and when it does not;
// - a real Prometheus scrapes the node with the rules loaded: every panel
//   query answers with series (finite values, the legend's labels present),
//   every rule evaluates without error, and a paused Redis and a killed node
//   set off HeraldRedisUnreachable and HeraldNodeDown.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import type net from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { connect, refusal } from '../helpers/client.js'
import { startNode } from '../helpers/node.js'
import { metric, parseMetrics } from '../helpers/ops.js'
import { freePort } from '../helpers/ports.js'
import { startReceiver } from '../helpers/receiver.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, token, userToken } from '../helpers/tokens.js'
import { waitFor, within } from '../helpers/wait.js'
import { ROOT, binary, read, runIn, typeCheckSource, yamlDocs } from './lib.js'
import { exported, grafanaToPromQL, parsePromQL, problems, UP, type Exported } from './promql.js'
import { reaped } from '../helpers/children.js'

const DASHBOARD = 'deploy/grafana/herald-dashboard.json'
const RULES = 'deploy/grafana/herald-alerts.rules.yml'
const RULE_TESTS = 'deploy/grafana/herald-alerts.test.yml'
/** The scrape job the rules and the README's prometheus.yml name. */
const JOB = 'herald'

const dashboard = JSON.parse(read(DASHBOARD)) as any
const rulesDoc = yamlDocs(RULES)[0] as any
const ruleTests = yamlDocs(RULE_TESTS)[0] as any
const alerts: any[] = (rulesDoc.groups as any[]).flatMap((g) => g.rules as any[])
const panels: any[] = (dashboard.panels as any[]).filter((p) => p.type !== 'row')
const variables: any[] = dashboard.templating.list

// --- the node, and what an operator's panels are about ------------------------

const redis = await startRedis()
t.teardown(() => redis.stop())
// The webhook panels and HeraldWebhookBacklog read per-endpoint series: an
// endpoint with a fixed id (the rules' unit tests name it), seeded at boot.
const receiver = await startReceiver(t)
const node = await startNode({
  WEBHOOKS: JSON.stringify([{ id: 'audit-store', url: receiver.url, eventTypes: ['session.*'], secret: 'whsec_' + Buffer.alloc(32, 5).toString('base64') }]),
  WEBHOOK_ALLOW_PRIVATE: '127.0.0.0/8',
  WEBHOOK_ALLOW_HTTP: 'true',
  REDIS_URL: redis.url,
  MAX_CONNECTIONS_PER_USER: '1',
  MAX_SEND_BUFFER_BYTES: '16384',
  HEALTH_PROBE_INTERVAL: '250',
  NODE_TTL: '3000',
})
t.teardown(() => node.stop())
const scrape = async (): Promise<string> => {
  const r = await node.api('/metrics', { key: '' })
  if (r.status !== 200) throw new Error(`/metrics answered ${r.status}`)
  return r.body as string
}

// --- a real Prometheus scraping it every second, the rules loaded --------------

const work = mkdtempSync(join(tmpdir(), 'herald-grafana-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const promPort = await freePort()
const PROM = `http://127.0.0.1:${promPort}`
writeFileSync(join(work, 'prometheus.yml'), [
  'global: { scrape_interval: 1s, evaluation_interval: 1s }',
  `rule_files: [${JSON.stringify(join(ROOT, RULES))}]`,
  'scrape_configs:',
  `  - job_name: ${JOB}`,
  `    static_configs: [{ targets: ["127.0.0.1:${node.port}"] }]`,
].join('\n') + '\n')
const promLog = openSync(join(work, 'prometheus.log'), 'w')
const prometheus: ChildProcess = reaped(spawn(binary('prometheus'), [
  `--config.file=${join(work, 'prometheus.yml')}`, `--storage.tsdb.path=${join(work, 'data')}`,
  `--web.listen-address=127.0.0.1:${promPort}`, '--log.level=warn',
], { stdio: ['ignore', promLog, promLog] }))
const promExit = new Promise<void>((resolve) => prometheus.once('exit', () => resolve()))
t.teardown(async () => {
  if (prometheus.exitCode === null && prometheus.signalCode === null) prometheus.kill('SIGKILL')
  await promExit
  closeSync(promLog)
})
const promOut = (): string => readFileSync(join(work, 'prometheus.log'), 'utf8').split('\n').slice(-10).join('\n')

/** GET on Prometheus's HTTP API; the `data` of a success. */
async function promApi (path: string, params: Record<string, string> = {}): Promise<any> {
  const res = await fetch(`${PROM}${path}?${new URLSearchParams(params).toString()}`)
  const body = await res.json() as { status: string, data?: unknown, error?: string }
  if (body.status !== 'success') throw new Error(`${path} ${JSON.stringify(params)}: ${body.error ?? res.status}`)
  return body.data
}
const query = async (q: string): Promise<Array<{ metric: Record<string, string>, value: [number, string] }>> => {
  const data = await promApi('/api/v1/query', { query: q })
  if (data.resultType !== 'vector') throw new Error(`${q}: a ${data.resultType as string}, not a vector`)
  return data.result
}

await waitFor('Prometheus to be ready', async () => (await fetch(`${PROM}/-/ready`)).status, (s) => s === 200, { timeoutMs: 20_000, intervalMs: 100 })
  .catch((err: Error) => { throw new Error(`${err.message}\n${promOut()}`) })
// One scrape before the traffic, so rates and quantiles over the window have something to compare with.
await waitFor('a first scrape of the node', async () => await query(`up{job="${JOB}"} == 1`), (r) => r.length === 1, { timeoutMs: 20_000, intervalMs: 100 })

// --- the traffic ---------------------------------------------------------------

let afterTraffic: ReturnType<typeof parseMetrics> = []
let exp: Exported = new Map()

t.test('the traffic an operator\'s panels are about', { timeout: 60_000 }, async (t) => {
  const sub = await connect(`${node.ws}/ws/events`, { token: userToken('graf-sub') })
  t.teardown(() => sub.close())
  await sub.subscribe(['*'])
  t.equal((await sub.request('ping')).type, 'pong')
  const admin = await connect(`${node.ws}/ws/admin`, { token: adminToken('graf-admin') })
  t.teardown(() => admin.close())
  for (let i = 0; i < 5; i++) {
    const r = await node.api('/api/events', { body: { type: 'session.graf', userId: 'graf-sub', data: { i } } })
    t.equal(r.status, 202, 'event accepted')
    await sub.next((f) => f.type === 'event' && f.payload.id === r.body.id)
  }
  const n = await node.api('/api/notifications/users/graf-sub', { body: { level: 'info', title: 't', message: 'm' } })
  await sub.next((f) => f.type === 'notification' && f.payload.id === n.body.id)
  t.match(await refusal(`${node.ws}/ws/events`), { status: 401, body: { error: { code: 'TOKEN_MISSING' } } }, 'a handshake without a token')
  t.match(await refusal(`${node.ws}/ws/events?token=${token({ sub: 'graf-late', sid: 's', roles: ['user'], exp: Math.floor(Date.now() / 1000) - 60 })}`),
    { status: 401, body: { error: { code: 'TOKEN_EXPIRED' } } }, 'a handshake with an expired token')
  t.match(await refusal(`${node.ws}/ws/events?token=garbage`), { status: 401, body: { error: { code: 'TOKEN_INVALID' } } }, 'a handshake with a garbage token')
  t.match(await refusal(`${node.ws}/ws/events?token=${userToken('graf-sub')}`), { status: 429, body: { error: { code: 'CONNECTION_LIMIT' } } }, 'a second connection past MAX_CONNECTIONS_PER_USER')
  const bye = await connect(`${node.ws}/ws/events`, { token: userToken('graf-bye') })
  await bye.close()

  // A consumer that stops reading: the kernel buffers fill, the node's send
  // buffer passes MAX_SEND_BUFFER_BYTES and the node closes it 4008, which is
  // counted when the close handshake ends: the client reads again to see it.
  const slow = await connect(`${node.ws}/ws/events`, { token: userToken('graf-slow') })
  await slow.subscribe(['*'])
  const slowSocket = (slow.ws as unknown as { _socket: net.Socket })._socket
  slowSocket.pause()
  t.teardown(() => { slowSocket.destroy() })
  const counts = async (): Promise<number> => {
    const s = parseMetrics(await scrape())
    return metric(s, 'herald_events_delivered_total', { kind: 'event' }) - metric(s, 'herald_messages_out_total', { endpoint: 'events' })
  }
  const unwritten = await counts()
  const blob = 'x'.repeat(32_000)
  let flood = 0
  // 32 MB at most, far beyond any loopback buffering; done once the node stops writing to it.
  while (flood < 1000) {
    const r = await node.api('/api/events', { body: { type: 'session.flood', userId: 'graf-slow', data: { blob } } })
    if (r.status !== 202) throw new Error(`publish answered ${r.status}`)
    if (++flood % 10 === 0 && await counts() - unwritten >= 5) break
  }
  slowSocket.resume()
  t.equal((await within(15_000, 'the slow consumer to see its close', slow.closed)).code, 4008, `the node closed the slow consumer 4008 (${flood} events of 32 KB published)`)
  await waitFor('the 4008 close to be counted', async () => parseMetrics(await scrape()), (s) => metric(s, 'herald_disconnects_total', { code: '4008' }) === 1, { timeoutMs: 10_000 })
  // The session.* events went to the webhook endpoint too; its queue is sampled every few seconds.
  await receiver.count(5)
  await waitFor('the webhook metrics', async () => parseMetrics(await scrape()), (s) => metric(s, 'herald_webhook_attempts_total', { endpoint: 'audit-store', outcome: 'success' }) >= 5 &&
    s.some((x) => x.name === 'herald_webhook_queue_depth' && x.labels.endpoint === 'audit-store'), { timeoutMs: 10_000 })
  afterTraffic = parseMetrics(await scrape())
  exp = exported(afterTraffic)
})

// --- what the dashboard and the rules contain ------------------------------------

interface Query { where: string, expr: string, legend?: string }
const panelQueries: Query[] = panels.flatMap((p) => (p.targets as any[]).map((q) => ({ where: `panel "${p.title as string}" ${q.refId as string}`, expr: q.expr as string, legend: q.legendFormat as string })))
const ruleQueries: Query[] = alerts.map((r) => ({ where: `alert ${r.alert as string}`, expr: r.expr as string }))
const testSeries: Query[] = (ruleTests.tests as any[]).flatMap((c, i) => (c.input_series as any[]).map((s) => ({ where: `${RULE_TESTS} test ${i}`, expr: s.series as string })))
/** label_values(selector, label): Grafana's variable query, not PromQL. */
const variableQueries = variables.filter((v) => v.type === 'query').map((v) => {
  const m = /^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$/.exec(v.query as string)
  if (m === null) throw new Error(`variable ${v.name as string}: not label_values(selector, label): ${v.query as string}`)
  return { where: `variable ${v.name as string}`, expr: m[1]!, label: m[2]! }
})
/** A query as Prometheus is sent it: interval variables as `interval`, every query variable as its "All" value. */
const substituted = (expr: string, interval: string): string => variables.filter((v) => v.type === 'query')
  .reduce((e, v) => e.replaceAll(`\${${v.name as string}}`, v.allValue).replaceAll(`$${v.name as string}`, v.allValue), grafanaToPromQL(expr, interval))

t.test('the PromQL check refuses what a node does not export', async (t) => {
  t.same(problems('sum by (endpoint) (herald_connections{endpoint="events"})', exp), [], 'a query on exported names passes')
  t.match(problems('herald_connection', exp), [/herald_connection is not exported/])
  t.match(problems('herald_connections{endpont="events"}', exp), [/has no label endpont/])
  t.match(problems('herald_disconnects_total{code="4009"}', exp), [/code is never "4009"/], 'a close code the traffic did not produce')
  t.match(problems('sum by (reasons) (rate(herald_auth_failures_total[5m]))', exp), [/grouping label reasons/])
  t.match(problems('rate(herald_events_published_total[5m]', exp), [/syntax error/])
  t.match(problems('{__name__="herald_users"}', exp), [/without a metric name/])
  t.match(problems('up{job="heraldd"} == 0', exp, { values: { job: [JOB] } }), [/job is never "heraldd"/])
  t.match(problems('herald_delivery_latency_seconds{kind="event"}', exp), [/herald_delivery_latency_seconds is not exported/], 'a histogram is read through _bucket, _sum, _count')
  t.match(problems('herald_connections[$__rate_interval]', exp), [/syntax error/], 'Grafana variables are replaced before parsing')
})

t.test('every query of the dashboard, the rules and their tests reads only what the node exports', async (t) => {
  for (const q of panelQueries) t.same(problems(grafanaToPromQL(q.expr), exp), [], `${q.where}: ${q.expr}`)
  for (const q of ruleQueries) t.same(problems(q.expr, exp, { values: { job: [JOB] } }), [], `${q.where}: ${q.expr}`)
  // Synthetic series: job, instance and server_id values are made up; the rest must be real.
  for (const q of testSeries) t.same(problems(q.expr, exp, { anyValue: ['job', 'instance', 'server_id'] }), [], `${q.where}: ${q.expr}`)
  for (const v of variableQueries) {
    t.same(problems(v.expr, exp), [], `${v.where}: ${v.expr}`)
    const metrics = parsePromQL(v.expr).selectors.map((s) => s.metric!)
    t.ok(metrics.every((m) => exp.get(m)?.has(v.label)), `${v.where}: ${metrics.join(', ')} carries ${v.label}`)
  }
  // The panels the dashboard is for, by what they read.
  const read = new Set([...panelQueries].flatMap((q) => parsePromQL(grafanaToPromQL(q.expr)).selectors.map((s) => s.metric)))
  for (const m of ['herald_connections', 'herald_events_published_total', 'herald_events_delivered_total', 'herald_delivery_latency_seconds_bucket',
    'herald_disconnects_total', 'herald_rate_limit_hits_total', 'herald_auth_failures_total', 'herald_redis_up', 'herald_backend_ready',
    'herald_redis_probe_latency_seconds_bucket', 'herald_broker_messages_dropped_total', 'herald_pubsub_missed_messages_total', 'herald_delivery_backlog_messages', 'herald_delivery_lag_seconds',
    'herald_process_resident_memory_bytes', 'herald_nodejs_eventloop_lag_p99_seconds',
    'herald_webhook_queue_depth', 'herald_webhook_oldest_pending_seconds', 'herald_webhook_attempts_total', 'herald_webhook_breaker_state', 'herald_backend_persistent']) {
    t.ok(read.has(m), `a panel reads ${m}`)
  }
  t.ok(exp.get('herald_disconnects_total')?.get('code')?.has('4008'), 'the traffic produced the slow-consumer close the alert matches')
})

// --- the dashboard ------------------------------------------------------------

/** Grafana's schema types with string enums read as their values, as JSON has them. */
const LOOSE = 'type Loose<T> = T extends string ? `${T}` : T extends Array<infer U> ? Array<Loose<U>> : T extends object ? { [K in keyof T]: Loose<T[K]> } : T'

/** Type-checks `decls` (name → [type, value]) in one in-memory program; the compiler's complaints by name. */
function typeCheck (imports: string, decls: Array<[string, string, unknown]>): Map<string, string[]> {
  const lines = [imports, LOOSE, ...decls.map(([name, type, value]) => `export const ${name}: ${type} = ${JSON.stringify(value)}`)]
  const out = new Map<string, string[]>(decls.map(([name]) => [name, []]))
  const header = `${imports}\n${LOOSE}`.split('\n').length
  for (const { line, text } of typeCheckSource('test/deploy/__grafana_dashboard__.ts', lines.join('\n'))) {
    const decl = decls[line - header]
    if (decl === undefined) { for (const o of out.values()) o.push(`(program) ${text}`); continue }
    out.get(decl[0])!.push(text)
  }
  return out
}

t.test('the dashboard is a Grafana 10/11 dashboard on a Prometheus data source variable', async (t) => {
  t.ok(typeof dashboard.title === 'string' && dashboard.title.length > 0, 'a title')
  t.match(dashboard.uid, /^[a-zA-Z0-9_-]{1,40}$/, 'a stable uid (links survive a re-import)')
  // Grafana 10.0 writes 38; later 10.x and 11 write higher ones and migrate an older dashboard upwards on import.
  t.ok(dashboard.schemaVersion >= 36 && dashboard.schemaVersion <= 39, `schemaVersion ${dashboard.schemaVersion as number} imports into Grafana 10 and 11`)
  t.equal(dashboard.id ?? null, null, 'no database id: an import creates the dashboard')

  // Grafana's schema: the dashboard, and each panel's options for its type.
  const PANEL_TYPES: Record<string, string> = {
    timeseries: 'Omit<Loose<Panel<TimeSeriesOptions, TimeSeriesFieldConfig>>, Own> & { type: "timeseries", options: Loose<TimeSeriesOptions>, targets: PromTarget[] }',
    stat: 'Omit<Loose<Panel<StatOptions>>, Own> & { type: "stat", options: Loose<StatOptions>, targets: PromTarget[] }',
    row: 'Loose<RowPanel>',
  }
  const imports = [
    'import type { Dashboard, Panel, RowPanel, DataSourceRef } from \'@grafana/schema\'',
    'import type { Options as TimeSeriesOptions, FieldConfig as TimeSeriesFieldConfig } from \'@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen.js\'',
    'import type { Options as StatOptions } from \'@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen.js\'',
    // Panel types these loosely (any options, any query fields): replaced by the panel's and Prometheus's own.
    'type Own = "type" | "options" | "targets"',
    // The Prometheus query model (Grafana 10/11's public/app/plugins/datasource/prometheus/dataquery).
    'interface PromTarget { refId: string, expr: string, datasource: DataSourceRef, legendFormat?: string, range?: boolean, instant?: boolean, format?: "time_series" | "table" | "heatmap", interval?: string, hide?: boolean, editorMode?: "code" | "builder" }',
  ].join('\n')
  const types = (dashboard.panels as any[]).map((p, i): [string, string, unknown] => {
    const type = PANEL_TYPES[p.type as string]
    t.ok(type !== undefined, `panel ${i} "${p.title as string}": a known panel type (${p.type as string})`)
    return [`panel${i}`, type ?? 'never', p]
  })
  const checked = typeCheck(imports, [['dashboard', 'Loose<Dashboard>', dashboard], ...types])
  for (const [name, complaints] of checked) t.same(complaints, [], `${name} matches Grafana's schema`)

  // The data source is chosen on import, never a uid of someone's Grafana.
  const dsVars = variables.filter((v) => v.type === 'datasource')
  t.equal(dsVars.length, 1, 'one data source variable')
  t.match(dsVars[0], { query: 'prometheus' }, 'of Prometheus data sources')
  const ref = { type: 'prometheus', uid: `\${${dsVars[0]?.name as string}}` }
  const refs: Array<[string, unknown]> = []
  const walk = (v: unknown, path: string): void => {
    if (Array.isArray(v)) { v.forEach((x, i) => walk(x, `${path}[${i}]`)); return }
    if (v === null || typeof v !== 'object') return
    for (const [k, x] of Object.entries(v)) {
      if (k === 'datasource') refs.push([`${path}.${k}`, x])
      else walk(x, `${path}.${k}`)
    }
  }
  walk(dashboard, '')
  t.ok(refs.length > 0)
  for (const [path, r] of refs) t.same(r, ref, `${path} is the variable`)
  t.equal(JSON.stringify(dashboard).match(/"uid"/g)?.length, refs.length + 1, 'no uid anywhere but the dashboard\'s own and the variable references')
  t.equal(dashboard.__inputs, undefined, 'nothing to fill in on import')

  // Panels: every one with a title and queries; ids unique; a 24-column grid without overlap.
  const ids = (dashboard.panels as any[]).map((p) => p.id)
  t.equal(new Set(ids).size, ids.length, 'panel ids are unique')
  const cells = new Map<string, string>()
  for (const p of dashboard.panels as any[]) {
    const g = p.gridPos
    t.ok(g.x >= 0 && g.w > 0 && g.x + g.w <= 24 && g.h > 0 && g.y >= 0, `"${p.title as string}" within the 24 columns`)
    for (let x = g.x; x < g.x + g.w; x++) {
      for (let y = g.y; y < g.y + g.h; y++) {
        const other = cells.get(`${x},${y}`)
        if (other !== undefined) t.fail(`"${p.title as string}" overlaps "${other}"`)
        cells.set(`${x},${y}`, p.title)
      }
    }
    if (p.type === 'row') continue
    t.ok(typeof p.title === 'string' && p.title.length > 0 && typeof p.description === 'string' && p.description.length > 0, `panel ${p.id as number}: a title and a description`)
    t.ok(p.targets.length > 0, `"${p.title as string}" has queries`)
    const refIds = (p.targets as any[]).map((q) => q.refId)
    t.equal(new Set(refIds).size, refIds.length, `"${p.title as string}": refIds unique`)
  }
  // A node filter for every panel query.
  for (const q of panelQueries) t.ok(parsePromQL(grafanaToPromQL(q.expr)).selectors.every((s) => s.matchers.some((m) => m.label === 'server_id' && m.value === '$server_id')), `${q.where} follows the node filter`)
})

// --- the alert rules ----------------------------------------------------------

t.test('the alert rules: Prometheus rule format, promtool checks them and runs their unit tests, a runbook section each', async (t) => {
  t.ok(Array.isArray(rulesDoc.groups) && rulesDoc.groups.length > 0, 'groups')
  const allowed = new Set(['alert', 'expr', 'for', 'labels', 'annotations', 'keep_firing_for'])
  for (const g of rulesDoc.groups as any[]) {
    t.ok(typeof g.name === 'string' && g.name.length > 0, 'a group name')
    t.ok(Array.isArray(g.rules) && g.rules.length > 0, `group ${g.name as string} has rules`)
  }
  const names = alerts.map((r) => r.alert)
  t.equal(new Set(names).size, names.length, 'alert names are unique')
  for (const r of alerts) {
    t.same(Object.keys(r).filter((k) => !allowed.has(k)), [], `${r.alert as string}: only alerting-rule fields`)
    t.match(r.alert, /^Herald[A-Z][A-Za-z]+$/, 'named HeraldSomething')
    t.ok(typeof r.expr === 'string' && r.expr.length > 0, `${r.alert as string}: an expression`)
    if (r.for !== undefined) t.match(r.for, /^(\d+[smh])+$/, `${r.alert as string}: for is a duration`)
    t.ok(['critical', 'warning'].includes(r.labels?.severity), `${r.alert as string}: severity critical or warning`)
    t.ok(typeof r.annotations?.summary === 'string' && typeof r.annotations?.description === 'string', `${r.alert as string}: summary and description`)
    t.equal(r.annotations?.runbook, `docs/operations.md#${(r.alert as string).toLowerCase()}`, `${r.alert as string}: runbook anchor`)
  }
  // What the issue asks to be alerted on.
  for (const a of ['HeraldNodeDown', 'HeraldReadinessFlapping', 'HeraldRedisUnreachable', 'HeraldSlowConsumerCloses', 'HeraldNodeBehindInput', 'HeraldMessagesShed', 'HeraldAuthFailureBurst', 'HeraldWebhookBacklog']) {
    t.ok(names.includes(a), `${a} is defined`)
  }

  // docs/operations.md: a section per alert, under "Alerts and what to do".
  const ops = read('docs/operations.md')
  const section = ops.slice(ops.indexOf('\n## Alerts and what to do\n'))
  t.ok(ops.includes('\n## Alerts and what to do\n'), 'docs/operations.md has "Alerts and what to do"')
  for (const a of names) t.match(section, new RegExp(`^### ${a as string}$`, 'm'), `a section for ${a as string}`)

  const promtool = binary('promtool', 'prometheus')
  const check = await runIn(work, promtool, ['check', 'rules', join(ROOT, RULES)])
  t.equal(check.code, 0, `promtool check rules:\n${check.out}`)
  t.match(check.out, new RegExp(`SUCCESS: ${alerts.length} rules found`))
  const unit = await runIn(work, promtool, ['test', 'rules', join(ROOT, RULE_TESTS)])
  t.equal(unit.code, 0, `promtool test rules:\n${unit.out}`)
  // Each alert is shown firing by some unit test, and not firing by one too.
  const cases = (ruleTests.tests as any[]).flatMap((c) => c.alert_rule_test as any[])
  for (const a of names) {
    t.ok(cases.some((c) => c.alertname === a && c.exp_alerts.length > 0), `a unit test where ${a as string} fires`)
    t.ok(cases.some((c) => c.alertname === a && c.exp_alerts.length === 0), `a unit test where ${a as string} does not`)
  }
  // The dashboard's queries parse with Prometheus's own parser too: as recording rules.
  const asRules = join(work, 'dashboard-queries.yml')
  writeFileSync(asRules, JSON.stringify({ groups: [{ name: 'dashboard', rules: panelQueries.map((q, i) => ({ record: `dashboard:query_${i}`, expr: substituted(q.expr, '1m') })) }] }))
  const dq = await runIn(work, promtool, ['check', 'rules', asRules])
  t.equal(dq.code, 0, `promtool parses every panel query:\n${dq.out}`)
})

t.test('a real Prometheus scraping the node: every panel query answers, every rule evaluates; a paused Redis and a dead node set off their alerts', { timeout: 90_000 }, async (t) => {
  // Two scrapes since the last of the traffic: a rate needs two samples of a series.
  await waitFor('two scrapes since the 4008 close', async () => await query('count_over_time(herald_disconnects_total{code="4008"}[5m])'),
    (r) => r.length === 1 && Number(r[0]!.value[1]) >= 2, { timeoutMs: 10_000, intervalMs: 200 })
  // Deliveries between two scrapes of the latency histogram, so its quantiles are numbers.
  const late = await connect(`${node.ws}/ws/events`, { token: userToken('graf-late') })
  t.teardown(() => late.close())
  await late.subscribe(['*'])
  for (let i = 0; i < 3; i++) {
    const r = await node.api('/api/events', { body: { type: 'session.graf', userId: 'graf-late', data: { i } } })
    await late.next((f) => f.type === 'event' && f.payload.id === r.body.id)
  }
  const delivered = metric(parseMetrics(await scrape()), 'herald_events_delivered_total', { kind: 'event' })
  await waitFor('Prometheus to scrape them', async () => await query('sum(herald_events_delivered_total{kind="event"})'),
    (r) => r.length === 1 && Number(r[0]!.value[1]) >= delivered, { timeoutMs: 10_000, intervalMs: 200 })

  for (const q of panelQueries) {
    // $__rate_interval as a 5-minute window: the test's whole run fits in it.
    const result = await query(substituted(q.expr, '5m'))
    t.ok(result.length > 0, `${q.where} has series: ${q.expr}`)
    t.ok(result.every((s) => Number.isFinite(Number(s.value[1]))), `${q.where}: finite values (${result.map((s) => s.value[1]).join(', ')})`)
    const legendLabels = [...(q.legend ?? '').matchAll(/\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}/g)].map((m) => m[1]!)
    t.ok(result.every((s) => legendLabels.every((l) => s.metric[l] !== undefined)), `${q.where}: the legend's labels (${legendLabels.join(', ')}) are on every series`)
  }
  for (const v of variableQueries) {
    const series = await promApi('/api/v1/series', { 'match[]': v.expr }) as Array<Record<string, string>>
    t.ok(series.some((s) => s[v.label] === node.serverId), `${v.where} lists the node`)
  }

  // Every rule loaded and evaluated without error.
  const rules = await waitFor('every rule to be evaluated', async () => (await promApi('/api/v1/rules')).groups.flatMap((g: any) => g.rules) as any[],
    (rs) => rs.length === alerts.length && rs.every((r) => r.health !== 'unknown'), { timeoutMs: 10_000, intervalMs: 200 })
  for (const r of rules) t.same([r.health, r.lastError ?? ''], ['ok', ''], `rule ${r.name as string} evaluates`)
  t.same(rules.map((r) => r.name).sort(), alerts.map((r) => r.alert).sort(), 'Prometheus loaded every alert of the file')
  const firing = async (name: string): Promise<any[]> => ((await promApi('/api/v1/alerts')).alerts as any[]).filter((a) => a.labels.alertname === name)
  t.same(await firing('HeraldRedisUnreachable'), [], 'no Redis alert while Redis answers')
  t.same(await firing('HeraldNodeDown'), [], 'no node-down alert while the node answers')

  // A paused Redis keeps its TCP connection: the alert must read the probe.
  redis.pause()
  try {
    const pending = await waitFor('HeraldRedisUnreachable for the node', async () => await firing('HeraldRedisUnreachable'), (a) => a.length > 0, { timeoutMs: 15_000, intervalMs: 200 })
    t.match(pending, [{ state: 'pending', labels: { server_id: node.serverId, job: JOB, severity: 'critical' } }], 'pending on the node whose Redis is paused')
    t.equal(Number((await query(`herald_redis_up{server_id="${node.serverId}"}`))[0]?.value[1]), 1, 'while herald_redis_up still says connected')
  } finally {
    redis.resume()
  }
  await waitFor('the alert to clear after SIGCONT', async () => await firing('HeraldRedisUnreachable'), (a) => a.length === 0, { timeoutMs: 15_000, intervalMs: 200 })
  t.pass('HeraldRedisUnreachable clears once Redis answers again')

  await node.stop()
  const down = await waitFor('HeraldNodeDown for the killed node', async () => await firing('HeraldNodeDown'), (a) => a.length > 0, { timeoutMs: 15_000, intervalMs: 200 })
  t.match(down, [{ state: 'pending', labels: { instance: `127.0.0.1:${node.port}`, job: JOB, severity: 'critical' } }], 'pending on the killed node\'s instance')
})
