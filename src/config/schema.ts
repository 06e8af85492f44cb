import { Type, type Static } from '@sinclair/typebox'
import { DEFAULT_HISTORY } from '../backend/streams.js'

// The environment contract: every variable a node reads, with its default and
// bounds (docs/configuration.md lists them, and a test checks it). Names are fixed, since
// deployments set them. Every value arrives as a string and is coerced once, here.
// A plain `enum` (not a union of literals) so a bad value yields one error listing the allowed ones.
const oneOf = <T extends string>(values: readonly T[], def: T) =>
  Type.Unsafe<T>({ type: 'string', enum: values, default: def })

const int = (def: number, min: number, max: number, description: string) =>
  Type.Integer({ default: def, minimum: min, maximum: max, description })

/** What a variable's pattern asks for, in words: refusals say this, never the regex. Ajv ignores symbol keys. */
export const Expected = Symbol('expected')
const matching = (pattern: string, expected: string, opts: { description?: string, default?: string } = {}) =>
  Type.String({ pattern, ...opts, [Expected]: expected })

export const REDIS_URL_FORM = 'a redis:// or rediss:// URL: redis://[[user]:password@]host[:port][/db]'
const HOST_PORTS = '^[^,:\\s]+:\\d{1,5}(,[^,:\\s]+:\\d{1,5})*$'
const HOST_PORTS_FORM = 'comma-separated host:port pairs, e.g. redis-1:6379,redis-2:6379'

export const EnvSchema = Type.Object({
  NODE_ENV: oneOf(['development', 'production', 'test'] as const, 'development'),
  PORT: int(3000, 0, 65535, 'TCP port to listen on'),
  HOST: Type.Optional(Type.String({ minLength: 1, description: 'interface to bind; 127.0.0.1 in development, 0.0.0.0 in production' })),
  SERVER_ID: Type.Optional(matching('^[A-Za-z0-9._-]{1,64}$', '1-64 letters, digits, dots, underscores or hyphens', { description: 'stable node id; generated when unset' })),

  REDIS_URL: Type.Optional(matching('^rediss?://', REDIS_URL_FORM, { description: 'redis://host:port/db of a standalone Redis' })),
  REDIS_CLUSTER_NODES: Type.Optional(matching(HOST_PORTS, HOST_PORTS_FORM, { description: 'host:port,host:port seeds of a Redis Cluster' })),
  REDIS_SENTINELS: Type.Optional(matching(HOST_PORTS, HOST_PORTS_FORM, { description: 'host:port,host:port of Redis Sentinels' })),
  REDIS_SENTINEL_NAME: Type.String({ default: 'mymaster', minLength: 1, description: 'master name the Sentinels monitor' }),
  REDIS_PASSWORD: Type.Optional(Type.String({ minLength: 1, description: 'password for Redis Cluster or Sentinel-managed nodes (standalone: put it in REDIS_URL)' })),
  REDIS_PUBLISH_BUFFER: int(10000, 1, 1_000_000, 'channel messages a node holds while Redis is unreachable or stalled (a user event is two: its user and the admin channel; a system event or notification one); past it the API answers 503'),
  REDIS_REPLAY_DELAY: int(2000, 0, 60_000, 'ms after Redis is back before buffered publishes are replayed, so other nodes resubscribe first'),
  HISTORY_SIZE: int(DEFAULT_HISTORY.size, 0, 1_000_000, 'messages each stream keeps for clients to resume from (0: no history, no positions)'),
  HISTORY_TTL: int(DEFAULT_HISTORY.ttlMs, 0, 30 * 86_400_000, 'ms a stream keeps its messages after its last one; older ones are not replayed (0: no history)'),
  REDIS_KEY_PREFIX: matching('^[A-Za-z0-9:._-]{1,32}$', '1-32 letters, digits, colons, dots, underscores or hyphens', { default: 'herald:' }),

  JWT_SECRET: Type.Optional(Type.String({ minLength: 32, description: 'HS256 secret, at least 32 characters' })),
  JWT_PUBLIC_KEY: Type.Optional(Type.String({ minLength: 1, description: 'PEM public key (RSA for RS256, P-256 for ES256)' })),
  JWKS_URL: Type.Optional(matching('^https?://', 'an http:// or https:// URL', { description: 'JWKS endpoint for RS256/ES256 keys by kid' })),
  JWT_ISSUER: Type.Optional(Type.String({ minLength: 1 })),
  JWT_AUDIENCE: Type.Optional(Type.String({ minLength: 1 })),
  JWT_CLOCK_TOLERANCE: int(5000, 0, 300000, 'ms of clock skew tolerated on exp/nbf/iat'),

  API_KEYS: Type.Optional(matching('^[^,\\s]{16,}(,[^,\\s]{16,})*$', 'comma-separated keys, each at least 16 characters, without spaces', { description: 'comma-separated service API keys, each at least 16 characters' })),
  ALLOWED_ORIGINS: Type.Optional(Type.String({ minLength: 1 })),
  TRUSTED_PROXIES: Type.Optional(Type.String({ minLength: 1 })),

  ALLOW_ANONYMOUS: Type.Boolean({ default: false, description: 'accept /ws/events and Socket.IO clients without a token as guests that receive broadcast-audience events only' }),
  MAX_CONNECTIONS_PER_IP: int(50, 1, 1_000_000, 'open connections per client IP, cluster-wide'),
  MAX_CONNECTIONS_PER_USER: int(10, 1, 100_000, 'open connections per user, cluster-wide'),
  USER_CONNECTION_POLICY: oneOf(['refuse', 'evict-oldest'] as const, 'refuse'),
  MAX_MESSAGES_PER_MINUTE: int(60, 1, 1_000_000, 'client frames per minute per user and per IP'),
  MAX_SUBSCRIPTIONS: int(100, 1, 10_000, 'patterns per connection'),
  MAX_MESSAGE_BYTES: int(10240, 128, 16 * 1024 * 1024, 'largest client frame'),
  MAX_PUBLISH_BYTES: int(102400, 128, 16 * 1024 * 1024, 'largest client `publish` frame (an agent\'s log batch); every other frame stays under MAX_MESSAGE_BYTES'),
  PUBLISH_SCHEMAS: Type.Optional(Type.String({ minLength: 1, description: 'JSON schemas for the `data` of client publishes, a JSON object {"<event type>": <JSON schema>}' })),
  PUBLISH_KEY_TTL: int(3_600_000, 1000, 7 * 86_400_000, 'ms a client publish\'s idempotency key is remembered: a retry within it lands once'),
  VISITOR_TOKEN_TTL: int(3_600_000, 10_000, 86_400_000, 'ms a visitor token minted by POST /api/visitors lives'),
  MAX_SEND_BUFFER_BYTES: int(1024 * 1024, 1024, 256 * 1024 * 1024, 'bytes queued to one client before it is closed as a slow consumer'),
  WEBSOCKET_MAX_CONNECTIONS: int(10000, 1, 10_000_000, 'connections this node accepts'),
  WEBSOCKET_MAX_HANDSHAKES: int(256, 1, 100_000, 'client handshakes (token checked, not yet welcomed) this node works on at once; more wait their turn'),
  WEBSOCKET_HEARTBEAT_INTERVAL: int(30000, 100, 3_600_000, 'ms between server pings'),
  AUTH_EXPIRY_WARNING: int(60000, 0, 86_400_000, 'ms before exp that auth_expiring is sent'),
  NODE_TTL: int(15000, 500, 600_000, 'ms of silence before a node counts as dead'),
  ADMIN_METRICS_INTERVAL: int(5000, 100, 3_600_000, 'ms between admin metrics pushes'),
  HEALTH_PROBE_INTERVAL: int(2000, 100, 60_000, 'ms between loopback probes through Redis pub/sub; a probe not back within it fails readiness'),
  HEALTH_STREAM_INTERVAL: int(5000, 100, 3_600_000, 'ms between health frames on an upgraded /ws/health'),
  DRAIN_TIMEOUT: int(10000, 0, 600_000, 'ms over which connections are closed on SIGTERM'),
  REVOCATION_TTL: int(86_400_000, 60_000, 31 * 86_400_000, 'ms a revocation is kept; set it above your longest token lifetime'),
  REVOCATION_SYNC_INTERVAL: int(5000, 100, 600_000, 'ms between each node re-reading the revocation log'),
  HANDSHAKE_TIMEOUT: int(10000, 500, 120_000, 'ms a client has to complete the HTTP upgrade request'),
  WEBHOOKS: Type.Optional(Type.String({ minLength: 1, description: 'webhook endpoints to seed, a JSON array of {id, url, eventTypes, secret, enabled?, description?}' })),
  WEBHOOK_ALLOW_PRIVATE: Type.Optional(Type.String({ minLength: 1, description: 'comma-separated CIDRs (or addresses) webhooks may be delivered to although not public' })),
  WEBHOOK_ALLOW_HTTP: Type.Boolean({ default: false, description: 'allow plain http:// webhook URLs' }),
  WEBHOOK_TIMEOUT: int(10_000, 100, 60_000, 'ms one webhook attempt may take, connect to the end of the answer'),
  WEBHOOK_RETRY_BASE: int(5000, 1, 3_600_000, 'ms of the first retry; the schedule scales with it (for tests and tuning)'),
  WEBHOOK_CONCURRENCY: int(16, 1, 1000, 'webhook attempts in flight per endpoint on one node'),
  WEBHOOK_BREAKER_COOLDOWN: int(30_000, 100, 3_600_000, 'ms an endpoint\'s breaker stays open before one delivery is tried again'),
  WEBHOOK_SECRET_OVERLAP: int(86_400_000, 0, 30 * 86_400_000, 'ms a replaced webhook secret keeps signing'),
  GATEWAY_EVENTS: Type.String({ default: 'session,security', minLength: 1, description: 'the gateway\'s own events to publish: comma-separated families (session, security) and/or exact types (session.created...); none switches them all off' }),
  GATEWAY_EVENTS_WINDOW: int(10_000, 100, 3_600_000, 'ms of a gateway event\'s folding window per type and subject (user or IP): the first goes out at once, the others in the window as one summary with data.folded at its end'),
  GATEWAY_EVENTS_RATE: int(100, 1, 100_000, 'gateway events a node publishes per second at most; past it they are dropped (counted)'),
  GATEWAY_EVENTS_IP: oneOf(['all', 'admins', 'none'] as const, 'all'),
  SUSPICIOUS_REFUSALS: int(20, 2, 1_000_000, 'refused handshakes from one IP within SUSPICIOUS_WINDOW that make a security.suspicious.activity (refusal_burst)'),
  SUSPICIOUS_WINDOW: int(60_000, 1000, 86_400_000, 'ms over which SUSPICIOUS_REFUSALS are counted'),
  LOG_LEVEL: oneOf(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const, 'info'),
})

export type Env = Static<typeof EnvSchema>
