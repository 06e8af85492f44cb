import { Type } from '@sinclair/typebox'
import { Id } from '../protocol/schema.js'
import { MAX_STREAM_NAME_LENGTH, STREAM_RULE } from '../protocol/streams.js'

// The HTTP API's route schemas: the protocol's own (src/protocol/schema.ts),
// so the API validates a publish as the publisher library and /ws/admin do,
// and its OpenAPI (/docs) shows the same rules; plus the path parameters.
export { Accepted, BatchAccepted, Connections, ErrorReply, EventBatch as EventBatchBody, EventInput as EventBody, NotificationInput as NotificationBody, Revoked, Stats, StreamPage, StreamQuery } from '../protocol/schema.js'

export const UserParams = Type.Object({ userId: Id('target user') })

export const SessionParams = Type.Object({ sessionId: Id('session to revoke') })

export const ConnectionParams = Type.Object({ connectionId: Id('connection id from welcome or a listing') })

/** Its shape is checked by the one parser of stream names (src/protocol/streams.ts): an unknown one is 404 UNKNOWN_STREAM. */
export const StreamParams = Type.Object({ stream: Type.String({ minLength: 1, maxLength: MAX_STREAM_NAME_LENGTH, description: `the stream: ${STREAM_RULE}` }) })
