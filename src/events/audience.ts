// Who may receive what (docs/protocol.md, Audience), expressed as the channels an
// event is published on. Precedence: admin.* > group > userId > system.*.
//
//   admin.*              -> admin channel: admins only
//   has group            -> that group's channel, plus the admin channel
//   has userId           -> that user's channel, plus the admin channel
//   system.*             -> broadcast channel: every subscribed user and admin
//   anything else        -> admin channel (no user is its audience)
//
// A system.* event that names a user carries that user's data (and session),
// so it is that user's event: broadcasting it would show one user's event to
// everyone. An event for a group is the group's, whatever its type.
//
// A node subscribes to a user's channel only while it holds that user's
// /ws/events connections, and to a group's only while it holds connections of
// its members, so no user can receive another user's event, nor a group's it
// is not in. mayRead() says the same of reading a stream back.

import type { Stream } from '../protocol/streams.js'

export type Route = 'user' | 'group' | 'broadcast' | 'admin'

const ADMIN_ONLY: readonly Route[] = ['admin']
const BROADCAST: readonly Route[] = ['broadcast']
const USER_AND_ADMIN: readonly Route[] = ['user', 'admin']
const GROUP_AND_ADMIN: readonly Route[] = ['group', 'admin']

export function routesFor (type: string, userId: string | undefined, group?: string): readonly Route[] {
  if (type === 'admin' || type.startsWith('admin.')) return ADMIN_ONLY
  if (group !== undefined) return GROUP_AND_ADMIN
  if (userId !== undefined) return USER_AND_ADMIN
  if (type === 'system' || type.startsWith('system.')) return BROADCAST
  return ADMIN_ONLY
}

/** What mayRead needs to know of a connection. */
export interface Reader {
  readonly kind: 'events' | 'admin'
  readonly userId: string
  /** anonymous guest: the broadcast only */
  readonly guest: boolean
  /** is the reader's user a member of `group` now (token claim or API) */
  isMember (group: string): boolean
}

/**
 * May this connection read stream X: the one answer to it, for the live
 * channels above and for reading a stream back. A user reads its own stream,
 * the broadcast, and the streams of the groups it is a member of; an admin
 * connection, the admin stream and the broadcast (admins see users' and
 * groups' events live, on the admin channel, and do not resume them).
 */
export function mayRead (reader: Reader, stream: Stream): boolean {
  switch (stream.kind) {
    case 'broadcast': return true
    case 'admin': return reader.kind === 'admin'
    case 'user': return reader.kind === 'events' && !reader.guest && stream.userId === reader.userId
    case 'group': return reader.kind === 'events' && !reader.guest && reader.isMember(stream.group)
  }
}
