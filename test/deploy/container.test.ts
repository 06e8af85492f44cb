// The image's command run the way a container runs it, as far as this machine
// allows without a Docker engine: the runtime stage's CMD, exactly as written,
// as PID 1 of its own PID namespace (unshare), from a temporary directory laid
// out by the runtime stage's COPY instructions (dist/, package.json, and
// node_modules holding only what `npm ci --omit=dev`
// installs, at the paths npm gave them here), with the image's ENV and
// docker-compose.yml's environment (addresses changed for loopback). A
// dependency the image lacks fails here as it would in the container, instead
// of being found in the checkout's node_modules.
// A PID 1 gets no default signal handling: SIGTERM sent from outside the
// namespace, as `docker stop` sends it, reaches node only because node itself
// handles it. The image's HEALTHCHECK command answers 0 when the node is ready
// and 1 once it drains. `node dist/cli.js token`, run in the image with the
// container's environment as `docker compose exec` runs it, mints tokens the
// node accepts, and refuses plainly without a key.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, delimiter, dirname, join, relative, sep } from 'node:path'
import t from 'tap'
import { connect, type TestClient } from '../helpers/client.js'
import { freePort } from '../helpers/ports.js'
import { startRedis } from '../helpers/redis.js'
import { waitFor, within } from '../helpers/wait.js'
import { ROOT, binary, composeFile, dockerStages, execForm, flag, forceExitMarginMs, healthcheckCommand, heraldServices, serviceEnv } from './lib.js'
import { reaped } from '../helpers/children.js'

const UNSHARE = binary('unshare', 'util-linux')
const runtime = dockerStages().at(-1)!
const cmd = execForm(runtime.instructions.find((i) => i.keyword === 'CMD')!.args)!
const healthcheck = execForm(healthcheckCommand(runtime.instructions.find((i) => i.keyword === 'HEALTHCHECK')!.args))!
/** ENV k=v pairs of the runtime stage (quotes and line continuations resolved). */
const imageEnv: Record<string, string> = Object.fromEntries(runtime.instructions.filter((i) => i.keyword === 'ENV')
  .flatMap((i) => [...i.args.replace(/\\\s*\n/g, ' ').matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("[^"]*"|\S*)/g)].map((m) => [m[1]!, m[2]!.replace(/^"|"$/g, '')])))
const composeEnv = serviceEnv(heraldServices(composeFile())['herald-1'])
const PATH = [dirname(process.execPath), ...(process.env.PATH ?? '').split(delimiter)].join(delimiter)
const stages = dockerStages()
const WORKDIR = runtime.instructions.filter((i) => i.keyword === 'WORKDIR').at(-1)?.args ?? '/'

/**
 * The packages `npm ci --omit=dev` would install, as paths relative to ROOT
 * (node_modules/a, node_modules/a/node_modules/b): npm's own resolution of
 * the lockfile's tree here, dev dependencies left out.
 */
function productionPackages (): string[] {
  const out = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: ROOT, encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] })
  const paths = out.split('\n').map((l) => l.trim()).filter((l) => l.length > 0).map((l) => relative(ROOT, l))
  return paths.filter((p) => p !== '' && p.startsWith(`node_modules${sep}`))
}

/**
 * The runtime stage's filesystem under WORKDIR, built from its COPY
 * instructions: from the stage that ran `npm ci --omit=dev`, the production
 * packages; from the stage that ran `npm run build`, this checkout's dist/ (the
 * test run builds it the same way); plain COPYs from the build context. Any
 * other COPY is an error, so the Dockerfile cannot grow a file this layout lacks.
 */
function imageLayout (): string {
  const app = mkdtempSync(join(tmpdir(), 'herald-image-'))
  const byName = new Map(stages.filter((s) => s.name !== null).map((s) => [s.name!, s]))
  const inApp = (dest: string): string => join(app, relative(WORKDIR, dest.startsWith('/') ? dest : join(WORKDIR, dest)))
  for (const ins of runtime.instructions.filter((i) => i.keyword === 'COPY')) {
    const [src, dest, ...more] = ins.args.trim().split(/\s+/)
    if (src === undefined || dest === undefined || more.length > 0) throw new Error(`Dockerfile:${ins.line}: COPY with one source expected: ${ins.args}`)
    const from = flag(ins, 'from')
    // COPY semantics: a destination ending in / is a directory the source goes into.
    const target = inApp(dest.endsWith('/') ? join(dest, basename(src)) : dest)
    if (from === undefined) {
      cpSync(join(ROOT, src), target, { recursive: true })
      continue
    }
    const stage = byName.get(from)
    const runs = (stage?.instructions ?? []).filter((i) => i.keyword === 'RUN').map((i) => i.args).join('\n')
    if (/node_modules\/?$/.test(src) && /\bnpm ci\b[^&|;\n]*--omit=dev/.test(runs)) {
      // Each package without its nested node_modules: those hold packages of
      // their own, listed (or, if dev-only, left out) separately.
      for (const pkg of productionPackages()) {
        const abs = join(ROOT, pkg)
        cpSync(abs, join(target, relative('node_modules', pkg)), { recursive: true, filter: (p) => p !== join(abs, 'node_modules') })
      }
    } else if (/dist\/?$/.test(src) && /\bnpm run build\b/.test(runs)) {
      cpSync(join(ROOT, 'dist'), target, { recursive: true })
    } else {
      throw new Error(`Dockerfile:${ins.line}: COPY --from=${from} ${src}: not something this test knows how to lay out`)
    }
  }
  return app
}

const APP = imageLayout()
t.teardown(() => rmSync(APP, { recursive: true, force: true }))

async function exitCode (argv: string[], env: Record<string, string>): Promise<{ code: number | null, out: string }> {
  const p = reaped(spawn(argv[0]!, argv.slice(1), { cwd: APP, env: { PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] }))
  let out = ''
  p.stdout.on('data', (b: Buffer) => { out += b.toString() })
  p.stderr.on('data', (b: Buffer) => { out += b.toString() })
  const code = await within(10_000, argv.join(' '), new Promise<number | null>((resolve) => p.once('exit', (c) => resolve(c))))
  return { code, out }
}

t.test('the layout is the runtime stage: production dependencies only', async (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { dependencies: Record<string, string>, devDependencies: Record<string, string> }
  for (const f of ['dist/main.js', 'dist/cli.js', 'package.json']) t.ok(existsSync(join(APP, f)), `${f} is in the image`)
  for (const d of Object.keys(pkg.dependencies)) t.ok(statSync(join(APP, 'node_modules', d)).isDirectory(), `dependency ${d} is installed`)
  // Dev tools no production package needs (tap, typescript, tsx, …) are absent.
  const needed = new Set(productionPackages().map((p) => p.split(sep).slice(1, p.split(sep)[1]!.startsWith('@') ? 3 : 2).join('/')))
  const devOnly = Object.keys(pkg.devDependencies).filter((d) => !needed.has(d))
  t.ok(devOnly.includes('typescript') && devOnly.includes('tap'), `dev-only packages: ${devOnly.join(', ')}`)
  t.same(devOnly.filter((d) => existsSync(join(APP, 'node_modules', d))), [], 'none of them is in node_modules')
  t.notOk(existsSync(join(APP, 'src')) || existsSync(join(APP, 'test')), 'no sources or tests')
})

t.test('herald token in the image refuses without a JWT_SECRET, and refuses bad arguments', async (t) => {
  const r = await exitCode([process.execPath, 'dist/cli.js', 'token', '--sub', 'u'], { ...imageEnv })
  t.equal(r.code, 78)
  t.match(r.out, /^herald token: invalid configuration: JWT_SECRET is required when NODE_ENV=production/)
  const bad = await exitCode([process.execPath, 'dist/cli.js', 'token', '--sub', 'u', '--ttl', 'soon'], { ...imageEnv, ...composeEnv })
  t.equal(bad.code, 64, 'a bad ttl is refused')
  t.match(bad.out, /--ttl must be/)
})

t.test('CMD as PID 1: ready, health-checked, drained by SIGTERM from outside, exit 0', async (t) => {
  t.same(cmd, ['node', 'dist/main.js'])
  const redis = await startRedis()
  let ns: ChildProcess | undefined
  const clients: TestClient[] = []
  t.teardown(async () => {
    for (const c of clients) await c.close()
    if (ns !== undefined && ns.exitCode === null && ns.signalCode === null) {
      const exited = new Promise((resolve) => ns!.once('exit', resolve))
      ns.kill('SIGKILL') // --kill-child takes node down with it
      await exited
    }
    await redis.stop()
  })

  const port = await freePort()
  const env: Record<string, string> = { PATH, ...imageEnv, ...composeEnv, REDIS_URL: redis.url, HOST: '127.0.0.1', PORT: String(port) }
  t.equal(env.NODE_ENV, 'production')
  const lines: string[] = []
  ns = reaped(spawn(UNSHARE, ['--pid', '--fork', '--mount-proc', '--kill-child', ...cmd], { cwd: APP, env, stdio: ['ignore', 'pipe', 'pipe'] }))
  for (const s of [ns.stdout!, ns.stderr!]) s.on('data', (b: Buffer) => lines.push(...b.toString().split('\n').filter((l) => l.length > 0)))
  const exit = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => ns!.once('exit', (code, signal) => resolve({ code, signal })))
  const tail = (): string => lines.slice(-10).join('\n')

  await waitFor('the node listening', () => lines.some((l) => l.includes(`Server listening at http://127.0.0.1:${port}`)), (v) => v, { timeoutMs: 20_000 })
    .catch((err: Error) => { throw new Error(`${err.message}\n${tail()}`) })
  // The node is PID 1 of its namespace, as in a container.
  const children = readFileSync(`/proc/${ns.pid}/task/${ns.pid}/children`, 'utf8').trim().split(/\s+/).map(Number)
  t.equal(children.length, 1, 'unshare forked one child')
  const nodePid = children[0]!
  const nspid = /^NSpid:\s+(.*)$/m.exec(readFileSync(`/proc/${nodePid}/status`, 'utf8'))![1]!.trim().split(/\s+/)
  t.equal(nspid.at(-1), '1', `node (host pid ${nodePid}) is PID 1 in its namespace`)
  t.match(readFileSync(`/proc/${nodePid}/cmdline`, 'utf8').split('\0').slice(0, 2), ['node', 'dist/main.js'], 'and it is node itself, no shell in between')

  await waitFor('readiness 200', async () => (await fetch(`http://127.0.0.1:${port}/ws/health`)).status, (s) => s === 200, { timeoutMs: 10_000 })
  const ready = await exitCode(healthcheck, { PORT: String(port) })
  t.equal(ready.code, 0, `the image HEALTHCHECK passes on a ready node ${ready.out}`)

  // Two clients with tokens from the image's herald command, run with the node's environment: the drain spreads their closes.
  for (const user of ['alice', 'bob']) {
    const minted = await exitCode([process.execPath, 'dist/cli.js', 'token', '--sub', user], env)
    t.equal(minted.code, 0)
    clients.push(await connect(`ws://127.0.0.1:${port}/ws/events`, { token: minted.out.trim() }))
  }

  const drainMs = Number(env.DRAIN_TIMEOUT ?? 10_000)
  const sentAt = Date.now()
  process.kill(nodePid, 'SIGTERM') // from outside the namespace, like the container runtime
  await waitFor('the draining log line', () => lines.find((l) => l.includes('"msg":"draining"') && l.includes('"signal":"SIGTERM"')), (l) => l !== undefined, { timeoutMs: 3000 })
  t.pass('SIGTERM reached node as PID 1')
  const draining = await waitFor('HEALTHCHECK failing while draining', async () => (await exitCode(healthcheck, { PORT: String(port) })).code, (c) => c === 1, { timeoutMs: 3000 })
  t.equal(draining, 1, 'the image HEALTHCHECK fails once the node drains')
  t.ok(clients.some((c) => c.closeInfo === null), 'checked while connections were still open')
  const closes = await within(drainMs + 5000, 'drain closes', Promise.all(clients.map(async (c) => await c.closed)))
  for (const c of closes) t.equal(c.code, 1001, 'closed with 1001')
  const result = await within(drainMs + forceExitMarginMs() + 5000, 'exit after SIGTERM', exit)
  t.same(result, { code: 0, signal: null }, `PID 1 exited 0, ${Date.now() - sentAt} ms after SIGTERM`)
})
