// The SDK and the publisher as a user installs them: `npm pack` of each
// workspace package (which builds it on prepack), the tarball installed into
// a scratch project outside the repository, imported, type-checked from a
// consumer's file, and used against a live node; its dependency tree holds
// no package of the server.
import { spawn } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { gzipSync } from 'node:zlib'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import t, { type Test } from 'tap'
import { ROOT } from '../helpers/cli.js'
import { startNode } from '../helpers/node.js'
import { TEST_API_KEY, userToken } from '../helpers/tokens.js'
import { reaped } from '../helpers/children.js'

/** What a browser app or a publishing service must never be handed: the server's own packages. */
const SERVER_PACKAGES = [
  'herald', 'fastify', '@fastify/websocket', '@fastify/swagger', '@fastify/swagger-ui', 'fastify-plugin', 'socket.io', 'engine.io',
  '@socket.io/redis-adapter', 'pino', 'prom-client', 'rate-limiter-flexible', 'close-with-grace', 'env-schema', 'fast-jwt', 'proxy-addr',
  'ioredis', 'ws',
]

const PATH = [dirname(process.execPath), ...(process.env.PATH ?? '').split(delimiter)].join(delimiter)
const TSC = join(ROOT, 'node_modules/typescript/bin/tsc')

interface Run { code: number | null, stdout: string, stderr: string }

/** A command with npm quiet and offline-first: the tarball's own dependencies come from the local cache. */
async function run (cwd: string, file: string, args: string[], timeoutMs = 120_000): Promise<Run> {
  const proc = reaped(spawn(file, args, {
    cwd,
    env: { ...process.env, PATH, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false' },
    stdio: ['ignore', 'pipe', 'pipe'],
  }))
  let stdout = ''
  let stderr = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  proc.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs)
  const code = await new Promise<number | null>((resolve) => proc.once('close', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

async function ok (cwd: string, file: string, args: string[]): Promise<string> {
  const r = await run(cwd, file, args)
  if (r.code !== 0) throw new Error(`${file} ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}`)
  return r.stdout
}

/** `npm pack` of a workspace package into dir: the tarball's path and the files it holds. */
async function pack (workspace: string, dir: string): Promise<{ tarball: string, files: string[] }> {
  const out = await ok(ROOT, 'npm', ['pack', '--json', '--pack-destination', dir, '-w', workspace])
  const [info] = JSON.parse(out.slice(out.indexOf('['))) as Array<{ filename: string, files: Array<{ path: string }> }>
  return { tarball: join(dir, info!.filename.replace(/^@/, '').replace('/', '-')), files: info!.files.map((f) => f.path) }
}

/** A scratch project outside the repository with the tarball (and `extra` packages) installed. */
async function scratch (t: Test, tarball: string): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'herald-pkg-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'scratch', private: true, type: 'module' }))
  await ok(dir, 'npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball])
  return dir
}

/** Every package name installed in the tree, at any depth (npm ls lists an optional peer left out with no version). */
async function tree (dir: string): Promise<string[]> {
  const r = await run(dir, 'npm', ['ls', '--all', '--json'])
  const names: string[] = []
  const walk = (deps: Record<string, { version?: string, dependencies?: Record<string, unknown> }> | undefined): void => {
    for (const [name, d] of Object.entries(deps ?? {})) {
      if (d.version === undefined) continue
      names.push(name)
      walk(d.dependencies as never)
    }
  }
  walk((JSON.parse(r.stdout) as { dependencies?: Record<string, never> }).dependencies)
  return names
}

/** tsc over a consumer's file against the installed declarations, library checks on. */
async function typecheck (dir: string, source: string): Promise<Run> {
  writeFileSync(join(dir, 'consumer.ts'), source)
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, noEmit: true, skipLibCheck: false, lib: ['ES2022', 'DOM'], types: [], typeRoots: [join(ROOT, 'node_modules/@types')] },
    files: ['consumer.ts'],
  }))
  return await run(dir, process.execPath, [TSC, '-p', 'tsconfig.json'])
}

const packs = mkdtempSync(join(tmpdir(), 'herald-packs-'))
t.teardown(() => rmSync(packs, { recursive: true, force: true }))
// Each package packed (and so built) once, for the tests that use it.
const packed = new Map<string, ReturnType<typeof pack>>()
const packOnce = (workspace: string): ReturnType<typeof pack> => {
  let p = packed.get(workspace)
  if (p === undefined) { p = pack(workspace, packs); packed.set(workspace, p) }
  return p
}

t.test('@herald/client: built on pack, no dependencies, imports and type-checks', { timeout: 240_000 }, async (t) => {
  const { tarball, files } = await packOnce('packages/client')
  for (const f of ['dist/client/index.js', 'dist/client/index.d.ts', 'dist/client/admin.js', 'dist/client/admin.d.ts', 'dist/herald-client.min.js', 'package.json', 'README.md']) t.ok(files.includes(f), `the tarball holds ${f}`)
  t.notOk(files.some((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), 'no TypeScript sources')
  t.notOk(files.some((f) => /^dist\/(backend|events|endpoints|http|config)\//.test(f)), 'no server module')
  const dir = await scratch(t, tarball)
  // The browser bundle's budget: a page pays for it on every first load.
  const bundle = readFileSync(join(dir, 'node_modules/@herald/client/dist/herald-client.min.js'))
  t.ok(bundle.length <= 20 * 1024, `the browser bundle is at most 20 KiB minified (${bundle.length} B)`)
  t.ok(gzipSync(bundle).length <= 7 * 1024, `and at most 7 KiB gzipped (${gzipSync(bundle).length} B)`)
  t.notMatch(bundle.toString(), /\brequire\(|from ?"node:|process\.env/, 'nothing of Node in it')
  t.same(await tree(dir), ['@herald/client'], 'nothing installed with it: ws stays an optional peer')

  const probe = await ok(dir, process.execPath, ['--input-type=module', '-e', `
    const sdk = await import('@herald/client')
    const admin = await import('@herald/client/admin')
    const browser = await import('@herald/client/browser')
    console.log(JSON.stringify({ client: typeof sdk.HeraldClient, error: typeof sdk.HeraldError, draining: sdk.CloseCodes.DRAINING, admin: typeof admin.HeraldAdmin, browser: typeof browser.HeraldClient }))
  `])
  t.match(JSON.parse(probe), { client: 'function', error: 'function', draining: 1001, admin: 'function', browser: 'function' }, 'the entry points import on Node')

  const good = await typecheck(dir, `
    import { HeraldClient, type HeraldEvent, type ClientState } from '@herald/client'
    import { HeraldAdmin, type Metrics } from '@herald/client/admin'
    const c = new HeraldClient({ url: 'ws://127.0.0.1:1/ws/events', getToken: () => null, eventTypes: ['system.*'] })
    c.on('event', (e: HeraldEvent) => { const t: string = e.type; const d: Record<string, unknown> = e.data; void t; void d })
    const s: ClientState = c.state
    const a = new HeraldAdmin(c)
    a.on('metrics', (m: Metrics) => { const n: number = m.server.connections.total; void n })
    void s
  `)
  t.equal(good.code, 0, `a consumer's code type-checks against the declarations alone:\n${good.stdout}`)
  const bad = await typecheck(dir, `
    import type { HeraldEvent } from '@herald/client'
    const e = {} as HeraldEvent
    const n: number = e.type
    void n
  `)
  t.match(bad.stdout, /consumer\.ts.*TS2322/, 'and the event type is the protocol\'s, not any')
})

t.test('@herald/publisher: built on pack, only its validator, imports and type-checks', { timeout: 240_000 }, async (t) => {
  const { tarball, files } = await packOnce('packages/publisher')
  t.same(files.sort(), ['README.md', 'dist/index.d.ts', 'dist/index.js', 'package.json'], 'the bundle, its declarations, the README')
  const dir = await scratch(t, tarball)
  const names = await tree(dir)
  t.ok(names.includes('@herald/publisher') && names.includes('ajv') && names.includes('@sinclair/typebox'), 'the publisher with the validator it runs')
  t.ok(names.includes('cluster-key-slot'), 'and the hash-slot function, as ioredis computes it (appends grouped by slot on a Cluster)')
  t.same(names.filter((n) => SERVER_PACKAGES.includes(n)), [], `no server package in ${names.join(', ')}`)
  t.notOk(names.includes('ioredis'), 'ioredis stays an optional peer')
  const js = readFileSync(join(dir, 'node_modules/@herald/publisher/dist/index.js'), 'utf8')
  const imports = [...js.matchAll(/^import .* from "([^"]+)";$/gm)].map((m) => m[1]!)
  t.same([...new Set(imports)].sort(), ['@sinclair/typebox', 'ajv', 'node:crypto', 'node:diagnostics_channel', 'node:module'], 'what the bundle imports at run time (node:module: createRequire for cluster-key-slot)')

  const good = await typecheck(dir, `
    import { HeraldPublisher, PublishError, type Receipt, type RedisLike } from '@herald/publisher'
    const p = new HeraldPublisher({ url: 'http://127.0.0.1:1', apiKey: 'k' })
    const r: Promise<Receipt> = p.publishWithReceipt('authentication.login.success', { userId: 'u1' })
    const id: Promise<string> = p.publishSystemEvent('system.maintenance.scheduled', { at: 'now' })
    const redis: RedisLike = { publish: async () => 1 }
    void new HeraldPublisher({ redis, webhooks: false }); void r; void id; void PublishError
  `)
  t.equal(good.code, 0, `a consumer's code type-checks against the declarations alone:\n${good.stdout}`)
  const bad = await typecheck(dir, `
    import { HeraldPublisher } from '@herald/publisher'
    void new HeraldPublisher({ url: 'http://x' }).publishSessionEvent('session.nope', 'u1', 's1')
  `)
  t.match(bad.stdout, /consumer\.ts.*TS23\d\d/, 'the catalogue\'s types hold')
})

t.test('the installed packages against a live node: the SDK on Node\'s WebSocket, then publish over HTTP and receive with the SDK on ws', { timeout: 240_000 }, async (t) => {
  const client = await packOnce('packages/client')
  const publisher = await packOnce('packages/publisher')
  const dir = await scratch(t, client.tarball)
  const node = await startNode()
  t.teardown(() => node.stop())
  // ws is an optional peer: without it the SDK runs on Node's global WebSocket.
  writeFileSync(join(dir, 'global.mjs'), `
    import { HeraldClient } from '@herald/client'
    const [url, token] = process.argv.slice(2)
    const client = new HeraldClient({ url, getToken: () => token, eventTypes: ['system.*'] })
    const welcome = await client.connect()
    console.log(JSON.stringify({ userId: welcome.userId, rtt: await client.ping() }))
    client.close()
  `)
  t.match(JSON.parse(await ok(dir, process.execPath, ['global.mjs', `${node.ws}/ws/events`, userToken('pkg-global')])), { userId: 'pkg-global', rtt: Number }, 'the SDK on Node 22\'s own WebSocket, no ws installed')
  await ok(dir, 'npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', publisher.tarball, 'ws@8'])
  writeFileSync(join(dir, 'roundtrip.mjs'), `
    import WebSocket from 'ws'
    import { HeraldClient } from '@herald/client'
    import { HeraldPublisher } from '@herald/publisher'
    const [url, httpUrl, token, apiKey] = process.argv.slice(2)
    const client = new HeraldClient({ url, WebSocket, getToken: () => token, eventTypes: ['authentication.*'] })
    const got = new Promise((resolve) => client.on('event', resolve))
    await client.connect()
    const herald = new HeraldPublisher({ url: httpUrl, apiKey })
    const id = await herald.publishAuthenticationEvent('authentication.login.success', 'pkg-user', 'pkg-session', { ip: '192.0.2.1' })
    const e = await got
    console.log(JSON.stringify({ id, e }))
    await herald.close()
    client.close()
  `)
  const out = await ok(dir, process.execPath, ['roundtrip.mjs', `${node.ws}/ws/events`, node.http, userToken('pkg-user', 'pkg-session'), TEST_API_KEY])
  const { id, e } = JSON.parse(out) as { id: string, e: { id: string, type: string, data: unknown } }
  t.equal(e.id, id, 'the event published is the event received')
  t.match(e, { type: 'authentication.login.success', data: { ip: '192.0.2.1' } })
})
