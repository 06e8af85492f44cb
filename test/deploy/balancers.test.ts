// The balancer settings that only show over hours or across versions, checked
// statically: idle limits on upgraded WebSockets (haproxy.cfg, nginx.conf, the
// Ingress and the HTTPRoute) must be an hour or more and far above Herald's
// heartbeat, read the way each proxy applies them (defaults and inheritance,
// nginx location matching); and the proxies compose ships must be the versions
// test/deploy/haproxy.test.ts runs. Each reader is also run on a broken copy,
// so a check that cannot fail shows up here.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { loadConfig } from '../../src/config/index.js'
import { binary, composeFile, heraldServices, read, runIn, serviceEnv, yamlDocs } from './lib.js'

const HAPROXY = binary('haproxy')
const NGINX = binary('nginx')
const HOUR = 3_600_000
// A live client is never idle longer than one heartbeat interval; ten of them
// leave room for lost pings and for an operator raising the interval.
const MARGIN = 10
const compose = composeFile()
const composeHeartbeat = loadConfig(serviceEnv(heraldServices(compose)['herald-1'])).heartbeatIntervalMs
const k8sDocs = ['configmap.yaml', 'ingress.yaml', 'httproute.yaml'].flatMap((f) => yamlDocs(`k8s/${f}`)) as any[]
const k8s = (kind: string): any => k8sDocs.find((d) => d.kind === kind)
const k8sHeartbeat = loadConfig({ ...k8s('ConfigMap').data, JWT_SECRET: 'x'.repeat(32) }).heartbeatIntervalMs

const dir = mkdtempSync(join(tmpdir(), 'herald-balancers-'))
t.teardown(() => rmSync(dir, { recursive: true, force: true }))

const run = async (cmd: string, args: string[]): Promise<{ code: number | null, out: string }> => await runIn(dir, cmd, args)

/** haproxy time: a number with us/ms/s/m/h/d, milliseconds when bare. */
function haproxyMs (v: string): number {
  const m = /^(\d+)(us|ms|s|m|h|d)?$/.exec(v)
  if (m === null) throw new Error(`not a haproxy time: ${v}`)
  return Number(m[1]) * { us: 0.001, ms: 1, s: 1000, m: 60_000, h: HOUR, d: 24 * HOUR }[m[2] ?? 'ms']!
}

/** nginx time: units may be combined (1h30m), seconds when bare. */
function nginxMs (v: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: HOUR, d: 24 * HOUR, w: 7 * 24 * HOUR, M: 30 * 24 * HOUR, y: 365 * 24 * HOUR }
  if (/^\d+$/.test(v)) return Number(v) * 1000
  const parts = [...v.matchAll(/(\d+)(ms|s|m|h|d|w|M|y)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== v) throw new Error(`not an nginx time: ${v}`)
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0)
}

/** Gateway API Duration (GEP-2257): 1h, 30s, 1h30m, 500ms; "0s" means no timeout. */
function gatewayMs (v: string): number {
  const parts = [...v.matchAll(/(\d+)(h|ms|m|s)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== v) throw new Error(`not a Gateway API duration: ${v}`)
  return parts.reduce((sum, p) => sum + Number(p[1]) * { h: HOUR, m: 60_000, s: 1000, ms: 1 }[p[2] as 'h']!, 0)
}

/**
 * `timeout tunnel` per backend as haproxy applies it: the backend's own line,
 * else the one of the last `defaults` section above it.
 */
function haproxyTunnels (cfg: string): Record<string, number | undefined> {
  let defaults: number | undefined
  let section: { kind: string, name: string } | undefined
  const out: Record<string, number | undefined> = {}
  for (const raw of cfg.split('\n')) {
    if (/^\s*(#|$)/.test(raw)) continue
    const head = /^(global|defaults|frontend|backend|listen|resolvers|peers|userlist|mailers|program|http-errors|ring|cache)\b\s*(\S*)/.exec(raw)
    if (head !== null) {
      section = { kind: head[1]!, name: head[2]! }
      if (section.kind === 'defaults') defaults = undefined
      if (section.kind === 'backend' || section.kind === 'listen') out[section.name] = defaults
      continue
    }
    const m = /^\s+timeout\s+tunnel\s+(\S+)/.exec(raw)
    if (m === null || section === undefined) continue
    if (section.kind === 'defaults') defaults = haproxyMs(m[1]!)
    else if (section.kind === 'backend' || section.kind === 'listen') out[section.name] = haproxyMs(m[1]!)
  }
  return out
}

interface Directive { name: string, args: string[], block?: Directive[] }

/** nginx.conf as nginx tokenises it: directives, blocks, quoted strings, # comments. */
function parseNginx (text: string): Directive[] {
  const tokens = [...text.matchAll(/#[^\n]*|"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)'|([{};])|([^\s{};"'#]+)/g)]
    .filter((m) => !m[0].startsWith('#'))
    .map((m) => m[3] !== undefined ? { punct: m[3] } : { word: m[1] ?? m[2] ?? m[4]! })
  let i = 0
  const block = (): Directive[] => {
    const out: Directive[] = []
    let words: string[] = []
    while (i < tokens.length) {
      const tok = tokens[i++]!
      if ('word' in tok) { words.push(tok.word!); continue }
      if (tok.punct === '}') { if (words.length > 0) throw new Error(`nginx.conf: missing ; after ${words.join(' ')}`); return out }
      const [name, ...args] = words
      if (name === undefined) throw new Error('nginx.conf: empty directive')
      out.push(tok.punct === '{' ? { name, args, block: block() } : { name, args })
      words = []
    }
    return out
  }
  return block()
}

/** The location nginx picks for a normalised URI (exact, then ^~ / longest prefix, then regexes in order). */
function pickLocation (server: Directive[], uri: string): Directive | undefined {
  const locations = server.filter((d) => d.name === 'location')
  const exact = locations.find((l) => l.args[0] === '=' && l.args[1] === uri)
  if (exact !== undefined) return exact
  const prefixes = locations.filter((l) => l.args.length === 1 || l.args[0] === '^~')
    .map((l) => ({ l, prefix: l.args.at(-1)! })).filter((p) => uri.startsWith(p.prefix))
    .sort((a, b) => b.prefix.length - a.prefix.length)
  const longest = prefixes[0]
  if (longest?.l.args[0] === '^~') return longest.l
  for (const l of locations) {
    if (l.args[0] !== '~' && l.args[0] !== '~*') continue
    if (new RegExp(l.args[1]!, l.args[0] === '~*' ? 'i' : '').test(uri)) return l
  }
  return longest?.l
}

/** A directive's values at the innermost of the given levels that sets it (nginx inheritance). */
function effective (levels: Directive[][], name: string): string[][] {
  for (const level of levels) {
    const found = level.filter((d) => d.name === name)
    if (found.length > 0) return found.map((d) => d.args)
  }
  return []
}

interface WsRoute { uri: string, location: string, read: number, send: number, headers: Record<string, string>, httpVersion?: string }

/** For each WebSocket path: the location serving it and the proxy settings it ends up with. */
function nginxWebSocketRoutes (text: string): WsRoute[] {
  const main = parseNginx(text)
  const http = main.find((d) => d.name === 'http')!.block!
  const servers = http.filter((d) => d.name === 'server').map((d) => d.block!)
  return servers.flatMap((server) => ['/ws/events', '/ws/admin', '/ws/health', '/socket.io/'].map((uri) => {
    const loc = pickLocation(server, uri)
    if (loc === undefined) throw new Error(`nginx.conf: no location serves ${uri}`)
    const levels = [loc.block!, server, http, main]
    const one = (name: string, def: string): string => effective(levels, name).at(-1)?.[0] ?? def
    return {
      uri,
      location: loc.args.join(' '),
      // nginx's defaults: 60 s each.
      read: nginxMs(one('proxy_read_timeout', '60s')),
      send: nginxMs(one('proxy_send_timeout', '60s')),
      headers: Object.fromEntries(effective(levels, 'proxy_set_header').map((a) => [a[0]!.toLowerCase(), a[1]!])),
      httpVersion: effective(levels, 'proxy_http_version').at(-1)?.[0],
    }
  }))
}

t.test('haproxy.cfg: every backend keeps an idle WebSocket an hour or more', async (t) => {
  const cfg = read('deploy/haproxy.cfg')
  const tunnels = haproxyTunnels(cfg)
  t.same(Object.keys(tunnels).sort(), ['herald', 'herald_socketio'])
  for (const [backend, ms] of Object.entries(tunnels)) {
    t.ok(ms !== undefined && ms >= HOUR && ms >= MARGIN * composeHeartbeat,
      `backend ${backend}: timeout tunnel ${ms} ms ≥ 1 h and ≥ ${MARGIN} × WEBSOCKET_HEARTBEAT_INTERVAL (${composeHeartbeat} ms)`)
  }
  // The reader follows haproxy's rules: a backend's own line wins over defaults, and without any the tunnel falls back to timeout client/server.
  const short = cfg.replace(/^(backend herald_socketio\n)/m, '$1    timeout tunnel 30s\n')
  t.same(haproxyTunnels(short), { ...tunnels, herald_socketio: 30_000 }, 'a backend override is seen')
  t.same(haproxyTunnels(cfg.replace(/^\s+timeout tunnel .*$/m, '')), { herald: undefined, herald_socketio: undefined }, 'so is a missing one')
})

t.test('nginx.conf: the locations serving WebSockets upgrade and keep an idle connection an hour or more', async (t) => {
  const text = read('deploy/nginx.conf')
  const routes = nginxWebSocketRoutes(text)
  t.ok(routes.length >= 4)
  for (const r of routes) {
    t.ok(r.read >= HOUR && r.read >= MARGIN * composeHeartbeat, `${r.uri} (location ${r.location}): proxy_read_timeout ${r.read} ms`)
    t.ok(r.send >= HOUR && r.send >= MARGIN * composeHeartbeat, `${r.uri} (location ${r.location}): proxy_send_timeout ${r.send} ms`)
    t.equal(r.headers.upgrade, '$http_upgrade', `${r.uri}: Upgrade passed on`)
    t.equal(r.headers.connection, '$connection_upgrade', `${r.uri}: Connection: upgrade passed on`)
    t.equal(r.httpVersion, '1.1', `${r.uri}: HTTP/1.1 to the node (upgrades need it)`)
  }
  // The reader follows nginx's inheritance: a location's own timeout wins, and
  // one proxy_set_header in a location drops every inherited one.
  const overridden = text.replace(/(location \/socket\.io\/ \{\n)/, '$1            proxy_read_timeout 60s;\n            proxy_set_header X-Test 1;\n')
  const sio = nginxWebSocketRoutes(overridden).find((r) => r.uri === '/socket.io/')!
  t.equal(sio.read, 60_000, 'a location override is seen')
  t.equal(sio.headers.upgrade, undefined, 'and so is the loss of inherited headers')
  t.equal(nginxMs('1h30m'), 5_400_000)
  t.equal(nginxMs('75'), 75_000, 'a bare nginx time is seconds')
})

t.test('the Ingress sets haproxy\'s tunnel timeout where the controller reads it, and haproxy accepts the snippet', async (t) => {
  const ann = k8s('Ingress').metadata.annotations as Record<string, string>
  // timeout-tunnel is a ConfigMap-only setting of the HAProxy Ingress Controller; on an Ingress it would be ignored.
  t.notOk(Object.keys(ann).some((k) => /\/timeout-tunnel$/.test(k)), 'no ignored timeout-tunnel annotation')
  const snippet = ann['haproxy.org/backend-config-snippet'] ?? ''
  const m = /^\s*timeout\s+tunnel\s+(\S+)\s*$/m.exec(snippet)
  t.ok(m, 'the backend config snippet sets timeout tunnel')
  const ms = haproxyMs(m?.[1] ?? '0')
  t.ok(ms >= HOUR && ms >= MARGIN * k8sHeartbeat, `timeout tunnel ${ms} ms ≥ 1 h and ≥ ${MARGIN} × the ConfigMap's heartbeat (${k8sHeartbeat} ms)`)
  // The controller pastes the snippet into each backend: it must parse there.
  const check = async (body: string): Promise<{ code: number | null, out: string }> => {
    const file = join(dir, `snippet-${Math.random().toString(36).slice(2)}.cfg`)
    writeFileSync(file, `defaults\n    mode http\n    timeout connect 5s\n    timeout client 50s\n    timeout server 50s\nfrontend https\n    bind 127.0.0.1:1\n    default_backend herald\nbackend herald\n${body.split('\n').map((l) => `    ${l}`).join('\n')}\n    server pod 127.0.0.1:1\n`)
    return await run(HAPROXY, ['-c', '-f', file])
  }
  const ok = await check(snippet)
  t.equal(ok.code, 0, `haproxy -c accepts the snippet in a backend: ${ok.out}`)
  t.not((await check('timeout tunel 1h')).code, 0, 'and refuses a misspelt one')
})

t.test('the HTTPRoute does not cut WebSockets: request timeouts disabled or an hour or more', async (t) => {
  const rules = k8s('HTTPRoute').spec.rules as any[]
  const ws = rules.filter((r) => (r.matches as any[]).some((m) => ['/ws/', '/socket.io/'].includes(m.path.value)))
  t.ok(ws.length > 0, 'a rule routes the WebSocket paths')
  // Gateway API: "0s" disables a timeout; backendRequest may not exceed request.
  const longEnough = (v: string | undefined, hb: number): boolean => v === undefined || gatewayMs(v) === 0 || (gatewayMs(v) >= HOUR && gatewayMs(v) >= MARGIN * hb)
  for (const r of ws) {
    t.ok(r.timeouts?.request !== undefined && longEnough(r.timeouts.request, k8sHeartbeat), `request timeout ${r.timeouts?.request}: disabled or ≥ 1 h (left unset, implementations pick their own, often 15 s)`)
    t.ok(longEnough(r.timeouts?.backendRequest, k8sHeartbeat), `backendRequest timeout ${r.timeouts?.backendRequest ?? 'unset'}`)
  }
  t.notOk(longEnough('30s', k8sHeartbeat), 'a 30 s timeout would fail this check')
})

/** major.minor of a version string, as numbers. */
const majorMinor = (v: string): [number, number] => {
  const m = /^(\d+)\.(\d+)/.exec(v)
  if (m === null) throw new Error(`no major.minor in ${v}`)
  return [Number(m[1]), Number(m[2])]
}
const imageTag = (service: string): string => {
  const image = compose.services[service].image as string
  const m = /^[^:]+:(\d+\.\d+)(?:[.-]|$)/.exec(image)
  if (m === null) throw new Error(`compose ${service}: image ${image} is not pinned to a major.minor tag`)
  return m[1]!
}

t.test('compose ships the haproxy branch the tests run', async (t) => {
  const v = await run(HAPROXY, ['-v'])
  const local = /HAProxy version (\d+\.\d+)/.exec(v.out)?.[1]
  t.ok(local, `haproxy here: ${v.out.split('\n')[0]}`)
  t.equal(imageTag('haproxy'), local, `docker-compose.yml's haproxy image (${compose.services.haproxy.image}) is the ${local} branch test/deploy/haproxy.test.ts runs`)
})

// nginx is not pinned to the tested branch: Debian's 1.22 is years past its end
// of support upstream, and shipping an unpatched image to match the tests is
// the worse trade. Instead the tested nginx is the lower bound: compose's image
// must not be older, `nginx -t` by the older binary (haproxy.test.ts) refuses
// any directive newer than it, and directives that nginx removed or
// deprecated since then must not appear.
const REMOVED_SINCE_1_22: Record<string, string> = {
  ssl: 'removed in 1.25.1 (use listen … ssl)',
  http2_push: 'HTTP/2 server push removed in 1.25.1',
  http2_push_preload: 'HTTP/2 server push removed in 1.25.1',
  http2_max_concurrent_pushes: 'HTTP/2 server push removed in 1.25.1',
}

t.test('compose ships an nginx no older than the tests run, and the config uses nothing it dropped', async (t) => {
  const v = await run(NGINX, ['-v'])
  const local = /nginx\/(\d+\.\d+\.\d+)/.exec(v.out)?.[1]
  t.ok(local, `nginx here: ${v.out.trim()}`)
  const [lMaj, lMin] = majorMinor(local ?? '0.0')
  const [sMaj, sMin] = majorMinor(imageTag('nginx'))
  t.ok(sMaj > lMaj || (sMaj === lMaj && sMin >= lMin), `compose's ${compose.services.nginx.image} is not older than the tested ${local}`)
  const all = (ds: Directive[]): Directive[] => ds.flatMap((d) => [d, ...all(d.block ?? [])])
  const used = all(parseNginx(read('deploy/nginx.conf')))
  t.same(used.filter((d) => REMOVED_SINCE_1_22[d.name] !== undefined).map((d) => `${d.name}: ${REMOVED_SINCE_1_22[d.name]}`), [], 'no directive removed since')
  t.same(used.filter((d) => d.name === 'listen' && d.args.includes('http2')).map((d) => d.args.join(' ')), [], 'no `listen … http2` (deprecated in 1.25.1)')
  t.ok(used.some((d) => d.name === 'proxy_pass'), 'the parser read the config')
  // The lower bound is real: a directive newer than the tested nginx fails `nginx -t` here.
  if (lMaj === 1 && lMin < 25) {
    const file = join(dir, 'newer.conf')
    writeFileSync(file, 'events {}\nhttp {\n  server {\n    listen 127.0.0.1:1;\n    http2 on;\n  }\n}\n')
    const r = await run(NGINX, ['-t', '-p', dir, '-c', file, '-g', `pid ${join(dir, 'nginx.pid')};`])
    t.not(r.code, 0, `nginx ${local} refuses \`http2 on\` (1.25.1): ${r.out.trim().split('\n').at(-1)}`)
  }
})
