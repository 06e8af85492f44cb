import { Type } from '@sinclair/typebox'
import { Id } from '../protocol/schema.js'

// The HTTP API's route schemas: the protocol's own (src/protocol/schema.ts),
// so the API validates a publish as the publisher library and /ws/admin do,
// and its OpenAPI (/docs) shows the same rules; plus the path parameters.
export { Accepted, Connections, ErrorReply, EventInput as EventBody, NotificationInput as NotificationBody, Revoked, Stats } from '../protocol/schema.js'

export const UserParams = Type.Object({ userId: Id('target user') })

export const SessionParams = Type.Object({ sessionId: Id('session to revoke') })

export const ConnectionParams = Type.Object({ connectionId: Id('connection id from welcome or a listing') })
