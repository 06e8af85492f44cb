import { createPublicKey, randomBytes } from 'node:crypto'
import { isIP } from 'node:net'
import { hostname } from 'node:os'
import { createOriginCheck } from '../auth/origin.js'
import type { HistoryConfig } from '../backend/streams.js'
import envSchema from 'env-schema'
import { EnvSchema, Expected, REDIS_URL_FORM, type Env } from './schema.js'
import { parseSeeds } from './webhooks.js'
import { parsePublishSchemas } from '../publish/schemas.js'
import { parseAllowlist } from '../webhooks/ssrf.js'
import type { SeedEndpoint } from '../webhooks/endpoints.js'
import { GATEWAY_EVENT_FAMILIES, type GatewayEventType } from '../gateway-events/types.js'

export class ConfigError extends Error {
  readonly variable: string
  constructor (variable: string, message: string) {
    super(`${variable} ${message}`)
    this.name = 'ConfigError'
    this.variable = variable
  }
}

export interface RedisTarget {
  url?: string
  clusterNodes?: Array<{ host: string, port: number }>
  sentinels?: Array<{ host: string, port: number }>
  sentinelName?: string
  password?: string
}

export interface Config {
  env: Env['NODE_ENV']
  port: number
  host: string
  serverId: string
  redis: RedisTarget | null
  keyPrefix: string
  publishBuffer: number
  replayDelayMs: number
  /** HISTORY_SIZE and HISTORY_TTL; null when either is 0 */
  history: HistoryConfig | null
  jwt: {
    secret?: string
    publicKey?: string
    jwksUrl?: string
    issuer?: string[]
    audience?: string[]
    clockToleranceMs: number
    /** true when no key material was configured and a secret was generated for this boot */
    generated: boolean
  }
  apiKeys: string[]
  apiKeysGenerated: boolean
  /** null: every origin allowed (development default); [] none but clients without Origin */
  allowedOrigins: string[] | null
  trustedProxies: string[]
  allowAnonymous: boolean
  limits: {
    connectionsPerIp: number
    connectionsPerUser: number
    userConnectionPolicy: 'refuse' | 'evict-oldest'
    messagesPerMinute: number
    subscriptions: number
    messageBytes: number
    /** MAX_PUBLISH_BYTES */
    publishBytes: number
    sendBufferBytes: number
    nodeConnections: number
    /** WEBSOCKET_MAX_HANDSHAKES: client handshakes past the token check and not yet welcomed (src/endpoints/handshake-gate.ts) */
    nodeHandshakes: number
  }
  heartbeatIntervalMs: number
  authExpiryWarningMs: number
  nodeTtlMs: number
  adminMetricsIntervalMs: number
  healthStreamIntervalMs: number
  healthProbeIntervalMs: number
  drainTimeoutMs: number
  revocationTtlMs: number
  revocationSyncIntervalMs: number
  handshakeTimeoutMs: number
  webhooks: {
    /** WEBHOOKS */
    seeds: SeedEndpoint[]
    /** WEBHOOK_ALLOW_PRIVATE: CIDRs */
    allowPrivate: string[]
    allowHttp: boolean
    timeoutMs: number
    retryBaseMs: number
    concurrency: number
    breakerCooldownMs: number
    secretOverlapMs: number
  }
  publish: {
    /** PUBLISH_SCHEMAS: a JSON schema for the data of each listed type */
    schemas: Record<string, object>
    /** PUBLISH_KEY_TTL */
    keyTtlMs: number
    /** VISITOR_TOKEN_TTL */
    visitorTtlMs: number
  }
  /** the gateway's own session.* and security.* events (src/gateway-events/) */
  gatewayEvents: {
    /** GATEWAY_EVENTS, as the exact types it switches on (empty: none) */
    types: ReadonlySet<GatewayEventType>
    windowMs: number
    ratePerSecond: number
    ip: Env['GATEWAY_EVENTS_IP']
    suspiciousRefusals: number
    suspiciousWindowMs: number
  }
  logLevel: Env['LOG_LEVEL']
}

const list = (v: string | undefined): string[] =>
  v === undefined ? [] : v.split(',').map((s) => s.trim()).filter((s) => s.length > 0)

interface AjvError { instancePath: string, keyword?: string, message?: string, params?: Record<string, unknown> }

/** The value as a refusal may show it: secrets by length only, URLs without their userinfo. */
const shown = (variable: string, got: string | undefined): string => got === undefined
  ? ''
  : ` (got ${variable.includes('SECRET') || variable.includes('KEY') ? 'a value of ' + got.length + ' characters' : JSON.stringify(got.replace(/\/\/[^/]*@/, '//***@'))})`

function describe (err: AjvError, env: Record<string, string | undefined>): ConfigError {
  const variable = err.instancePath.replace(/^\//, '') || String(err.params?.missingProperty ?? 'environment')
  let why = err.message ?? 'is invalid'
  if (err.params && Array.isArray((err.params as { allowedValues?: unknown[] }).allowedValues)) {
    why = `must be one of ${((err.params as { allowedValues: unknown[] }).allowedValues).join(', ')}`
  }
  const expected = (EnvSchema.properties as unknown as Record<string, Record<symbol, unknown> | undefined>)[variable]?.[Expected]
  if (err.keyword === 'pattern' && typeof expected === 'string') why = `must be ${expected}`
  return new ConfigError(variable, `${why}${shown(variable, env[variable])}`)
}

/** What ioredis would trip over at boot, found here: it parses REDIS_URL with new URL() and reads the path as the db number. */
function checkRedisUrl (url: string): void {
  let u: URL
  try { u = new URL(url) } catch { throw new ConfigError('REDIS_URL', `must be ${REDIS_URL_FORM}; it is not a valid URL (a port must be a number up to 65535)${shown('REDIS_URL', url)}`) }
  if (u.hostname === '') throw new ConfigError('REDIS_URL', `must be ${REDIS_URL_FORM}; it names no host${shown('REDIS_URL', url)}`)
  if (!/^\/?(\d{1,5})?$/.test(u.pathname)) throw new ConfigError('REDIS_URL', `must be ${REDIS_URL_FORM}; the path must be a database number${shown('REDIS_URL', url)}`)
}

/**
 * Reads and validates the environment once. Throws ConfigError naming the first
 * bad variable; callers print its message as the one line the operator sees.
 */
export function loadConfig (source: Record<string, string | undefined> = process.env): Config {
  // Empty strings count as unset: compose files and k8s ConfigMaps often carry `FOO=`.
  const env: Record<string, string | undefined> = {}
  for (const [k, v] of Object.entries(source)) if (v !== undefined && v !== '') env[k] = v

  let e: Env
  try {
    // env: false — env-schema would otherwise merge process.env under `source`, bringing back
    // the empty strings dropped above and leaking the process environment into explicit sources.
    e = envSchema<Env>({ schema: EnvSchema, data: env, env: false, dotenv: false })
  } catch (err) {
    const errors = (err as { errors?: AjvError[] }).errors
    if (errors !== undefined && errors.length > 0) {
      const best = errors[0]!
      throw describe(best, env)
    }
    throw err
  }

  const production = e.NODE_ENV === 'production'
  const hasKey = e.JWT_SECRET !== undefined || e.JWT_PUBLIC_KEY !== undefined || e.JWKS_URL !== undefined
  if (production && !hasKey) {
    throw new ConfigError('JWT_SECRET', 'is required when NODE_ENV=production (or set JWT_PUBLIC_KEY or JWKS_URL)')
  }
  const topologies = (['REDIS_URL', 'REDIS_CLUSTER_NODES', 'REDIS_SENTINELS'] as const).filter((k) => e[k] !== undefined)
  if (topologies.length > 1) {
    throw new ConfigError(topologies[1]!, `cannot be combined with ${topologies[0]}; set one of REDIS_URL, REDIS_CLUSTER_NODES, REDIS_SENTINELS`)
  }

  let publicKey = e.JWT_PUBLIC_KEY
  if (publicKey !== undefined) {
    // Env files often hold PEMs on one line with literal \n.
    publicKey = publicKey.replace(/\\n/g, '\n')
    if (!publicKey.includes('-----BEGIN')) throw new ConfigError('JWT_PUBLIC_KEY', 'must be a PEM public key (-----BEGIN PUBLIC KEY-----)')
    if (publicKey.includes('PRIVATE KEY')) throw new ConfigError('JWT_PUBLIC_KEY', 'holds a private key; configure the public key only')
    let key
    try { key = createPublicKey(publicKey) } catch { throw new ConfigError('JWT_PUBLIC_KEY', 'is not a readable PEM public key') }
    if (key.asymmetricKeyType !== 'rsa' && !(key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1')) {
      throw new ConfigError('JWT_PUBLIC_KEY', 'must be an RSA (RS256) or P-256 EC (ES256) public key')
    }
  }

  const origins = list(e.ALLOWED_ORIGINS)
  for (const o of origins) {
    if (!/^(https?):\/\/(\*\.)?[a-z0-9.-]+(:\d{1,5})?$/i.test(o)) {
      throw new ConfigError('ALLOWED_ORIGINS', `has an invalid entry ${JSON.stringify(o)}: expected scheme://host[:port] or scheme://*.domain`)
    }
    // The regex lets through what the origin parser refuses (port 99999, IPv4 1.2.3.999).
    try { createOriginCheck([o]) } catch { throw new ConfigError('ALLOWED_ORIGINS', `has an invalid entry ${JSON.stringify(o)}: not a valid host or port`) }
  }
  const proxies = list(e.TRUSTED_PROXIES)
  for (const p of proxies) {
    const [addr, bits] = p.split('/')
    const family = isIP(addr!)
    if (!/^[0-9a-f:.]+(\/\d{1,3})?$/i.test(p) || family === 0 || (bits !== undefined && Number(bits) > (family === 4 ? 32 : 128))) throw new ConfigError('TRUSTED_PROXIES', `has an invalid entry ${JSON.stringify(p)}: expected an IP or CIDR`)
  }

  const jwtSecret = hasKey ? e.JWT_SECRET : randomBytes(32).toString('base64url')
  let apiKeys = list(e.API_KEYS)
  const apiKeysGenerated = apiKeys.length === 0 && !production
  if (apiKeysGenerated) apiKeys = ['dev-' + randomBytes(18).toString('base64url')]

  const hostPorts = (name: 'REDIS_CLUSTER_NODES' | 'REDIS_SENTINELS'): Array<{ host: string, port: number }> =>
    list(e[name]).map((hp) => {
      const i = hp.lastIndexOf(':')
      const port = Number(hp.slice(i + 1))
      if (port < 1 || port > 65535) throw new ConfigError(name, `has an invalid port in ${JSON.stringify(hp)}`)
      return { host: hp.slice(0, i), port }
    })

  if (e.REDIS_URL !== undefined) checkRedisUrl(e.REDIS_URL)
  const allowPrivate = list(e.WEBHOOK_ALLOW_PRIVATE)
  for (const c of allowPrivate) {
    try { parseAllowlist([c]) } catch { throw new ConfigError('WEBHOOK_ALLOW_PRIVATE', `has an invalid entry ${JSON.stringify(c)}: expected a CIDR (10.0.0.0/8, fd00::/8) or an address`) }
  }
  let seeds: SeedEndpoint[] = []
  try {
    if (e.WEBHOOKS !== undefined) seeds = parseSeeds(e.WEBHOOKS, { allowPrivate, allowHttp: e.WEBHOOK_ALLOW_HTTP })
  } catch (err) {
    throw new ConfigError('WEBHOOKS', (err as Error).message)
  }
  let publishSchemas: Record<string, object> = {}
  try {
    if (e.PUBLISH_SCHEMAS !== undefined) publishSchemas = parsePublishSchemas(e.PUBLISH_SCHEMAS)
  } catch (err) {
    throw new ConfigError('PUBLISH_SCHEMAS', (err as Error).message)
  }
  const gatewayTypes = parseGatewayEvents(e.GATEWAY_EVENTS)
  const password = e.REDIS_PASSWORD !== undefined ? { password: e.REDIS_PASSWORD } : {}
  const redis: RedisTarget | null = e.REDIS_URL !== undefined
    ? { url: e.REDIS_URL }
    : e.REDIS_CLUSTER_NODES !== undefined
      ? { clusterNodes: hostPorts('REDIS_CLUSTER_NODES'), ...password }
      : e.REDIS_SENTINELS !== undefined
        ? { sentinels: hostPorts('REDIS_SENTINELS'), sentinelName: e.REDIS_SENTINEL_NAME, ...password }
        : null

  return {
    env: e.NODE_ENV,
    port: e.PORT,
    host: e.HOST ?? (production ? '0.0.0.0' : '127.0.0.1'),
    serverId: e.SERVER_ID ?? `${hostname().replace(/[^A-Za-z0-9._-]/g, '').slice(0, 32) || 'node'}-${process.pid}-${randomBytes(3).toString('hex')}`,
    redis,
    keyPrefix: e.REDIS_KEY_PREFIX,
    publishBuffer: e.REDIS_PUBLISH_BUFFER,
    replayDelayMs: e.REDIS_REPLAY_DELAY,
    history: e.HISTORY_SIZE === 0 || e.HISTORY_TTL === 0 ? null : { size: e.HISTORY_SIZE, ttlMs: e.HISTORY_TTL },
    jwt: {
      secret: jwtSecret,
      publicKey,
      jwksUrl: e.JWKS_URL,
      issuer: e.JWT_ISSUER !== undefined ? list(e.JWT_ISSUER) : undefined,
      audience: e.JWT_AUDIENCE !== undefined ? list(e.JWT_AUDIENCE) : undefined,
      clockToleranceMs: e.JWT_CLOCK_TOLERANCE,
      generated: !hasKey,
    },
    apiKeys,
    apiKeysGenerated,
    allowedOrigins: e.ALLOWED_ORIGINS !== undefined ? origins : (production ? [] : null),
    trustedProxies: proxies,
    allowAnonymous: e.ALLOW_ANONYMOUS,
    limits: {
      connectionsPerIp: e.MAX_CONNECTIONS_PER_IP,
      connectionsPerUser: e.MAX_CONNECTIONS_PER_USER,
      userConnectionPolicy: e.USER_CONNECTION_POLICY,
      messagesPerMinute: e.MAX_MESSAGES_PER_MINUTE,
      subscriptions: e.MAX_SUBSCRIPTIONS,
      messageBytes: e.MAX_MESSAGE_BYTES,
      publishBytes: e.MAX_PUBLISH_BYTES,
      sendBufferBytes: e.MAX_SEND_BUFFER_BYTES,
      nodeConnections: e.WEBSOCKET_MAX_CONNECTIONS,
      nodeHandshakes: e.WEBSOCKET_MAX_HANDSHAKES,
    },
    heartbeatIntervalMs: e.WEBSOCKET_HEARTBEAT_INTERVAL,
    authExpiryWarningMs: e.AUTH_EXPIRY_WARNING,
    nodeTtlMs: e.NODE_TTL,
    adminMetricsIntervalMs: e.ADMIN_METRICS_INTERVAL,
    healthStreamIntervalMs: e.HEALTH_STREAM_INTERVAL,
    healthProbeIntervalMs: e.HEALTH_PROBE_INTERVAL,
    drainTimeoutMs: e.DRAIN_TIMEOUT,
    revocationTtlMs: e.REVOCATION_TTL,
    revocationSyncIntervalMs: e.REVOCATION_SYNC_INTERVAL,
    handshakeTimeoutMs: e.HANDSHAKE_TIMEOUT,
    webhooks: {
      seeds,
      allowPrivate,
      allowHttp: e.WEBHOOK_ALLOW_HTTP,
      timeoutMs: e.WEBHOOK_TIMEOUT,
      retryBaseMs: e.WEBHOOK_RETRY_BASE,
      concurrency: e.WEBHOOK_CONCURRENCY,
      breakerCooldownMs: e.WEBHOOK_BREAKER_COOLDOWN,
      secretOverlapMs: e.WEBHOOK_SECRET_OVERLAP,
    },
    publish: {
      schemas: publishSchemas,
      keyTtlMs: e.PUBLISH_KEY_TTL,
      visitorTtlMs: e.VISITOR_TOKEN_TTL,
    },
    gatewayEvents: {
      types: gatewayTypes,
      windowMs: e.GATEWAY_EVENTS_WINDOW,
      ratePerSecond: e.GATEWAY_EVENTS_RATE,
      ip: e.GATEWAY_EVENTS_IP,
      suspiciousRefusals: e.SUSPICIOUS_REFUSALS,
      suspiciousWindowMs: e.SUSPICIOUS_WINDOW,
    },
    logLevel: e.LOG_LEVEL,
  }
}

/** GATEWAY_EVENTS: families and exact types, or `none` alone. */
function parseGatewayEvents (v: string): Set<GatewayEventType> {
  const items = list(v)
  const out = new Set<GatewayEventType>()
  if (items.length === 1 && items[0] === 'none') return out
  const all = Object.values(GATEWAY_EVENT_FAMILIES).flat() as GatewayEventType[]
  for (const item of items) {
    const family = Object.hasOwn(GATEWAY_EVENT_FAMILIES, item) ? GATEWAY_EVENT_FAMILIES[item as keyof typeof GATEWAY_EVENT_FAMILIES] : undefined
    if (family !== undefined) for (const t of family) out.add(t)
    else if ((all as string[]).includes(item)) out.add(item as GatewayEventType)
    else throw new ConfigError('GATEWAY_EVENTS', `has an unknown entry ${JSON.stringify(item)}: expected none, or families (${Object.keys(GATEWAY_EVENT_FAMILIES).join(', ')}) and types (${all.join(', ')})`)
  }
  return out
}

/** Names the app reads; the deploy tests check compose/k8s files against it. */
export const CONFIG_VARIABLES: readonly string[] = Object.keys(EnvSchema.properties)
