import { GROUP_RULE, isGroupName } from './groups.js'
import { ID_RULE, isId, MAX_ID_LENGTH } from './identifiers.js'

// Stream names: every event and notification belongs to exactly one stream,
// which gives it its position (offset and epoch). This file is the one place
// that knows the shapes a name may take; everything else (channels, keys, the
// API's path parameter, `since` and `positions` in frames) goes through it.
//
//   user:<userId>  events naming a user (admin.* aside), notifications to a user
//   broadcast      system.* events naming no user, broadcast notifications
//   admin          admin.* events, and events no user may receive
//   group:<name>   events for the members of a group (src/protocol/groups.ts)

export type Stream =
  | { readonly kind: 'user', readonly userId: string }
  | { readonly kind: 'broadcast' }
  | { readonly kind: 'admin' }
  | { readonly kind: 'group', readonly group: string }

export const BROADCAST_STREAM: Stream = { kind: 'broadcast' }
export const ADMIN_STREAM: Stream = { kind: 'admin' }

const USER = 'user:'
const GROUP = 'group:'

/** The longest name in UTF-16 units (a user id is at most two per character): the router must let it through to the parser. */
export const MAX_STREAM_NAME_LENGTH = USER.length + 2 * MAX_ID_LENGTH

/** The shapes in words, for refusals and descriptions. */
export const STREAM_RULE = `\`user:<userId>\` (userId: ${ID_RULE}), \`group:<name>\` (name: ${GROUP_RULE}), \`broadcast\` or \`admin\``

export const userStream = (userId: string): Stream => ({ kind: 'user', userId })
export const groupStream = (group: string): Stream => ({ kind: 'group', group })

export function streamName (s: Stream): string {
  return s.kind === 'user' ? USER + s.userId : s.kind === 'group' ? GROUP + s.group : s.kind
}

/** The stream a name names, or null when it is no stream's name. */
export function parseStream (name: unknown): Stream | null {
  if (typeof name !== 'string') return null
  if (name === 'broadcast') return BROADCAST_STREAM
  if (name === 'admin') return ADMIN_STREAM
  if (name.startsWith(USER)) {
    const userId = name.slice(USER.length)
    return isId(userId) ? userStream(userId) : null
  }
  if (name.startsWith(GROUP)) {
    const group = name.slice(GROUP.length)
    return isGroupName(group) ? groupStream(group) : null
  }
  return null
}
