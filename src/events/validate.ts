import { HeraldError } from '../errors.js'
import { ID_RULE, isId } from '../protocol/identifiers.js'
import { parseEventType } from '../protocol/patterns.js'
import { checkDataDepth } from './depth.js'
import { NOTIFICATION_LEVELS, type EventInput, type NotificationInput } from './model.js'

// The publish API's rules as code, for publishers that bypass HTTP (the
// backend publisher writing straight to Redis). The HTTP schemas in
// src/http/schemas.ts state the same rules for Fastify.

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v)
const MAX_DATA_BYTES = 60 * 1024

function invalid (message: string): never { throw new HeraldError('VALIDATION', message) }

export function validateEvent (e: EventInput): EventInput {
  if (parseEventType(e.type) === null) invalid(`type ${JSON.stringify(e.type)} is not dot-separated lowercase segments`)
  if (e.userId !== undefined && !isId(e.userId)) invalid(`userId must be ${ID_RULE}`)
  if (e.sessionId !== undefined && !isId(e.sessionId)) invalid(`sessionId must be ${ID_RULE}`)
  if (e.data !== undefined && !isObject(e.data)) invalid('data must be an object')
  // Before anything serialises it: JSON.stringify overflows the stack on deep nesting.
  checkDataDepth(e.data)
  if (e.data !== undefined && JSON.stringify(e.data).length > MAX_DATA_BYTES) invalid(`data must serialise to at most ${MAX_DATA_BYTES} bytes`)
  return e
}

export function validateNotification (n: NotificationInput, userId: string | null): NotificationInput {
  if (!(NOTIFICATION_LEVELS as readonly string[]).includes(n.level)) invalid(`level must be one of ${NOTIFICATION_LEVELS.join(', ')}`)
  if (typeof n.title !== 'string' || n.title.length < 1 || n.title.length > 200) invalid('title must be 1-200 characters')
  if (typeof n.message !== 'string' || n.message.length < 1 || n.message.length > 2000) invalid('message must be 1-2000 characters')
  if (n.data !== undefined && !isObject(n.data)) invalid('data must be an object')
  checkDataDepth(n.data)
  if (userId !== null && !isId(userId)) invalid(`userId must be ${ID_RULE}`)
  return n
}
