import { spawn } from 'node:child_process'
import { generateKeyPairSync } from 'node:crypto'
import net from 'node:net'
import t from 'tap'
import { ConfigError, loadConfig, type Config } from '../../src/config/index.js'
import { EnvSchema } from '../../src/config/schema.js'
import { MAIN } from '../helpers/node.js'
import { reaped } from '../helpers/children.js'

const SECRET = 'a-config-test-secret-of-at-least-32-chars'

/** loadConfig must throw a ConfigError; returns it for further checks. */
type Test = Parameters<Parameters<typeof t.test>[0]>[0]

function refusal (t: Test, env: Record<string, string | undefined>, variable: string): ConfigError {
  let caught: unknown
  try {
    loadConfig(env)
  } catch (err) {
    caught = err
  }
  if (!(caught instanceof ConfigError)) {
    t.fail(`${JSON.stringify(env).slice(0, 100)} is refused with a ConfigError (got ${String(caught)})`)
    return new ConfigError(variable, '(was not refused)')
  }
  const err = caught
  t.equal(err.variable, variable, `names ${variable}`)
  t.ok(err.message.startsWith(variable + ' '), `message starts with ${variable}: ${err.message}`)
  t.notMatch(err.message, /\n/, 'the message is one line')
  return err
}

t.test('defaults with an empty environment (development)', async (t) => {
  const c: Config = loadConfig({})
  t.equal(c.env, 'development')
  t.equal(c.port, 3000)
  t.equal(c.host, '127.0.0.1', 'development binds loopback')
  t.equal(c.redis, null, 'no Redis: in-process backend')
  t.equal(c.keyPrefix, 'herald:')
  t.match(c.serverId, /^[A-Za-z0-9._-]+$/)
  t.equal(c.jwt.generated, true, 'dev key material generated')
  t.type(c.jwt.secret, 'string')
  t.ok(c.jwt.secret!.length >= 32, 'generated secret is long enough')
  t.equal(c.jwt.publicKey, undefined)
  t.equal(c.jwt.jwksUrl, undefined)
  t.equal(c.jwt.issuer, undefined)
  t.equal(c.jwt.audience, undefined)
  t.equal(c.jwt.clockToleranceMs, 5000)
  t.equal(c.apiKeysGenerated, true)
  t.equal(c.apiKeys.length, 1)
  t.ok(c.apiKeys[0]!.length >= 16)
  t.equal(c.allowedOrigins, null, 'every origin allowed in development')
  t.same(c.trustedProxies, [])
  t.same(c.limits, {
    connectionsPerIp: 50,
    connectionsPerUser: 10,
    userConnectionPolicy: 'refuse',
    messagesPerMinute: 60,
    subscriptions: 100,
    messageBytes: 10240,
    publishBytes: 102400,
    sendBufferBytes: 1024 * 1024,
    nodeConnections: 10000,
    nodeHandshakes: 256,
  })
  t.equal(c.heartbeatIntervalMs, 30000)
  t.equal(c.authExpiryWarningMs, 60000)
  t.equal(c.nodeTtlMs, 15000)
  t.equal(c.adminMetricsIntervalMs, 5000)
  t.equal(c.drainTimeoutMs, 10000)
  t.equal(c.logLevel, 'info')

  const again = loadConfig({})
  t.not(again.jwt.secret, c.jwt.secret, 'a fresh secret per boot')
  t.not(again.apiKeys[0], c.apiKeys[0], 'a fresh API key per boot')
})

t.test('values are read and coerced', async (t) => {
  const c = loadConfig({
    NODE_ENV: 'test',
    PORT: '8080',
    HOST: '0.0.0.0',
    SERVER_ID: 'node-a',
    REDIS_URL: 'rediss://user:pw@redis.internal:6380/2',
    JWT_SECRET: SECRET,
    JWT_ISSUER: 'https://issuer.example, https://other.example',
    JWT_AUDIENCE: 'herald',
    JWT_CLOCK_TOLERANCE: '0',
    API_KEYS: 'key-aaaaaaaaaaaaaaaa,key-bbbbbbbbbbbbbbbb',
    ALLOWED_ORIGINS: 'https://app.example.com, https://*.example.org:8443',
    TRUSTED_PROXIES: '10.0.0.0/8,::1, 192.168.1.1',
    MAX_CONNECTIONS_PER_IP: '7',
    MAX_CONNECTIONS_PER_USER: '3',
    USER_CONNECTION_POLICY: 'evict-oldest',
    MAX_MESSAGES_PER_MINUTE: '120',
    MAX_SUBSCRIPTIONS: '5',
    MAX_MESSAGE_BYTES: '2048',
    WEBSOCKET_MAX_CONNECTIONS: '99',
    WEBSOCKET_MAX_HANDSHAKES: '7',
    WEBSOCKET_HEARTBEAT_INTERVAL: '1000',
    AUTH_EXPIRY_WARNING: '2000',
    NODE_TTL: '3000',
    ADMIN_METRICS_INTERVAL: '400',
    DRAIN_TIMEOUT: '0',
    LOG_LEVEL: 'debug',
  })
  t.equal(c.env, 'test')
  t.equal(c.port, 8080)
  t.equal(c.host, '0.0.0.0')
  t.equal(c.serverId, 'node-a')
  t.same(c.redis, { url: 'rediss://user:pw@redis.internal:6380/2' })
  t.equal(c.jwt.secret, SECRET)
  t.equal(c.jwt.generated, false)
  t.same(c.jwt.issuer, ['https://issuer.example', 'https://other.example'])
  t.same(c.jwt.audience, ['herald'])
  t.equal(c.jwt.clockToleranceMs, 0)
  t.same(c.apiKeys, ['key-aaaaaaaaaaaaaaaa', 'key-bbbbbbbbbbbbbbbb'])
  t.equal(c.apiKeysGenerated, false)
  t.same(c.allowedOrigins, ['https://app.example.com', 'https://*.example.org:8443'])
  t.same(c.trustedProxies, ['10.0.0.0/8', '::1', '192.168.1.1'])
  t.same(c.limits, {
    connectionsPerIp: 7,
    connectionsPerUser: 3,
    userConnectionPolicy: 'evict-oldest',
    messagesPerMinute: 120,
    subscriptions: 5,
    messageBytes: 2048,
    publishBytes: 102400,
    sendBufferBytes: 1024 * 1024,
    nodeConnections: 99,
    nodeHandshakes: 7,
  })
  t.equal(c.heartbeatIntervalMs, 1000)
  t.equal(c.authExpiryWarningMs, 2000)
  t.equal(c.nodeTtlMs, 3000)
  t.equal(c.adminMetricsIntervalMs, 400)
  t.equal(c.drainTimeoutMs, 0)
  t.equal(c.logLevel, 'debug')

  const cluster = loadConfig({ REDIS_CLUSTER_NODES: 'r1:7000,10.0.0.2:7001' })
  t.same(cluster.redis, { clusterNodes: [{ host: 'r1', port: 7000 }, { host: '10.0.0.2', port: 7001 }] })
})

t.test('production', async (t) => {
  const c = loadConfig({ NODE_ENV: 'production', JWT_SECRET: SECRET })
  t.equal(c.host, '0.0.0.0', 'production binds every interface by default')
  t.same(c.allowedOrigins, [], 'production allows no browser origin unless configured')
  t.same(c.apiKeys, [], 'no API key is invented in production')
  t.equal(c.apiKeysGenerated, false)
  t.equal(c.jwt.generated, false)
  t.equal(c.jwt.secret, SECRET)

  const err = refusal(t, { NODE_ENV: 'production' }, 'JWT_SECRET')
  t.match(err.message, /production/)
  refusal(t, { NODE_ENV: 'production', JWT_SECRET: '', JWT_PUBLIC_KEY: '', JWKS_URL: '' }, 'JWT_SECRET')

  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const pem = publicKey.export({ type: 'spki', format: 'pem' }).toString()
  const withKey = loadConfig({ NODE_ENV: 'production', JWT_PUBLIC_KEY: pem })
  t.equal(withKey.jwt.secret, undefined, 'a public key alone: no HS256 secret, none generated')
  t.equal(withKey.jwt.generated, false)
  const withJwks = loadConfig({ NODE_ENV: 'production', JWKS_URL: 'https://idp.example/.well-known/jwks.json' })
  t.equal(withJwks.jwt.jwksUrl, 'https://idp.example/.well-known/jwks.json')
  t.equal(withJwks.jwt.secret, undefined)
})

t.test('empty strings count as unset', async (t) => {
  const c = loadConfig({
    PORT: '', HOST: '', NODE_ENV: '', LOG_LEVEL: '', JWT_SECRET: '', API_KEYS: '', REDIS_URL: '',
    REDIS_CLUSTER_NODES: '', ALLOWED_ORIGINS: '', TRUSTED_PROXIES: '', MAX_SUBSCRIPTIONS: '', USER_CONNECTION_POLICY: '',
    JWT_PUBLIC_KEY: '', JWKS_URL: '', JWT_ISSUER: '', JWT_AUDIENCE: '', SERVER_ID: '',
  })
  t.equal(c.port, 3000)
  t.equal(c.host, '127.0.0.1')
  t.equal(c.env, 'development')
  t.equal(c.logLevel, 'info')
  t.equal(c.jwt.generated, true)
  t.equal(c.apiKeysGenerated, true)
  t.equal(c.redis, null)
  t.equal(c.allowedOrigins, null)
  t.equal(c.jwt.issuer, undefined)
  t.equal(c.limits.subscriptions, 100)
  t.equal(c.limits.userConnectionPolicy, 'refuse')
  // undefined values are also unset
  t.equal(loadConfig({ PORT: undefined }).port, 3000)
})

t.test('an explicit source is the whole environment: process.env does not leak in', async (t) => {
  const saved = { LOG_LEVEL: process.env.LOG_LEVEL, PORT: process.env.PORT, JWT_SECRET: process.env.JWT_SECRET, NODE_ENV: process.env.NODE_ENV }
  t.teardown(() => {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  })
  process.env.LOG_LEVEL = 'not-a-level'
  process.env.PORT = 'not-a-port'
  process.env.JWT_SECRET = ''
  const c = loadConfig({ JWT_SECRET: SECRET })
  t.equal(c.logLevel, 'info')
  t.equal(c.port, 3000)
  t.equal(c.jwt.secret, SECRET)
  // and the default source is process.env itself, with empty strings unset
  process.env.LOG_LEVEL = 'warn'
  process.env.PORT = '4321'
  process.env.NODE_ENV = 'test'
  const fromEnv = loadConfig()
  t.equal(fromEnv.logLevel, 'warn')
  t.equal(fromEnv.port, 4321)
  t.equal(fromEnv.jwt.generated, process.env.JWT_PUBLIC_KEY === undefined && process.env.JWKS_URL === undefined)
})

t.test('enumerations', async (t) => {
  refusal(t, { PORT: 'abc' }, 'PORT')
  const lvl = refusal(t, { LOG_LEVEL: 'loud' }, 'LOG_LEVEL')
  t.match(lvl.message, /info/, 'lists the allowed values')
  t.match(lvl.message, /"loud"/, 'shows the bad value')
  refusal(t, { LOG_LEVEL: 'INFO' }, 'LOG_LEVEL')
  const env = refusal(t, { NODE_ENV: 'prod' }, 'NODE_ENV')
  t.match(env.message, /production/)
  const pol = refusal(t, { USER_CONNECTION_POLICY: 'kick' }, 'USER_CONNECTION_POLICY')
  t.match(pol.message, /refuse/)
  t.match(pol.message, /evict-oldest/)
  t.equal(loadConfig({ USER_CONNECTION_POLICY: 'evict-oldest' }).limits.userConnectionPolicy, 'evict-oldest')
  for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) {
    t.equal(loadConfig({ LOG_LEVEL: level }).logLevel, level)
  }
})

t.test('PORT', async (t) => {
  for (const bad of ['abc', '-1', '65536', '3.5', '80a', 'true']) refusal(t, { PORT: bad }, 'PORT')
  t.equal(loadConfig({ PORT: '0' }).port, 0)
  t.equal(loadConfig({ PORT: '65535' }).port, 65535)
})

t.test('every integer variable enforces its bounds and names itself', async (t) => {
  const props = EnvSchema.properties as Record<string, { type?: string, minimum?: number, maximum?: number }>
  const ints = Object.entries(props).filter(([, s]) => s.type === 'integer')
  const names = ints.map(([n]) => n)
  for (const expected of ['MAX_CONNECTIONS_PER_IP', 'MAX_CONNECTIONS_PER_USER', 'MAX_MESSAGES_PER_MINUTE', 'MAX_SUBSCRIPTIONS', 'MAX_MESSAGE_BYTES', 'WEBSOCKET_MAX_CONNECTIONS', 'WEBSOCKET_HEARTBEAT_INTERVAL', 'AUTH_EXPIRY_WARNING', 'NODE_TTL', 'ADMIN_METRICS_INTERVAL', 'DRAIN_TIMEOUT', 'PORT']) {
    t.ok(names.includes(expected), `${expected} is a bounded integer`)
  }
  for (const [name, s] of ints) {
    t.type(s.minimum, 'number', `${name} has a minimum`)
    t.type(s.maximum, 'number', `${name} has a maximum`)
    t.doesNotThrow(() => loadConfig({ [name]: String(s.minimum) }), `${name}=${s.minimum} accepted`)
    t.doesNotThrow(() => loadConfig({ [name]: String(s.maximum) }), `${name}=${s.maximum} accepted`)
    refusal(t, { [name]: String(s.minimum! - 1) }, name)
    refusal(t, { [name]: String(s.maximum! + 1) }, name)
    refusal(t, { [name]: 'lots' }, name)
    refusal(t, { [name]: '1.5' }, name)
  }
  // a concrete look at one of them
  const e = refusal(t, { MAX_SUBSCRIPTIONS: '0' }, 'MAX_SUBSCRIPTIONS')
  t.match(e.message, /1/, 'says the bound')
  t.match(e.message, /"0"/, 'shows the value')
  t.equal(loadConfig({ MAX_MESSAGE_BYTES: '128' }).limits.messageBytes, 128)
})

t.test('HISTORY_SIZE and HISTORY_TTL: history on by default; either at 0 turns it off', async (t) => {
  t.same(loadConfig({}).history, { size: 1000, ttlMs: 300_000 }, 'on by default: 1000 messages a stream, for 5 minutes')
  t.same(loadConfig({ HISTORY_SIZE: '50', HISTORY_TTL: '60000' }).history, { size: 50, ttlMs: 60_000 })
  t.equal(loadConfig({ HISTORY_SIZE: '0' }).history, null, 'HISTORY_SIZE=0: off')
  t.equal(loadConfig({ HISTORY_TTL: '0' }).history, null, 'HISTORY_TTL=0: off')
  refusal(t, { HISTORY_TTL: String(31 * 86_400_000) }, 'HISTORY_TTL')
})

t.test('JWT_SECRET and API_KEYS', async (t) => {
  refusal(t, { JWT_SECRET: 'x'.repeat(31) }, 'JWT_SECRET')
  t.equal(loadConfig({ JWT_SECRET: 'x'.repeat(32) }).jwt.secret, 'x'.repeat(32))
  refusal(t, { API_KEYS: 'short' }, 'API_KEYS')
  refusal(t, { API_KEYS: 'a-long-enough-key-1234,short' }, 'API_KEYS')
  refusal(t, { API_KEYS: 'a-long-enough key-1234' }, 'API_KEYS')
  t.same(loadConfig({ API_KEYS: 'k'.repeat(16) }).apiKeys, ['k'.repeat(16)])
})

t.test('ALLOWED_ORIGINS and TRUSTED_PROXIES entries', async (t) => {
  for (const bad of ['ftp://x.example', 'example.com', 'https://', 'https://app.example.com/', 'https://app.example.com/path', '*', 'https://*', 'https://app.*.com', 'https://x.com:99999', 'https://1.2.3.999', 'https://a.example, nope']) {
    const e = refusal(t, { ALLOWED_ORIGINS: bad }, 'ALLOWED_ORIGINS')
    t.notMatch(e.message, /^ALLOWED_ORIGINS.*\n/, 'one line')
  }
  t.same(loadConfig({ ALLOWED_ORIGINS: 'http://localhost:3000,https://*.example.com' }).allowedOrigins, ['http://localhost:3000', 'https://*.example.com'])

  for (const bad of ['hello', 'abc', '300.1.1.1', '10.0.0.0/33', '::1/129', '1.2.3', '10.0.0.1/8/8', '10.0.0.1,proxy.internal']) {
    refusal(t, { TRUSTED_PROXIES: bad }, 'TRUSTED_PROXIES')
  }
  t.same(loadConfig({ TRUSTED_PROXIES: '127.0.0.1,10.0.0.0/8,fd00::/8,::1' }).trustedProxies, ['127.0.0.1', '10.0.0.0/8', 'fd00::/8', '::1'])
})

t.test('Redis targets', async (t) => {
  for (const bad of ['http://redis:6379', 'redis:6379', 'localhost:6379', 'tcp://redis']) refusal(t, { REDIS_URL: bad }, 'REDIS_URL')
  const both = refusal(t, { REDIS_URL: 'redis://127.0.0.1:1', REDIS_CLUSTER_NODES: 'a:7000' }, 'REDIS_CLUSTER_NODES')
  t.match(both.message, /REDIS_URL/, 'says which other variable conflicts')
  for (const bad of ['a', 'a:', 'a:7000,', 'a:7000,b', 'a:port', 'a:99999']) refusal(t, { REDIS_CLUSTER_NODES: bad }, 'REDIS_CLUSTER_NODES')
  t.same(loadConfig({ REDIS_URL: 'redis://127.0.0.1:1/0' }).redis, { url: 'redis://127.0.0.1:1/0' })
})

t.test('JWT_PUBLIC_KEY', async (t) => {
  const e = refusal(t, { JWT_PUBLIC_KEY: 'not a pem at all' }, 'JWT_PUBLIC_KEY')
  t.match(e.message, /PEM/)
  // PEM armour around garbage is not a key; it must stop the boot as configuration, not crash later
  refusal(t, { JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\nzzzz\n-----END PUBLIC KEY-----' }, 'JWT_PUBLIC_KEY')

  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const rsaPem = rsa.publicKey.export({ type: 'spki', format: 'pem' }).toString()
  t.equal(loadConfig({ JWT_PUBLIC_KEY: rsaPem }).jwt.publicKey, rsaPem)
  // env files carry PEMs on one line with literal \n
  const oneLine = rsaPem.trim().split('\n').join('\\n')
  t.equal(loadConfig({ JWT_PUBLIC_KEY: oneLine }).jwt.publicKey, rsaPem.trim())
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
  const ecPem = ec.publicKey.export({ type: 'spki', format: 'pem' }).toString()
  t.equal(loadConfig({ JWT_PUBLIC_KEY: ecPem }).jwt.publicKey, ecPem)

  // a private key must never sit in a public-key variable, and it is never echoed
  const priv = rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString()
  const pe = refusal(t, { JWT_PUBLIC_KEY: priv }, 'JWT_PUBLIC_KEY')
  t.notOk(pe.message.includes(priv.split('\n')[1]!), 'key material not echoed')
  // keys the verifier cannot use (Ed25519, P-384) stop the boot here
  const ed = generateKeyPairSync('ed25519').publicKey.export({ type: 'spki', format: 'pem' }).toString()
  refusal(t, { JWT_PUBLIC_KEY: ed }, 'JWT_PUBLIC_KEY')
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' }).publicKey.export({ type: 'spki', format: 'pem' }).toString()
  refusal(t, { JWT_PUBLIC_KEY: p384 }, 'JWT_PUBLIC_KEY')
})

t.test('other shapes', async (t) => {
  refusal(t, { SERVER_ID: 'has space' }, 'SERVER_ID')
  refusal(t, { REDIS_KEY_PREFIX: 'bad prefix' }, 'REDIS_KEY_PREFIX')
  refusal(t, { JWKS_URL: 'ftp://idp/jwks' }, 'JWKS_URL')
})

t.test('refusals say what a value must look like in words, never as a regex', async (t) => {
  const bad: Record<string, [string, RegExp]> = {
    SERVER_ID: ['has space', /letters, digits, dots, underscores or hyphens/],
    REDIS_URL: ['tcp://redis:6379', /redis:\/\/ or rediss:\/\/ URL/],
    REDIS_CLUSTER_NODES: ['a:7000,b', /comma-separated host:port pairs/],
    REDIS_SENTINELS: ['sentinel-1', /comma-separated host:port pairs/],
    REDIS_KEY_PREFIX: ['bad prefix', /letters, digits, colons, dots, underscores or hyphens/],
    JWKS_URL: ['ftp://idp/jwks', /http:\/\/ or https:\/\/ URL/],
    API_KEYS: ['short', /at least 16 characters/],
  }
  // Every variable the schema holds to a pattern is in the table: a new pattern needs its words.
  const patterned = Object.entries(EnvSchema.properties).filter(([, s]) => typeof (s as { pattern?: unknown }).pattern === 'string').map(([k]) => k)
  t.same(patterned.sort(), Object.keys(bad).sort(), 'every patterned variable is covered')
  for (const [variable, [value, says]] of Object.entries(bad)) {
    const e = refusal(t, { [variable]: value }, variable)
    t.match(e.message, says, `${variable}: ${e.message}`)
    t.notMatch(e.message, /pattern|\^|\$"|\\[sd]|\[\^/, `${variable}: no regex in the message`)
  }
})

t.test('a REDIS_URL ioredis cannot parse stops the boot here, with one line', async (t) => {
  for (const [value, says] of [
    ['redis://127.0.0.1:notaport', /not a valid URL/],
    ['redis://127.0.0.1:70000', /not a valid URL/],
    ['redis://', /names no host/],
    ['redis://127.0.0.1:6379/zero', /database number/],
  ] as const) {
    const e = refusal(t, { REDIS_URL: value }, 'REDIS_URL')
    t.match(e.message, says, e.message)
    t.match(e.message, /redis:\/\/\[\[user\]:password@\]host\[:port\]\[\/db\]/, 'and shows the expected form')
  }
  const pw = 'hunter2RedisPassword'
  const e = refusal(t, { REDIS_URL: `redis://default:${pw}@redis.internal:notaport` }, 'REDIS_URL')
  t.notOk(e.message.includes(pw), `the password is not echoed: ${e.message}`)
  for (const ok of ['redis://127.0.0.1:6379', 'rediss://user:pw@redis.internal:6380/2', 'redis://[::1]:6379/', 'redis://redis']) {
    t.same(loadConfig({ REDIS_URL: ok }).redis, { url: ok }, `${ok} is accepted`)
  }
})

t.test('secrets are never echoed', async (t) => {
  const secret = 'S3cr3tValueXyz'
  const e1 = refusal(t, { JWT_SECRET: secret }, 'JWT_SECRET')
  t.notOk(e1.message.includes(secret), e1.message)
  t.match(e1.message, /14 characters/, 'the length is shown instead')

  const key = 'leakyKey1234567890abc'
  const e2 = refusal(t, { API_KEYS: `${key},tiny` }, 'API_KEYS')
  t.notOk(e2.message.includes(key), e2.message)
  t.notOk(e2.message.includes('tiny'), e2.message)
  const e3 = refusal(t, { API_KEYS: 'onlyTinyKey' }, 'API_KEYS')
  t.notOk(e3.message.includes('onlyTinyKey'), e3.message)

  const pw = 'hunter2RedisPassword'
  const e4 = refusal(t, { REDIS_URL: `http://default:${pw}@redis.internal:6379` }, 'REDIS_URL')
  t.notOk(e4.message.includes(pw), `a Redis password is not echoed: ${e4.message}`)
  const e5 = refusal(t, { REDIS_URL: `http://:${pw}@redis.internal:6379` }, 'REDIS_URL')
  t.notOk(e5.message.includes(pw), e5.message)

  const e6 = refusal(t, { JWT_PUBLIC_KEY: 'privateish-material-123' }, 'JWT_PUBLIC_KEY')
  t.notOk(e6.message.includes('privateish-material-123'), e6.message)

  // a good secret does not leak through an unrelated error either
  const good = 'g'.repeat(40)
  const e7 = refusal(t, { JWT_SECRET: good, PORT: 'abc' }, 'PORT')
  t.notOk(e7.message.includes(good))
  const e8 = refusal(t, { NODE_ENV: 'production', API_KEYS: 'api-key-that-is-long-enough' }, 'JWT_SECRET')
  t.notOk(e8.message.includes('api-key-that-is-long-enough'))
})

t.test('the real entry stops with one line naming the variable', async (t) => {
  const run = async (env: Record<string, string>): Promise<{ code: number | null, signal: NodeJS.Signals | null, stdout: string, stderr: string }> =>
    await new Promise((resolve, reject) => {
      // A minimal environment: nothing inherited that could supply key material.
      const proc = reaped(spawn(process.execPath, [MAIN], { env: { PATH: process.env.PATH ?? '', HOST: '127.0.0.1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] }))
      let stdout = ''
      let stderr = ''
      proc.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
      proc.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
      const timer = setTimeout(() => {
        proc.kill('SIGKILL')
        reject(new Error(`node dist/main.js did not exit within 15 s; stdout: ${stdout} stderr: ${stderr}`))
      }, 15_000)
      t.teardown(() => { clearTimeout(timer); if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL') })
      proc.once('error', reject)
      proc.once('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, stdout, stderr }) })
    })

  // A port this test holds, so the node finds it in use.
  const holder = net.createServer()
  await new Promise<void>((resolve) => holder.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { holder.close() })
  const busy = String((holder.address() as net.AddressInfo).port)

  const cases: Array<{ env: Record<string, string>, variable: string, says?: RegExp, exitCode?: number }> = [
    // Both used to print a stack: ioredis's URL parser, then Fastify's listen error as JSON.
    { env: { PORT: '0', REDIS_URL: 'redis://127.0.0.1:notaport' }, variable: 'REDIS_URL', says: /not a valid URL/, exitCode: 78 },
    { env: { PORT: busy, JWT_SECRET: SECRET, API_KEYS: 'a-config-test-api-key' }, variable: 'PORT', says: new RegExp(`PORT ${busy} is already in use`), exitCode: 78 },
    { env: { PORT: '0', HOST: '192.0.2.123', JWT_SECRET: SECRET, API_KEYS: 'a-config-test-api-key' }, variable: 'HOST', says: /not an address of this machine/, exitCode: 78 },
    { env: { PORT: 'abc' }, variable: 'PORT', says: /"abc"/ },
    { env: { NODE_ENV: 'production', PORT: '0' }, variable: 'JWT_SECRET', says: /required when NODE_ENV=production/ },
    // empty strings in the real environment count as unset too
    { env: { NODE_ENV: 'production', PORT: '0', JWT_SECRET: '', JWT_PUBLIC_KEY: '', JWKS_URL: '' }, variable: 'JWT_SECRET', says: /required when NODE_ENV=production/ },
    { env: { PORT: 'abc', JWT_SECRET: '', LOG_LEVEL: '' }, variable: 'PORT' },
    { env: { PORT: '0', TRUSTED_PROXIES: '300.1.1.1' }, variable: 'TRUSTED_PROXIES' },
    { env: { PORT: '0', ALLOWED_ORIGINS: 'https://x.example:99999' }, variable: 'ALLOWED_ORIGINS' },
    { env: { PORT: '0', JWT_PUBLIC_KEY: '-----BEGIN PUBLIC KEY-----\\nzzzz\\n-----END PUBLIC KEY-----' }, variable: 'JWT_PUBLIC_KEY' },
  ]
  for (const { env, variable, says, exitCode } of cases) {
    const r = await run(env)
    t.equal(r.code, exitCode ?? 78, `${JSON.stringify(env).slice(0, 80)}: exit code ${exitCode ?? 78} (EX_CONFIG)`)
    t.equal(r.signal, null, `${JSON.stringify(env)}: exited on its own`)
    t.not(r.code, 0, `${JSON.stringify(env)}: non-zero exit (${r.code})`)
    t.type(r.code, 'number')
    const lines = r.stderr.split('\n').filter((l) => l.length > 0)
    t.equal(lines.length, 1, `${JSON.stringify(env)}: exactly one stderr line, got ${JSON.stringify(r.stderr)}`)
    t.match(lines[0], new RegExp(`\\b${variable}\\b`), `names ${variable}: ${lines[0]}`)
    if (says !== undefined) t.match(lines[0], says)
    t.notMatch(r.stderr, /^\s+at /m, 'no stack trace')
    t.notMatch(r.stdout, /Server listening/, 'never listened')
  }
})

t.test('client publish: MAX_PUBLISH_BYTES, PUBLISH_SCHEMAS, PUBLISH_KEY_TTL, VISITOR_TOKEN_TTL', async (t) => {
  const c = loadConfig({ MAX_PUBLISH_BYTES: '4096', PUBLISH_KEY_TTL: '60000', VISITOR_TOKEN_TTL: '600000', PUBLISH_SCHEMAS: '{"agent.heartbeat":{"type":"object","required":["status"]}}' })
  t.equal(c.limits.publishBytes, 4096)
  t.same(c.publish, { schemas: { 'agent.heartbeat': { type: 'object', required: ['status'] } }, keyTtlMs: 60000, visitorTtlMs: 600000 })
  t.same(loadConfig({}).publish, { schemas: {}, keyTtlMs: 3_600_000, visitorTtlMs: 3_600_000 }, 'defaults: no schemas, keys and visitor tokens for an hour')
  const refused = (v: string): string => { try { loadConfig({ PUBLISH_SCHEMAS: v }); return 'accepted' } catch (err) { t.ok(err instanceof ConfigError); return (err as Error).message } }
  t.match(refused('not json'), /^PUBLISH_SCHEMAS must be a JSON object .* it is not JSON$/)
  t.match(refused('[]'), /^PUBLISH_SCHEMAS must be a JSON object/)
  t.match(refused('{"Not A Type":{}}'), /^PUBLISH_SCHEMAS has "Not A Type", which is not an event type$/)
  t.match(refused('{"a.b":true}'), /^PUBLISH_SCHEMAS gives a.b a schema that is not a JSON object$/)
  t.match(refused('{"a.b":{"type":"no-such-type"}}'), /^PUBLISH_SCHEMAS gives a.b a schema Ajv refuses: /)
})

t.test('GATEWAY_EVENTS: families and types, none, and what is refused', async (t) => {
  const types = (v?: string): string[] => [...loadConfig(v === undefined ? {} : { GATEWAY_EVENTS: v }).gatewayEvents.types].sort()
  t.same(types(), ['security.rate_limit.exceeded', 'security.suspicious.activity', 'security.validation.failed', 'session.concurrent_limit', 'session.created', 'session.expired', 'session.revoked'], 'both families by default')
  t.same(types('none'), [], 'none: all off')
  t.same(types('session'), ['session.concurrent_limit', 'session.created', 'session.expired', 'session.revoked'], 'one family')
  t.same(types('security, session.revoked'), ['security.rate_limit.exceeded', 'security.suspicious.activity', 'security.validation.failed', 'session.revoked'], 'a family and a type')
  t.match(refusal(t, { GATEWAY_EVENTS: 'session,admin' }, 'GATEWAY_EVENTS').message, /unknown entry "admin"/)
  t.match(refusal(t, { GATEWAY_EVENTS: 'none,session' }, 'GATEWAY_EVENTS').message, /unknown entry "none"/, 'none only alone')
  t.match(refusal(t, { GATEWAY_EVENTS_IP: 'some' }, 'GATEWAY_EVENTS_IP').message, /must be one of all, admins, none/)
  const g = loadConfig({ GATEWAY_EVENTS_WINDOW: '5000', GATEWAY_EVENTS_RATE: '7', GATEWAY_EVENTS_IP: 'admins', SUSPICIOUS_REFUSALS: '3', SUSPICIOUS_WINDOW: '2000' }).gatewayEvents
  t.match(g, { windowMs: 5000, ratePerSecond: 7, ip: 'admins', suspiciousRefusals: 3, suspiciousWindowMs: 2000 })
})
