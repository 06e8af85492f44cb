import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { MAX_DATA_DEPTH } from '../events/depth.js'
import { GROUP_PATTERN, GROUP_RULE, MAX_GROUP_LENGTH } from './groups.js'
import { ID_PATTERN, ID_RULE, MAX_ID_LENGTH } from './identifiers.js'
import { EVENT_TYPE_PATTERN, PATTERN_RULE, SUBSCRIPTION_PATTERN, TYPE_RULE } from './patterns.js'
import { STREAM_RULE } from './streams.js'

// The protocol, stated once: what services publish, what clients send and
// receive on /ws/events and /ws/admin. From these schemas come the frame
// validators (validation.ts), the HTTP API's route schemas and its OpenAPI
// (src/http), the message tables of docs/protocol.md (npm run docs:protocol)
// and the SDK's payload types (imported as types only: the SDK bundles none of this).

export const NOTIFICATION_LEVELS = ['info', 'success', 'warning', 'error', 'critical'] as const
export type NotificationLevel = typeof NOTIFICATION_LEVELS[number]

/** Client frames past these limits are BAD_MESSAGE. */
export const MAX_FRAME_ID_LENGTH = 128
export const MAX_FRAME_TYPE_LENGTH = 64
export const MAX_PATTERNS_PER_REQUEST = 1000
export const MAX_TITLE_LENGTH = 200
export const MAX_MESSAGE_LENGTH = 2000

// --- building blocks

/** An id a caller names (user, session, connection). */
export const Id = (description: string) => Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH, pattern: ID_PATTERN, description: `${description}: ${ID_RULE}` })

/** A group's name (src/protocol/groups.ts). */
export const GroupName = (description: string) => Type.String({ minLength: 1, maxLength: MAX_GROUP_LENGTH, pattern: GROUP_PATTERN, description: `${description}: ${GROUP_RULE}` })

export const EventType = Type.String({ pattern: EVENT_TYPE_PATTERN, description: `${TYPE_RULE}, e.g. authentication.login.success` })

export const SubscriptionPattern = Type.String({ pattern: SUBSCRIPTION_PATTERN, description: `${PATTERN_RULE}; a \`*\` matches one segment, or one or more as the last` })

/** Free-form data; its depth is checked apart (src/events/depth.ts), before anything walks it. */
const Data = (description: string) => Type.Unsafe<Record<string, unknown>>({ type: 'object', description: `${description}; nests at most ${MAX_DATA_DEPTH} levels of objects and arrays` })

const Level = Type.Unsafe<NotificationLevel>({ type: 'string', enum: [...NOTIFICATION_LEVELS], description: 'how the app should present it' })

const Time = (description: string) => Type.String({ description: `${description} (ISO 8601)` })

const Patterns = (description: string) => Type.Array(Type.String(), { description })

// --- what services publish: API bodies, the publisher library, admin `broadcast`

export const EventInput = Type.Object({
  type: EventType,
  userId: Type.Optional(Id('the user whose /ws/events connections may receive it')),
  sessionId: Type.Optional(Id('the session it concerns')),
  group: Type.Optional(GroupName('the group whose members may receive it (instead of a user)')),
  data: Type.Optional(Data('free-form event data')),
}, { additionalProperties: false })
export type EventInput = Static<typeof EventInput>

/** Who published a client's event: stamped by the node from the connection, never taken from the client. */
export const Source = Type.Object({
  userId: Type.String({ description: 'the publishing token\'s `sub`' }),
  sessionId: Type.Union([Type.String(), Type.Null()], { description: 'its `sid`' }),
  connectionId: Type.String({ description: 'the connection it came on' }),
}, { description: 'present on events a client published: who, stamped by the node from the connection' })
export type Source = Static<typeof Source>

export const NotificationInput = Type.Object({
  level: Level,
  title: Type.String({ minLength: 1, maxLength: MAX_TITLE_LENGTH }),
  message: Type.String({ minLength: 1, maxLength: MAX_MESSAGE_LENGTH }),
  data: Type.Optional(Data('free-form data for the app')),
}, { additionalProperties: false })
export type NotificationInput = Static<typeof NotificationInput>

// --- what clients receive

/** A stream's name (src/protocol/streams.ts checks the shape). */
export const StreamName = (description: string) => Type.String({ description: `${description}: ${STREAM_RULE}` })
/** +1 per message of its stream, so a gap is visible. */
export const Offset = (description: string) => Type.Integer({ minimum: 0, description })
/** Changes when the stream's history is lost (Redis restarted empty): offsets of another epoch name other messages. */
export const Epoch = (description: string) => Type.String({ description })

/** Where a message sits in its stream; absent when history is off, and on a message a node delivered itself during an outage. */
const positioned = {
  stream: Type.Optional(StreamName('the stream it belongs to')),
  offset: Type.Optional(Offset('its position in the stream: +1 per message of that stream')),
  epoch: Type.Optional(Epoch('the history the offset counts in; another epoch means history was lost')),
}

export const EventPayload = Type.Object({
  id: Type.String({ description: 'sorts by time; ids minted by one node strictly increase' }),
  type: Type.String({ description: 'the event type' }),
  timestamp: Time('when it was published'),
  userId: Type.Optional(Type.String({ description: 'the user it concerns' })),
  sessionId: Type.Optional(Type.String({ description: 'the session it concerns' })),
  group: Type.Optional(Type.String({ description: 'the group it was published to' })),
  source: Type.Optional(Source),
  data: Data('as published, `{}` when none'),
  ...positioned,
})
export type HeraldEvent = Static<typeof EventPayload>

export const NotificationPayload = Type.Object({
  id: Type.String(),
  level: Level,
  title: Type.String(),
  message: Type.String(),
  data: Type.Optional(Data('as published')),
  timestamp: Time('when it was published'),
  ...positioned,
})
export type HeraldNotification = Static<typeof NotificationPayload>

export const ErrorPayload = Type.Object({
  code: Type.String({ description: 'a stable code (see the table of error codes)' }),
  message: Type.String({ description: 'what was wrong, for people' }),
})

/** Every HTTP refusal, the handshake's included. */
export const ErrorReply = Type.Object({ error: ErrorPayload }, { $id: 'ErrorReply' })

export const Accepted = Type.Object({
  id: Type.String({ description: 'event or notification id; ids from one node sort in publish order' }),
  stream: Type.Optional(StreamName('the stream it went on (absent: history is off)')),
  offset: Type.Optional(Offset('its position in the stream (absent: history is off, or Redis had not taken it within 500 ms and it is held for it)')),
  epoch: Type.Optional(Epoch('the history the offset counts in')),
})

/** POST /api/events/batch: events per request, and bytes per body, at most. */
export const MAX_BATCH_EVENTS = 500
export const MAX_BATCH_BYTES = 1024 * 1024

/**
 * Its events are checked one by one, each as POST /api/events checks its
 * body: a refused event is answered in its place, the others are published.
 */
export const EventBatch = Type.Object({
  events: Type.Array(Type.Unknown({ description: 'an event as POST /api/events takes it' }), { minItems: 1, maxItems: MAX_BATCH_EVENTS, description: `1-${MAX_BATCH_EVENTS} events, published in this order` }),
}, { additionalProperties: false })

export const BatchAccepted = Type.Object({
  published: Type.Integer({ minimum: 0, description: 'events published' }),
  failed: Type.Integer({ minimum: 0, description: 'events refused or not published; their results say why' }),
  results: Type.Array(Type.Union([Accepted, Type.Object({ error: ErrorPayload })]), { description: 'one per event, in the order sent: what POST /api/events would have answered it (its 202 body, or its error)' }),
})

/** A page's bounds, in a query string (strings there: nothing is coerced). */
export const AFTER_PATTERN = '^(0|[1-9][0-9]{0,14})$'
export const LIMIT_PATTERN = '^([1-9][0-9]{0,2}|1000)$'
export const DEFAULT_PAGE = 100

export const StreamQuery = Type.Object({
  after: Type.Optional(Type.String({ pattern: AFTER_PATTERN, description: 'the offset of the last message you have, in `epoch` (default 0: from the oldest retained)' })),
  limit: Type.Optional(Type.String({ pattern: LIMIT_PATTERN, description: `messages per page, 1-1000 (default ${DEFAULT_PAGE})` })),
})

/** GET /api/streams/:stream/events: one page of a stream's retained messages. */
export const StreamPage = Type.Object({
  stream: StreamName('the stream read'),
  epoch: Epoch('the history the offsets count in; compare it with the one your `after` came from'),
  top: Offset('the offset of the stream\'s latest message (0: none yet in this epoch)'),
  events: Type.Array(Type.Union([EventPayload, NotificationPayload]), { description: 'retained messages after `after`, in stream order, as clients receive them (a notification has `level`, an event `type`); the first offset above `after + 1` means what lies between is no longer retained' }),
  next: Type.Optional(Offset('more are retained: read again with `after` set to this')),
})

/** A stream's position: the offset of a message (or of its latest) in an epoch of its history. */
export const StreamPosition = (description: string) => Type.Object({
  epoch: Type.String({ minLength: 1, maxLength: 64, description: 'the history the offset counts in' }),
  offset: Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'the offset of a message in that history; 0: before the first' }),
}, { additionalProperties: false, description })

/** Positions by stream name. */
const Positions = (description: string) => Type.Record(Type.String(), StreamPosition('a position'), { description })

export const Welcome = Type.Object({
  connectionId: Type.String(),
  serverId: Type.String({ description: 'the node holding the connection' }),
  userId: Type.String({ description: 'the token\'s `sub`; `guest:<connectionId>` for an anonymous guest' }),
  sessionId: Type.Union([Type.String(), Type.Null()], { description: 'the token\'s `sid`' }),
  expiresAt: Type.Union([Type.String(), Type.Null()], { description: 'the token\'s `exp` (ISO 8601); null for a guest' }),
  heartbeatInterval: Type.Integer({ description: 'ms between the node\'s pings' }),
  positions: Type.Optional(Positions('the current top of every stream the connection reads (`user:<userId>` and `broadcast` on `/ws/events`, `broadcast` alone for a guest; `admin` and `broadcast` on `/ws/admin`); absent when history is off')),
})
export type Welcome = Static<typeof Welcome>

export const Revoked = Type.Object({
  revoked: Type.Union([Type.Literal('session'), Type.Literal('user')]),
  id: Type.String({ description: 'the session or user id' }),
  revokedAt: Time('user revocations cover tokens issued at or before this second'),
})

export const ConnectionView = Type.Object({
  connectionId: Type.String(),
  serverId: Type.String(),
  userId: Type.String(),
  sessionId: Type.Union([Type.String(), Type.Null()]),
  ip: Type.String(),
  endpoint: Type.Union([Type.Literal('events'), Type.Literal('admin')]),
  connectedAt: Time('when it opened'),
})

export const Connections = Type.Object({
  userId: Type.String(),
  connections: Type.Array(ConnectionView, { description: 'on every node' }),
})

const Counts = Type.Object({ events: Type.Integer(), admin: Type.Integer(), total: Type.Integer() }, { additionalProperties: true })

const Tally = (description: string) => Type.Record(Type.String(), Type.Integer(), { description })

/** What a node saw lately (src/observability/activity.ts). */
export const Activity = Type.Object({
  latencyMs: Type.Object({
    p50: Type.Union([Type.Number(), Type.Null()]),
    p99: Type.Union([Type.Number(), Type.Null()]),
    samples: Type.Integer({ description: 'deliveries the percentiles are over' }),
  }, { description: 'delivery latency on the node, publish (on any node) to delivery, ms, over its last 60 s (at most its last 4,096 deliveries); null without any' }),
  disconnects: Tally('closed connections since the node started, by close code as `herald_disconnects_total` labels it'),
  limitHits: Tally('refusals by a limit since the node started, by scope: `connection-ip`, `connection-user`, `message-ip`, `message-user`'),
  authFailures: Tally('refused handshakes and API calls since the node started, by error code'),
}, { additionalProperties: true, description: 'what the node saw lately' })

const NodeStateSchema = Type.Union([Type.Literal('ready'), Type.Literal('not-ready'), Type.Literal('draining'), Type.Literal('unreachable')], {
  description: '`unreachable`: no heartbeat for two heartbeat intervals (2/3 of `NODE_TTL`); `not-ready`: its probe through the backend fails',
})

// Open-ended objects, so a field added later is not dropped by the HTTP serializer.
const ServerStats = Type.Object({
  serverId: Type.String(),
  address: Type.String(),
  version: Type.String(),
  uptime: Type.Integer({ description: 'seconds' }),
  draining: Type.Boolean(),
  backend: Type.String({ description: 'memory or redis' }),
  redisConnected: Type.Boolean(),
  ready: Type.Boolean(),
  connections: Counts,
  socketio: Type.Integer({ description: 'of `connections`, those carried by Socket.IO' }),
  users: Type.Integer(),
  eventsPublished: Type.Integer(),
  eventsDelivered: Type.Integer(),
  brokerMessagesIn: Type.Integer(),
  memory: Type.Object({ rss: Type.Integer(), heapUsed: Type.Integer() }),
  activity: Activity,
}, { additionalProperties: true, description: 'this node' })

const ClusterStats = Type.Object({
  servers: Type.Integer(),
  connections: Counts,
  users: Type.Integer(),
  eventsPublished: Type.Integer(),
  eventsDelivered: Type.Integer(),
  socketio: Type.Object({ sockets: Type.Integer() }),
  nodes: Type.Array(Type.Object({
    serverId: Type.String(),
    address: Type.String(),
    version: Type.String(),
    state: NodeStateSchema,
    draining: Type.Boolean(),
    connections: Type.Integer(),
    transports: Type.Object({ ws: Type.Integer(), socketio: Type.Integer() }),
    socketio: Type.Integer(),
    users: Type.Integer(),
    eventsPublished: Type.Integer(),
    eventsDelivered: Type.Integer(),
    memoryRss: Type.Integer(),
    lastHeartbeat: Type.String(),
    uptime: Type.Integer(),
    activity: Type.Union([Activity, Type.Null()]),
    groups: Type.Optional(Type.Array(Type.Object({ name: Type.String(), connections: Type.Integer() }), { description: 'the node\'s busiest groups (at most 20): member connections on it' })),
  }, { additionalProperties: true })),
  lapsed: Type.Array(Type.String(), { description: 'registered nodes whose heartbeat lapsed and that no node has reclaimed yet' }),
}, { additionalProperties: true })

const statsFields = {
  server: ServerStats,
  global: Type.Union([Type.Null(), ClusterStats], { description: 'the live nodes\' registry rows summed; null while the cluster backend is unreachable' }),
  globalError: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() }, { description: 'why `global` is null' })),
}

/** GET /api/stats and admin `stats`. */
export const Stats = Type.Object(statsFields)

const Ranked = (description: string) => Type.Array(Type.Object({ name: Type.String(), count: Type.Integer() }), { description })

/** The dashboard's leaderboards (src/admin/top.ts), counted per minute in the backend. */
export const Top = Type.Object({
  windowMinutes: Type.Integer({ description: 'minutes summed: the current one and those before it' }),
  users: Ranked('users by connections opened (guests not counted), highest first'),
  eventTypes: Ranked('event types by events published through the nodes (not the publisher library\'s direct mode), highest first'),
}, { additionalProperties: true })

export const Metrics = Type.Object({
  timestamp: Time('when the figures were taken'),
  ...statsFields,
  top: Type.Union([Type.Null(), Top], { description: 'the leaders of the last minutes, counted every few seconds by each node; null while the cluster backend is unreachable' }),
})

/** POST /admin/verify: whether /ws/admin would take a token now, or why not (the dashboard's sign-in). */
export const AdminVerdict = Type.Union([
  Type.Object({ ok: Type.Literal(true), userId: Type.String({ description: 'the token\'s `sub`' }), expiresAt: Type.Union([Type.String(), Type.Null()], { description: 'the token\'s `exp` (ISO 8601)' }) }),
  Type.Object({ ok: Type.Literal(false), error: ErrorPayload }),
])

/** A client publish's idempotency key: a retry with the same key lands once. The group names' rule. */
export const PUBLISH_KEY_PATTERN = GROUP_PATTERN

/** What a client sends to publish (`publish`; src/publish/). */
export const PublishInput = Type.Object({
  type: EventType,
  data: Type.Optional(Data('free-form event data; `userId`, `agentId` and `sessionId` in it, when present, must be the token\'s, and no key at any level may be `__proto__`')),
  group: Type.Optional(GroupName('publish to this group\'s members (the connection\'s user must be one) instead of your own user stream')),
  key: Type.Optional(Type.String({ pattern: PUBLISH_KEY_PATTERN, description: 'an idempotency key of 1-128 letters, digits, `_.:-`: a retry with the same key lands once (within `PUBLISH_KEY_TTL`), answered with the first publish\'s receipt' })),
  userId: Type.Optional(Type.String({ description: 'never trusted: refused (`IDENTITY_MISMATCH`) unless it is the token\'s `sub`' })),
  agentId: Type.Optional(Type.String({ description: 'never trusted: refused (`IDENTITY_MISMATCH`) unless it is the token\'s `sub`' })),
}, { additionalProperties: false })
export type PublishInput = Static<typeof PublishInput>

// --- groups and visitors: /api/groups, /api/visitors

export const MAX_VISITOR_PATTERNS = 20

export const GroupParams = Type.Object({ group: GroupName('the group') })
export const MemberParams = Type.Object({ group: GroupName('the group'), userId: Id('the member') })

export const Membership = Type.Object({
  group: Type.String(),
  userId: Type.String(),
  member: Type.Boolean({ description: 'whether the user is a member through the API now' }),
  changed: Type.Boolean({ description: 'false: it already was (PUT) or was not (DELETE)' }),
})

export const GroupMembersQuery = Type.Object({
  limit: Type.Optional(Type.String({ pattern: LIMIT_PATTERN, description: `members per answer, 1-1000 (default ${DEFAULT_PAGE}), sorted` })),
})

export const GroupMembersView = Type.Object({
  group: Type.String(),
  members: Type.Array(Type.String(), { description: 'members through the API, sorted, at most `limit` (members through a token\'s `groups` claim are not listed: the token holds them)' }),
  total: Type.Integer({ description: 'how many members through the API' }),
})

export const VisitorRequest = Type.Object({
  group: GroupName('the conversation: the visitor is a member of this group, and of no other'),
  publish: Type.Array(SubscriptionPattern, { minItems: 1, maxItems: MAX_VISITOR_PATTERNS, description: `1-${MAX_VISITOR_PATTERNS} event type patterns the visitor may publish (reserved types stay refused)` }),
  ttlSeconds: Type.Optional(Type.Integer({ minimum: 10, maximum: 86_400, description: 'the token\'s life (default `VISITOR_TOKEN_TTL`)' })),
}, { additionalProperties: false })

export const VisitorToken = Type.Object({
  token: Type.String({ description: 'an access token for /ws/events and Socket.IO (HS256, signed with JWT_SECRET)' }),
  userId: Type.String({ description: 'the fresh guest identity (`sub`), `visitor-<uuid>`' }),
  sessionId: Type.String({ description: 'its `sid`' }),
  group: Type.String(),
  publish: Type.Array(Type.String()),
  expiresAt: Time('the token\'s `exp`'),
})

/** Filters of an admin's live tail. */
export const TAIL_MAX_PATTERNS = 100


// --- webhooks: /api/webhooks

export const WEBHOOK_ID_PATTERN = '^[A-Za-z0-9_-]{1,64}$'
export const WEBHOOK_ID_RULE = '1-64 letters, digits, underscores or hyphens'
export const MAX_WEBHOOK_PATTERNS = 100
export const MAX_WEBHOOK_URL_LENGTH = 2048
export const MAX_WEBHOOKS = 1000

const WebhookId = (description: string) => Type.String({ pattern: WEBHOOK_ID_PATTERN, description: `${description}: ${WEBHOOK_ID_RULE}` })
const WebhookUrl = Type.String({ minLength: 1, maxLength: MAX_WEBHOOK_URL_LENGTH, description: 'https:// (http:// only where WEBHOOK_ALLOW_HTTP allows it); its address must be public unless WEBHOOK_ALLOW_PRIVATE allows it, checked on every connection' })
const WebhookPatterns = Type.Array(SubscriptionPattern, { minItems: 1, maxItems: MAX_WEBHOOK_PATTERNS, description: `1-${MAX_WEBHOOK_PATTERNS} event type patterns, matched as subscriptions are (notifications match as the type \`notification\`)` })
const SECRET_FORM = 'whsec_ followed by the base64 of 24 to 64 random bytes'
const WebhookSecret = (description: string) => Type.String({ maxLength: 100, description: `${SECRET_FORM}${description}` })
const Description = Type.String({ maxLength: 500 })

export const WebhookCreate = Type.Object({
  url: WebhookUrl,
  eventTypes: WebhookPatterns,
  secret: Type.Optional(WebhookSecret('; generated when not given')),
  enabled: Type.Optional(Type.Boolean({ description: 'default true' })),
  description: Type.Optional(Description),
}, { additionalProperties: false })

export const WebhookPatch = Type.Object({
  url: Type.Optional(WebhookUrl),
  eventTypes: Type.Optional(WebhookPatterns),
  secret: Type.Optional(WebhookSecret(': rotates to it; the previous secret keeps signing (both signatures sent) for WEBHOOK_SECRET_OVERLAP')),
  rotateSecret: Type.Optional(Type.Boolean({ description: 'true: rotates to a generated secret, returned in the answer' })),
  enabled: Type.Optional(Type.Boolean({ description: 'false moves what is queued for it to its dead letters; true starts it afresh' })),
  description: Type.Optional(Description),
}, { additionalProperties: false })

export const WebhookParams = Type.Object({ id: WebhookId('the endpoint') })

const QueueView = Type.Object({
  depth: Type.Integer({ description: 'undelivered: ready, in flight or waiting for a retry' }),
  oldestAgeMs: Type.Union([Type.Integer(), Type.Null()], { description: 'ms since the oldest undelivered one was published' }),
  breaker: Type.Union([Type.Literal('closed'), Type.Literal('open'), Type.Literal('half-open')]),
  breakerUntil: Type.Optional(Time('open: when one delivery is tried again')),
})

const RecentAttempts = Type.Object({
  attempts: Type.Integer({ description: 'attempts in the endpoint\'s log (its latest, at most 50)' }),
  failed: Type.Integer({ description: 'of those, the ones that did not succeed' }),
  last: Type.Optional(Type.Object({
    at: Time('when the latest attempt was made'),
    outcome: Type.String({ description: 'as in the attempts list' }),
    status: Type.Optional(Type.Integer({ description: 'the HTTP status answered' })),
    error: Type.Optional(Type.String()),
  })),
})

export const WebhookView = Type.Object({
  id: Type.String(),
  url: Type.String(),
  eventTypes: Type.Array(Type.String()),
  enabled: Type.Boolean(),
  disabledReason: Type.Optional(Type.String({ description: '`gone`: it answered 410; `operator`: disabled through the API' })),
  description: Type.Optional(Type.String()),
  createdAt: Time('created'),
  updatedAt: Time('last changed'),
  secretRotation: Type.Optional(Type.Object({ previousExpiresAt: Time('until when the previous secret still signs') })),
  seeded: Type.Boolean({ description: 'seeded from the WEBHOOKS configuration' }),
  queue: Type.Optional(QueueView),
  recent: Type.Optional(RecentAttempts),
}, { additionalProperties: false })

export const WebhookWithSecret = Type.Object({
  ...WebhookView.properties,
  secret: Type.String({ description: 'the signing secret: shown once, here' }),
}, { additionalProperties: false })

/** A PATCH answer: the secret only when the request rotated it. */
export const WebhookUpdated = Type.Object({
  ...WebhookView.properties,
  secret: Type.Optional(Type.String({ description: 'the new signing secret, when the request rotated it: shown once, here' })),
}, { additionalProperties: false })

export const WebhookList = Type.Object({ webhooks: Type.Array(WebhookView) })

export const WebhookAttempt = Type.Object({
  webhookId: Type.String({ description: 'the `webhook-id` header' }),
  eventId: Type.String(),
  attempt: Type.Integer({ description: '1 for the first' }),
  at: Time('when it was made'),
  durationMs: Type.Number(),
  outcome: Type.String({ description: 'success, redirect, client_error, gone, rate_limited, server_error, timeout, network, blocked' }),
  status: Type.Optional(Type.Integer({ description: 'the HTTP status answered' })),
  serverId: Type.String({ description: 'the node that made it' }),
  error: Type.Optional(Type.String()),
  retryInMs: Type.Optional(Type.Integer({ description: 'when the next attempt is due' })),
}, { additionalProperties: false })

export const WebhookAttempts = Type.Object({ attempts: Type.Array(WebhookAttempt, { description: 'the latest, newest first' }) })

export const DeadLetterView = Type.Object({
  webhookId: Type.String(),
  eventId: Type.String(),
  type: Type.String(),
  reason: Type.Union([Type.Literal('exhausted'), Type.Literal('gone'), Type.Literal('disabled')], { description: 'every attempt failed; the endpoint answered 410; or it was disabled with this queued' }),
  deadAt: Time('when it became a dead letter'),
  attempts: Type.Integer(),
  publishedAt: Time('when the event was published'),
  payload: Type.Unsafe<Record<string, unknown>>({ type: 'object', description: 'the body that was POSTed' }),
}, { additionalProperties: false })

export const DeadLetterQuery = Type.Object({
  from: Type.Optional(Type.String({ pattern: AFTER_PATTERN, description: 'how many of the newest to pass over: the `next` of the page before (default 0)' })),
  limit: Type.Optional(Type.String({ pattern: LIMIT_PATTERN, description: `1-1000 (default ${DEFAULT_PAGE}); a page also ends with the dead letter that brings its payloads to 1 MiB` })),
})

export const DeadLetters = Type.Object({
  deadLetters: Type.Array(DeadLetterView, { description: 'newest first' }),
  next: Type.Optional(Type.Integer({ minimum: 1, description: 'the `from` of the next page; absent at the end' })),
})

export const ReplayBody = Type.Object({
  webhookIds: Type.Optional(Type.Array(Type.String({ minLength: 1, maxLength: 200 }), { minItems: 1, maxItems: 1000, description: 'the dead letters to deliver again; absent: the newest `limit`' })),
  limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000, description: 'without webhookIds: how many of the newest (default 1000)' })),
}, { additionalProperties: false })

export const Replayed = Type.Object({ replayed: Type.Integer({ description: 'dead letters queued again, attempts counted from 0' }) })

export const Health = Type.Object({
  healthy: Type.Boolean({ description: 'ready: the backend answers and the node is not draining' }),
  serverId: Type.String(),
  connections: Type.Integer(),
  redisConnected: Type.Boolean(),
  backend: Type.Union([Type.Literal('memory'), Type.Literal('redis')]),
  uptime: Type.Integer({ description: 'seconds' }),
  draining: Type.Boolean(),
  probeLatencyMs: Type.Union([Type.Number(), Type.Null()], { description: 'the last loopback probe through the backend' }),
  persistent: Type.Union([Type.Boolean(), Type.Null()], { description: 'the backend keeps its data across its restart (Redis with AOF on every master; never the memory backend): what the webhook queue needs to survive one; null until known' }),
})

// --- frames

/** One envelope both ways: { type, id?, payload? }. */
export const Envelope = Type.Object({
  type: Type.String({ minLength: 1, maxLength: MAX_FRAME_TYPE_LENGTH }),
  id: Type.Optional(Type.String({ maxLength: MAX_FRAME_ID_LENGTH, description: 'echoed on every reply' })),
  payload: Type.Optional(Type.Unsafe<Record<string, unknown>>({ type: 'object' })),
})

export const FrameId = Envelope.properties.id

/** No payload needed; one that comes is ignored. */
const Nothing = Type.Object({})

const EventTypes = (description: string) => Type.Object({ eventTypes: Patterns(description) })

export const Subscribed = Type.Object({
  eventTypes: Patterns('every pattern the connection now holds'),
  recovered: Type.Optional(Type.Boolean({ description: 'only with `since`: true when every message after every position named was replayed (same epoch, all still retained); false when anything may be missing' })),
  positions: Type.Optional(Positions('only with `since`: per stream named, where the client now is: live messages continue after it. A stream not recovered is not replayed; its position is its top')),
  unrecovered: Type.Optional(Type.Array(Type.String(), { description: 'only with `since`: the streams named that were not recovered (empty when `recovered`)' })),
})
export type Subscribed = Static<typeof Subscribed>

export interface ClientFrameDef {
  readonly endpoint: 'both' | 'events' | 'admin'
  readonly payload: TSchema
  /** the reply's type */
  readonly reply: keyof typeof ServerFrames
  readonly description: string
}

export interface ServerFrameDef {
  readonly endpoint: 'both' | 'events' | 'admin' | 'health'
  readonly payload: TSchema
  readonly description: string
}

export const ServerFrames = {
  welcome: { endpoint: 'both', payload: Welcome, description: 'always the first frame' },
  subscribed: { endpoint: 'both', payload: Subscribed, description: 'reply to `subscribe`; with `since`, it comes after the replayed messages and before any live one' },
  unsubscribed: { endpoint: 'both', payload: EventTypes('every pattern the connection still holds'), description: 'reply to `unsubscribe`' },
  subscriptions: { endpoint: 'both', payload: EventTypes('every pattern the connection holds'), description: 'reply to `get_subscriptions`' },
  pong: { endpoint: 'both', payload: Type.Object({ timestamp: Time('the node\'s clock') }), description: 'reply to `ping`' },
  refreshed: { endpoint: 'both', payload: Type.Object({ expiresAt: Time('the new token\'s `exp`') }), description: 'reply to `refresh`' },
  error: { endpoint: 'both', payload: ErrorPayload, description: 'a refused request, with its `id` when it had one; the connection stays open' },
  event: { endpoint: 'both', payload: EventPayload, description: 'an event matching one of the connection\'s patterns, for its audience' },
  notification: { endpoint: 'events', payload: NotificationPayload, description: 'a notification for the user, or a broadcast; needs no subscription' },
  auth_expiring: { endpoint: 'both', payload: Type.Object({ expiresAt: Time('the token\'s `exp`'), expiresIn: Type.Integer({ description: 'ms left' }) }), description: '`AUTH_EXPIRY_WARNING` before `exp`: answer with `refresh`' },
  auth_expired: { endpoint: 'both', payload: Type.Object({ expiredAt: Time('the token\'s `exp`') }), description: 'right before close 4001' },
  session_revoked: { endpoint: 'both', payload: Type.Object({ reason: Type.String() }), description: 'right before close 4004' },
  stats: { endpoint: 'admin', payload: Stats, description: 'reply to `get_stats`: this node, and the cluster as of each node\'s last heartbeat (at most `NODE_TTL / 3` old); also `GET /api/stats`' },
  metrics: { endpoint: 'admin', payload: Metrics, description: 'every `ADMIN_METRICS_INTERVAL`, the figures of `stats`' },
  connections: { endpoint: 'admin', payload: Connections, description: 'reply to `list_connections`' },
  disconnected: { endpoint: 'admin', payload: Type.Union([Type.Object({ connectionId: Type.String() }), Type.Object({ userId: Type.String() })]), description: 'reply to `disconnect`: the target closes 4003 on whatever node holds it' },
  revoked: { endpoint: 'admin', payload: Revoked, description: 'reply to `revoke_session` and `revoke_user`' },
  broadcasted: { endpoint: 'admin', payload: Accepted, description: 'reply to `broadcast`' },
  published: {
    endpoint: 'events',
    payload: Type.Object({
      ...Accepted.properties,
      duplicate: Type.Optional(Type.Literal(true, { description: 'a retry: the publish with this `key` had landed already; this is its receipt' })),
    }),
    description: 'reply to `publish`',
  },
  tail_started: {
    endpoint: 'admin',
    payload: Type.Object({
      eventTypes: Type.Array(Type.String(), { description: 'the patterns the tail matches' }),
      userId: Type.Union([Type.String(), Type.Null()], { description: 'the user whose events only it shows; null: anyone\'s' }),
      maxPerSecond: Type.Integer({ description: 'events a second the tail sends at most' }),
    }),
    description: 'reply to `start_tail`',
  },
  tail_stopped: { endpoint: 'admin', payload: Nothing, description: 'reply to `stop_tail`' },
  webhooks: {
    endpoint: 'admin',
    payload: Type.Object({
      webhooks: Type.Array(WebhookView, { description: 'every endpoint, oldest first, as `GET /api/webhooks` lists them' }),
      persistent: Type.Union([Type.Boolean(), Type.Null()], { description: 'as in `/ws/health`: whether the backend keeps the queue across its restart' }),
    }),
    description: 'reply to `list_webhooks`',
  },
  tail: {
    endpoint: 'admin',
    payload: Type.Object({
      events: Type.Array(EventPayload, { description: 'matching events, oldest first' }),
      dropped: Type.Integer({ description: 'matching events left out since the previous `tail` frame: over `maxPerSecond`' }),
    }),
    description: 'while a tail runs, at most every 200 ms when there is something to say: at most a fifth of `maxPerSecond` events each time',
  },
  health: { endpoint: 'health', payload: Health, description: 'the `/ws/health` JSON, every `HEALTH_STREAM_INTERVAL`' },
} as const satisfies Record<string, ServerFrameDef>

export const ClientFrames = {
  subscribe: {
    endpoint: 'both',
    payload: Type.Object({
      eventTypes: Type.Optional(Type.Array(SubscriptionPattern, { minItems: 1, maxItems: MAX_PATTERNS_PER_REQUEST, description: `1-${MAX_PATTERNS_PER_REQUEST} patterns to add` })),
      since: Type.Optional(Type.Record(Type.String({ maxLength: 300 }), StreamPosition('the last position processed'), { description: 'resume: per stream, the last position the client processed; what it missed since, and may receive, is replayed before the reply' })),
    }, { anyOf: [{ required: ['eventTypes'] }, { required: ['since'] }], description: '`eventTypes`, `since` or both' }),
    reply: 'subscribed',
    description: 'all or nothing: one invalid pattern, passing `MAX_SUBSCRIPTIONS`, or a `since` naming a stream the connection may not read (`STREAM_FORBIDDEN`), changes nothing; a pattern already held is a no-op. With `since`: the missed messages first, in stream order, then the reply, then live messages, none lost or doubled between',
  },
  unsubscribe: {
    endpoint: 'both',
    payload: Type.Object({ eventTypes: Type.Array(Type.String(), { minItems: 1, maxItems: MAX_PATTERNS_PER_REQUEST, description: `1-${MAX_PATTERNS_PER_REQUEST} patterns to drop; one not held is ignored` }) }),
    reply: 'unsubscribed',
    description: '',
  },
  get_subscriptions: { endpoint: 'both', payload: Nothing, reply: 'subscriptions', description: '' },
  ping: { endpoint: 'both', payload: Nothing, reply: 'pong', description: 'also measures the round trip' },
  refresh: {
    endpoint: 'both',
    payload: Type.Object({ token: Type.String({ minLength: 1, description: 'a new access token for the same `sub`' }) }),
    reply: 'refreshed',
    description: 'or `error` `REFRESH_REJECTED` (invalid, expired, revoked, another `sub`, or no `admin` role on `/ws/admin`); a token of the same `sub` with another `sid` is accepted, and the connection then belongs to that session',
  },
  publish: {
    endpoint: 'events',
    payload: PublishInput,
    reply: 'published',
    description: 'an event from the client, allowed by the token\'s `publish` claim; the node stamps `source`; without `group` it goes to the publisher\'s own user stream (its other connections), admins and webhooks; with `group`, to the group\'s members subscribed to its type, admins and webhooks. Refusals: `PUBLISH_FORBIDDEN`, `RESERVED_TYPE`, `IDENTITY_MISMATCH`, `NOT_A_MEMBER`, `SCHEMA_MISMATCH`, `PUBLISH_TOO_LARGE`, `PUBLISH_PENDING`, `RATE_LIMITED`',
  },
  get_stats: { endpoint: 'admin', payload: Nothing, reply: 'stats', description: '' },
  list_connections: { endpoint: 'admin', payload: Type.Object({ userId: Id('whose connections') }), reply: 'connections', description: '' },
  disconnect: {
    endpoint: 'admin',
    // connectionId when both come, as the handler reads them.
    payload: Type.Object({
      connectionId: Type.Optional(Id('one connection to close')),
      userId: Type.Optional(Id('every connection of this user to close')),
    }, { anyOf: [{ required: ['connectionId'] }, { required: ['userId'] }], description: '`connectionId` or `userId`' }),
    reply: 'disconnected',
    description: 'published as `admin.connection.disconnected` / `admin.user.disconnected`',
  },
  revoke_session: { endpoint: 'admin', payload: Type.Object({ sessionId: Id('the session to revoke') }), reply: 'revoked', description: 'its connections close 4004 everywhere; new ones are refused' },
  revoke_user: { endpoint: 'admin', payload: Type.Object({ userId: Id('the user to revoke') }), reply: 'revoked', description: 'every token of the user issued up to now' },
  broadcast: { endpoint: 'admin', payload: NotificationInput, reply: 'broadcasted', description: 'a notification to every `/ws/events` connection in the cluster' },
  start_tail: {
    endpoint: 'admin',
    payload: Type.Object({
      eventTypes: Type.Optional(Type.Array(SubscriptionPattern, { minItems: 1, maxItems: TAIL_MAX_PATTERNS, description: `1-${TAIL_MAX_PATTERNS} patterns; default \`["*"]\`` })),
      userId: Type.Optional(Id('only events of this user')),
    }),
    reply: 'tail_started',
    description: 'a live tail of every event published in the cluster that matches the filters (whatever the connection subscribed to; notifications not included), pushed as `tail`, capped per connection; replaces the connection\'s tail',
  },
  stop_tail: { endpoint: 'admin', payload: Nothing, reply: 'tail_stopped', description: '' },
  list_webhooks: { endpoint: 'admin', payload: Nothing, reply: 'webhooks', description: 'every webhook endpoint with its queue, breaker and latest attempts (what the dashboard shows)' },
} as const satisfies Record<string, ClientFrameDef>

export type ClientFrameType = keyof typeof ClientFrames
export type ServerFrameType = keyof typeof ServerFrames
/** The payload a client sends with `type`. */
export type ClientPayload<T extends ClientFrameType> = Static<typeof ClientFrames[T]['payload']>
/** The payload a server frame of `type` carries. */
export type ServerPayload<T extends ServerFrameType> = Static<typeof ServerFrames[T]['payload']>
