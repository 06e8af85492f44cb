import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { signToken } from './auth/signer.js'
import { shareDevKeys } from './config/dev-keys.js'
import { ConfigError, loadConfig, type Config } from './config/index.js'
import { drain } from './endpoints/drain.js'

const DEV_TOKEN_TTL_MS = 12 * 3600_000

let config: Config
try {
  config = loadConfig()
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`herald: invalid configuration: ${err.message}\n`)
    process.exit(78) // EX_CONFIG
  }
  throw err
}

// Development cluster without key material: every node adopts the same
// generated secret and API key through Redis, so printed tokens work anywhere.
const shared = await shareDevKeys(config)

const app = await buildApp(config)
if (!shared) app.log.warn('could not reach Redis to share the generated development keys: this node\'s printed tokens and API key work on this node only (set JWT_SECRET and API_KEYS for a cluster)')

closeWithGrace({ delay: config.drainTimeoutMs + 10_000, logger: app.log }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'fatal error, shutting down')
  else app.log.info({ signal, drainTimeout: config.drainTimeoutMs }, 'draining')
  await drain(app.herald, err ? 0 : config.drainTimeoutMs)
  await app.close()
  // An operator watching the log (or a supervisor's) knows the drain ended and the process exits now.
  app.log.info({ signal }, 'stopped')
})

// Connections waiting to be accepted. Node's default, 511, is what a node
// whose neighbour died meets first: its clients reconnect at once, the
// kernel drops the SYNs past the queue, and each dropped client waits out
// TCP's retransmission timer (1 s, then 3 s, 7 s, ...): measured, 10,000
// clients on two nodes took 13 to 47 s to be back, most of it in those
// timers. The kernel caps it at net.core.somaxconn (4096 on current Linux).
const LISTEN_BACKLOG = 65_535

try {
  await app.listen({ port: config.port, host: config.host, backlog: LISTEN_BACKLOG })
} catch (err) {
  // Like a configuration error: one line naming what to change, no stack.
  const { code, message } = err as NodeJS.ErrnoException
  const why: Record<string, string> = {
    EADDRINUSE: `PORT ${config.port} is already in use on ${config.host}: stop what holds it or set PORT to a free port`,
    EACCES: `PORT ${config.port} needs privileges this process lacks: set PORT to 1024 or above`,
    EADDRNOTAVAIL: `HOST ${config.host} is not an address of this machine: set HOST to one of its addresses (or 0.0.0.0)`,
    ENOTFOUND: `HOST ${config.host} does not resolve: set HOST to an address of this machine`,
  }
  process.stderr.write(`herald: cannot listen: ${(code !== undefined ? why[code] : undefined) ?? `${message} (HOST ${config.host}, PORT ${config.port})`}\n`)
  process.exit(code !== undefined && code in why ? 78 : 1)
}

if (config.jwt.generated || config.apiKeysGenerated) printDevBanner(config, shared)
// Configured keys print no tokens: say where tokens come from instead.
if (!config.jwt.generated) {
  app.log.info(config.jwt.secret !== undefined
    ? 'to get a token: npx herald token --sub <user> --roles <user|admin|service> --ttl 1h, run with this node\'s JWT_SECRET (and JWT_ISSUER, JWT_AUDIENCE if set) in the environment'
    : `to get a token: your identity provider signs them (this node verifies with ${config.jwt.publicKey !== undefined ? 'JWT_PUBLIC_KEY' : 'JWKS_URL'}); npx herald token signs only with JWT_SECRET`)
}
if (config.env === 'production' && config.redis === null && config.apiKeys.length === 0) {
  app.log.warn('production without Redis or API_KEYS: only service JWTs (role service) can publish, and connections, limits and revocations are this node\'s alone; set API_KEYS, and REDIS_URL to run more than one node')
}

function printDevBanner (c: Config, shared: boolean): void {
  const host = c.host === '0.0.0.0' ? '127.0.0.1' : c.host
  const base = `${host}:${app.server.address() !== null && typeof app.server.address() === 'object' ? (app.server.address() as { port: number }).port : c.port}`
  // Without Redis at boot nothing was stored or adopted: this node's keys are its own, and a
  // node started later stores other keys. Its commands work here once Redis answers (503 until then).
  const lines = ['', c.redis === null
    ? 'Herald is running in development mode with the in-process backend (one node).'
    : shared
      ? 'Herald is running in development mode on Redis: nodes started the same way share this key material.'
      : 'Herald is running in development mode on Redis, which was unreachable at boot: the key material below is this node\'s alone, not shared with other nodes.']
  if (c.jwt.generated) {
    const user = signToken(c.jwt.secret!, { sub: 'demo-user', sid: 'demo-session', roles: ['user'] }, DEV_TOKEN_TTL_MS)
    const admin = signToken(c.jwt.secret!, { sub: 'demo-admin', sid: 'demo-admin-session', roles: ['admin'] }, DEV_TOKEN_TTL_MS)
    lines.push(
      c.redis === null
        ? 'Key material was generated for this boot; tokens below are valid for 12 hours and until restart.'
        : shared
          ? 'Key material is shared through Redis (the first node started this way generated it, the others use it); tokens below are valid for 12 hours on every such node.'
          : 'Key material was generated for this node; tokens below are valid for 12 hours on this node only, which refuses connections (503) until it reaches Redis.',
      '', `  user token:  ${user}`, `  admin token: ${admin}`,
      '', 'Connect as the user and subscribe (paste the second line into wscat):',
      `  npx wscat -c "ws://${base}/ws/events?token=${user}"`,
      '  {"type":"subscribe","id":"1","payload":{"eventTypes":["authentication.*","system.*"]}}',
      '', 'Watch the whole cluster as admin:',
      `  npx wscat -c "ws://${base}/ws/admin?token=${admin}"`,
    )
  }
  if (c.apiKeysGenerated) {
    lines.push(
      '', `Publish an event for the user (API key generated ${c.redis === null ? 'for this boot' : shared ? 'for the development cluster' : 'for this node only; it holds events until it reaches Redis'}):`,
      `  curl -s -X POST http://${base}/api/events -H 'authorization: Bearer ${c.apiKeys[0]}' -H 'content-type: application/json' \\`,
      `    -d '{"type":"authentication.login.success","userId":"demo-user","sessionId":"demo-session","data":{"ip":"203.0.113.7"}}'`,
      '', 'Broadcast a notification:',
      `  curl -s -X POST http://${base}/api/notifications/broadcast -H 'authorization: Bearer ${c.apiKeys[0]}' -H 'content-type: application/json' \\`,
      `    -d '{"level":"info","title":"Hello","message":"Herald is up"}'`,
    )
  }
  lines.push('', `Health: http://${base}/ws/health   API docs: http://${base}/docs`, '')
  process.stdout.write(lines.join('\n') + '\n')
}
