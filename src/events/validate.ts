import { HeraldError } from '../errors.js'
import { ID_RULE, isId } from '../protocol/identifiers.js'
import { checkEventInput, checkNotificationInput } from '../protocol/validation.js'
import { checkDataDepth } from './depth.js'
import type { EventInput, NotificationInput } from './model.js'

// The publish API's rules (src/protocol/schema.ts, the same schemas the HTTP
// API validates with), for publishers that bypass HTTP (the backend
// publisher writing straight to Redis).

const MAX_DATA_BYTES = 60 * 1024

function invalid (message: string): never { throw new HeraldError('VALIDATION', message) }

/**
 * The event checked, and its data serialised (`{}` when it has none): what
 * measured the data is what the message carries, so it is serialised once.
 * `maxDataBytes`: a client's publish is bounded by its frame (MAX_PUBLISH_BYTES) instead.
 */
export function validateEvent (e: EventInput, maxDataBytes = MAX_DATA_BYTES): { input: EventInput, dataJson: string } {
  const wrong = checkEventInput(e)
  if (wrong !== null) invalid(wrong)
  if (e.group !== undefined && e.userId !== undefined) invalid('an event goes to a user or to a group: give userId or group, not both')
  // Before anything serialises it: JSON.stringify overflows the stack on deep nesting.
  checkDataDepth(e.data)
  if (e.data === undefined) return { input: e, dataJson: '{}' }
  const dataJson = JSON.stringify(e.data)
  if (dataJson.length > maxDataBytes) invalid(`data must serialise to at most ${maxDataBytes} bytes`)
  return { input: e, dataJson }
}

export function validateNotification (n: NotificationInput, userId: string | null): NotificationInput {
  const wrong = checkNotificationInput(n)
  if (wrong !== null) invalid(wrong)
  checkDataDepth(n.data)
  if (userId !== null && !isId(userId)) invalid(`userId must be ${ID_RULE}`)
  return n
}
