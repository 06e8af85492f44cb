// `herald token`, run as a user runs it: the built CLI as a child process
// (`node dist/cli.js token …`, and `npx herald token …` through the package's
// bin from the checkout), its stdout taken as the token, and that
// token used against real nodes started with the same environment.
import { generateKeyPairSync } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { claimsOf, cli, npmExec, npx, ROOT, type Run } from '../helpers/cli.js'
import { connect, refusal } from '../helpers/client.js'
import { startNode, startNodes } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'

const SECRET = 'cli-test-secret-of-at-least-32-characters'
const API_KEY = 'cli-test-api-key-0123456789'

/** The token a successful run printed: its whole stdout is one JWT and a newline, stderr silent. */
function tokenOf (t: Test, r: Run): string {
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr})`)
  t.equal(r.stderr, '', 'nothing on stderr')
  t.match(r.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, 'stdout is the token alone')
  return r.stdout.trim()
}

t.test('a cluster started as the README says: npx herald token mints tokens every node accepts', { timeout: 90_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  // REDIS_URL=… PORT=… JWT_SECRET=… API_KEYS=… npm start, twice; nothing else set.
  const clusterEnv = { REDIS_URL: redis.url, JWT_SECRET: SECRET, API_KEYS: API_KEY }
  const [A, B] = await startNodes(t, 2, clusterEnv, { cleanEnv: true })

  // The package bin from the checkout, with the nodes' environment.
  const admin = tokenOf(t, await npx(['herald', 'token', '--sub', 'ops-1', '--roles', 'admin', '--ttl', '1h'], clusterEnv))
  t.match(claimsOf(admin), { sub: 'ops-1', roles: ['admin'] })
  t.equal(claimsOf(admin).exp - claimsOf(admin).iat, 3600, '--ttl 1h: expires an hour after it was issued')
  const onB = await connect(`${B!.ws}/ws/admin?token=${admin}`)
  t.teardown(() => onB.close())
  t.match(onB.frames[0], { type: 'welcome', payload: { userId: 'ops-1' } }, 'node B welcomes the admin')
  t.equal((await onB.request('get_stats')).payload.global.servers, 2, 'and it sees the cluster')

  // npm exec, a user token with a session: on node A, an event published on B reaches it.
  const user = tokenOf(t, await npmExec(['herald', '--', 'token', '--sub', 'u1', '--roles', 'user', '--sid', 's1', '--ttl', '15m'], clusterEnv))
  t.match(claimsOf(user), { sub: 'u1', sid: 's1', roles: ['user'] })
  t.equal(claimsOf(user).exp - claimsOf(user).iat, 900, '--ttl 15m')
  const onA = await connect(`${A!.ws}/ws/events?token=${user}`)
  t.teardown(() => onA.close())
  t.match(onA.frames[0], { type: 'welcome', payload: { userId: 'u1', sessionId: 's1' } })
  await onA.subscribe(['authentication.*'])
  const res = await B!.api('/api/events', { key: API_KEY, body: { type: 'authentication.login.success', userId: 'u1', data: {} } })
  t.equal(res.status, 202)
  await onA.next((f) => f.type === 'event' && f.payload.id === res.body.id)

  // A user token is not an admin token; a token signed for another secret is refused.
  t.equal((await refusal(`${A!.ws}/ws/admin?token=${user}`)).status, 403, 'role user does not open /ws/admin')
  const other = tokenOf(t, await cli(['token', '--sub', 'ops-1', '--roles', 'admin'], { JWT_SECRET: 'another-secret-of-at-least-32-characters' }))
  t.equal((await refusal(`${A!.ws}/ws/admin?token=${other}`)).status, 401, 'the command signs with the configured secret, not any')
})

t.test('JWT_ISSUER and JWT_AUDIENCE: the token carries what the node requires', { timeout: 60_000 }, async (t) => {
  const env = { NODE_ENV: 'production', JWT_SECRET: SECRET, API_KEYS: API_KEY, JWT_ISSUER: 'https://idp.example,https://other.example', JWT_AUDIENCE: 'herald' }
  const node = await startNode(env, { cleanEnv: true })
  t.teardown(() => node.stop())
  const byDefault = tokenOf(t, await cli(['token', '--sub', 'u1', '--roles', 'admin'], env))
  t.match(claimsOf(byDefault), { iss: 'https://idp.example', aud: 'herald' }, 'the first of each list')
  t.equal(claimsOf(byDefault).exp - claimsOf(byDefault).iat, 3600, 'an hour unless --ttl says otherwise')
  t.equal((await connect(`${node.ws}/ws/admin?token=${byDefault}`)).frames[0]!.type, 'welcome')
  const chosen = tokenOf(t, await cli(['token', '--sub', 'u1', '--iss', 'https://other.example', '--aud', 'herald'], env))
  t.match(claimsOf(chosen), { iss: 'https://other.example', aud: 'herald', roles: ['user'] }, '--iss picks another accepted issuer; roles default to user')
  const c = await connect(`${node.ws}/ws/events?token=${chosen}`)
  t.equal(c.frames[0]!.type, 'welcome')
  await c.close()

  // Without the issuer the node requires, the token would be refused: the command says so instead.
  const wrong = await cli(['token', '--sub', 'u1', '--iss', 'https://evil.example'], env)
  t.equal(wrong.code, 64)
  t.equal(wrong.stdout, '')
  t.match(wrong.stderr, /^herald token: --iss "https:\/\/evil\.example" is not accepted by nodes with JWT_ISSUER=https:\/\/idp\.example,https:\/\/other\.example[^\n]*\n$/)
})

t.test('bad arguments: one line on stderr, nothing on stdout, exit 64', { timeout: 60_000 }, async (t) => {
  const env = { JWT_SECRET: SECRET }
  const cases: Array<[string[], RegExp]> = [
    [['token'], /--sub is required/],
    [['token', '--roles', 'admin'], /--sub is required/],
    [['token', '--sub'], /--sub needs a value/],
    [['token', '--sub', '--roles', 'admin'], /--sub needs a value/],
    [['token', '--sub', ''], /--sub must be 1-256 characters without control characters or unpaired surrogates \(got ""\)/],
    [['token', '--sub', 'a\tb'], /--sub must be 1-256 characters without control characters/],
    [['token', '--sub', 'x'.repeat(257)], /--sub must be 1-256 characters .*\(got "x{40}…"\)$/],
    [['token', '--sub', 'u1', '--sid', 'a\nb'], /--sid must be 1-256 characters without control characters/],
    [['token', '--sub', 'u1', '--ttl', '1'], /--ttl must be a positive whole number of s, m, h or d .*\(got "1"\)/],
    [['token', '--sub', 'u1', '--ttl', '1w'], /--ttl must be .*\(got "1w"\)/],
    [['token', '--sub', 'u1', '--ttl', '0s'], /--ttl must be .*\(got "0s"\)/],
    [['token', '--sub', 'u1', '--ttl', '-1h'], /--ttl needs a value/],
    [['token', '--sub', 'u1', '--ttl', '1.5h'], /--ttl must be .*\(got "1\.5h"\)/],
    [['token', '--sub', 'u1', '--ttl', '366d'], /at most 365d \(got "366d"\)/],
    [['token', '--sub', 'u1', '--ttl', '9'.repeat(30) + 's'], /--ttl must be/],
    [['token', '--sub', 'u1', '--roles', ''], /--roles must be up to 64 comma-separated roles/],
    [['token', '--sub', 'u1', '--roles', 'admin,,user'], /--roles must be .*\(got "admin,,user"\)/],
    [['token', '--sub', 'u1', '--roles', 'r'.repeat(65)], /--roles must be/],
    [['token', '--sub', 'u1', '--roles', Array.from({ length: 65 }, (_, i) => `r${i}`).join(',')], /--roles must be up to 64/],
    [['token', '--sub', 'u1', '--admin'], /unknown option --admin/],
    [['token', '--sub', 'u1', 'admin'], /unexpected argument "admin"/],
    [['token', '--help=yes'], /--help takes no value/],
    [['tokens', '--sub', 'u1'], /^herald: unknown command "tokens"/],
    [[], /^herald: a command is required/],
    [['--bogus'], /^herald: unknown option --bogus/],
  ]
  for (const [args, why] of cases) {
    const r = await cli(args, env)
    const label = JSON.stringify(args).slice(0, 80)
    t.equal(r.code, 64, `${label}: exit 64`)
    t.equal(r.stdout, '', `${label}: nothing on stdout`)
    t.match(r.stderr, /^herald( token)?: [^\n]+\n$/, `${label}: one line on stderr`)
    t.match(r.stderr.trim(), why, `${label}: says what is wrong`)
  }
})

t.test('a configuration without a signing key: the command refuses in one line, exit 78', { timeout: 60_000 }, async (t) => {
  const publicKey = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['JWT_PUBLIC_KEY only', { NODE_ENV: 'production', JWT_PUBLIC_KEY: publicKey }, /no signing key: this configuration verifies tokens with JWT_PUBLIC_KEY only, so tokens come from your identity provider/],
    ['JWKS_URL only', { NODE_ENV: 'production', JWKS_URL: 'https://idp.example/.well-known/jwks.json' }, /verifies tokens with JWKS_URL only/],
    ['both', { JWT_PUBLIC_KEY: publicKey, JWKS_URL: 'https://idp.example/jwks' }, /verifies tokens with JWT_PUBLIC_KEY and JWKS_URL only/],
    ['development, no key at all', {}, /no JWT_SECRET is set: a development node generates its key at boot and prints tokens in its banner/],
    ['production, no key at all', { NODE_ENV: 'production' }, /invalid configuration: JWT_SECRET is required when NODE_ENV=production/],
    ['a secret too short for the node', { JWT_SECRET: 'short' }, /invalid configuration: JWT_SECRET must NOT have fewer than 32 characters \(got a value of 5 characters\)/],
    ['another variable the node refuses', { JWT_SECRET: SECRET, PORT: 'abc' }, /invalid configuration: PORT must be integer/],
  ]
  for (const [what, env, why] of cases) {
    const r = await cli(['token', '--sub', 'u1', '--roles', 'admin'], env)
    t.equal(r.code, 78, `${what}: exit 78`)
    t.equal(r.stdout, '', `${what}: no token`)
    t.match(r.stderr, /^herald token: [^\n]+\n$/, `${what}: one line`)
    t.match(r.stderr, why, `${what}: says why`)
  }
  // The same refusal through the package bin.
  const r = await npx(['herald', 'token', '--sub', 'u1'], { NODE_ENV: 'production', JWT_PUBLIC_KEY: publicKey })
  t.not(r.code, 0, 'npx passes the failure on')
  t.equal(r.stdout, '')
  t.match(r.stderr, /^herald token: no signing key: [^\n]+\n$/)
})

t.test('a token that outlives REVOCATION_TTL: printed, with one warning on stderr', { timeout: 30_000 }, async (t) => {
  const r = await cli(['token', '--sub', 'u1', '--ttl', '2d'], { JWT_SECRET: SECRET })
  t.equal(r.code, 0)
  t.match(r.stdout, /^[\w-]+\.[\w-]+\.[\w-]+\n$/, 'stdout holds the token alone')
  t.equal(claimsOf(r.stdout.trim()).exp - claimsOf(r.stdout.trim()).iat, 2 * 86400)
  t.match(r.stderr, /^herald token: warning: the token lives longer than REVOCATION_TTL \(86400000 ms\)[^\n]*\n$/)
  const quiet = await cli(['token', '--sub', 'u1', '--ttl', '2d'], { JWT_SECRET: SECRET, REVOCATION_TTL: String(3 * 86_400_000) })
  t.equal(quiet.stderr, '', 'no warning when revocations outlive the token')
})

t.test('npx herald --help and herald token --help: usage on stdout, exit 0', { timeout: 60_000 }, async (t) => {
  const top = await npx(['herald', '--help'], {})
  t.equal(top.code, 0)
  t.match(top.stdout, /^Usage: herald <command>/)
  t.match(top.stdout, /token +print an access token signed with the configured JWT_SECRET/)
  const token = await cli(['token', '--help'], {})
  t.equal(token.code, 0)
  t.equal(token.stderr, '')
  t.match(token.stdout, /^Usage: herald token --sub <user>/)
  for (const flag of ['--sub', '--roles', '--ttl', '--sid', '--iss', '--aud']) t.match(token.stdout, new RegExp(`\\n  ${flag} <`), `documents ${flag}`)
  const version = await cli(['--version'], {})
  t.equal(version.stdout.trim(), JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')).version)
})
