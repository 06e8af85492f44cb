import { Type } from '@sinclair/typebox'
import { NOTIFICATION_LEVELS } from '../events/model.js'
import { ID_PATTERN, ID_RULE, MAX_ID_LENGTH } from '../protocol/identifiers.js'
import { MAX_TYPE_LENGTH } from '../protocol/patterns.js'

const Id = (description: string) => Type.String({ minLength: 1, maxLength: MAX_ID_LENGTH, pattern: ID_PATTERN, description: `${description}: ${ID_RULE}` })

export const ErrorReply = Type.Object({
  error: Type.Object({ code: Type.String(), message: Type.String() }),
}, { $id: 'ErrorReply' })

export const Accepted = Type.Object({ id: Type.String({ description: 'event or notification id; ids from one node sort in publish order' }) })

export const EventBody = Type.Object({
  type: Type.String({ maxLength: MAX_TYPE_LENGTH, pattern: '^[a-z0-9_-]+(\\.[a-z0-9_-]+){0,11}$', description: 'dot-separated lowercase segments, e.g. authentication.login.success' }),
  userId: Type.Optional(Id('the user whose /ws/events connections may receive it')),
  sessionId: Type.Optional(Id('the session it concerns')),
  data: Type.Optional(Type.Record(Type.String(), Type.Unknown(), { description: 'free-form event data' })),
}, { additionalProperties: false })

export const NotificationBody = Type.Object({
  level: Type.Union(NOTIFICATION_LEVELS.map((l) => Type.Literal(l))),
  title: Type.String({ minLength: 1, maxLength: 200 }),
  message: Type.String({ minLength: 1, maxLength: 2000 }),
  data: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
}, { additionalProperties: false })

export const UserParams = Type.Object({ userId: Id('target user') })

export const SessionParams = Type.Object({ sessionId: Id('session to revoke') })

export const Revoked = Type.Object({
  revoked: Type.Union([Type.Literal('session'), Type.Literal('user')]),
  id: Type.String(),
  revokedAt: Type.String({ description: 'ISO time; user revocations cover tokens issued at or before this second' }),
})

export const ConnectionParams = Type.Object({ connectionId: Id('connection id from welcome or a listing') })

export const Connections = Type.Object({
  userId: Type.String(),
  connections: Type.Array(Type.Object({
    connectionId: Type.String(),
    serverId: Type.String(),
    userId: Type.String(),
    sessionId: Type.Union([Type.String(), Type.Null()]),
    ip: Type.String(),
    endpoint: Type.String(),
    connectedAt: Type.String(),
  })),
})

const Counts = Type.Object({ events: Type.Integer(), admin: Type.Integer(), total: Type.Integer() }, { additionalProperties: true })

/** GET /api/stats; open-ended objects, so a field added later is not dropped by the serializer. */
export const Stats = Type.Object({
  server: Type.Object({
    serverId: Type.String(),
    address: Type.String(),
    version: Type.String(),
    uptime: Type.Integer({ description: 'seconds' }),
    draining: Type.Boolean(),
    backend: Type.String({ description: 'memory or redis' }),
    redisConnected: Type.Boolean(),
    connections: Counts,
    users: Type.Integer(),
    eventsPublished: Type.Integer(),
    eventsDelivered: Type.Integer(),
    brokerMessagesIn: Type.Integer(),
    memory: Type.Object({ rss: Type.Integer(), heapUsed: Type.Integer() }),
  }, { additionalProperties: true }),
  global: Type.Union([Type.Null(), Type.Object({
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
      draining: Type.Boolean(),
      connections: Type.Integer(),
      socketio: Type.Integer(),
      users: Type.Integer(),
      eventsPublished: Type.Integer(),
      eventsDelivered: Type.Integer(),
      memoryRss: Type.Integer(),
      lastHeartbeat: Type.String(),
      uptime: Type.Integer(),
    }, { additionalProperties: true })),
  }, { additionalProperties: true })], { description: 'null while the cluster backend is unreachable' }),
  globalError: Type.Optional(Type.Object({ code: Type.String(), message: Type.String() })),
})
