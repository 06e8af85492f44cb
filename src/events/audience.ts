// Who may receive what (docs/protocol.md, Audience), expressed as the channels an
// event is published on. Precedence: admin.* > userId > system.*.
//
//   admin.*              -> admin channel: admins only
//   has userId           -> that user's channel, plus the admin channel
//   system.*             -> broadcast channel: every subscribed user and admin
//   anything else        -> admin channel (no user is its audience)
//
// A system.* event that names a user carries that user's data (and session),
// so it is that user's event: broadcasting it would show one user's event to
// everyone.
//
// A node subscribes to a user's channel only while it holds that user's
// /ws/events connections, so no user can receive another user's event.

export type Route = 'user' | 'broadcast' | 'admin'

const ADMIN_ONLY: readonly Route[] = ['admin']
const BROADCAST: readonly Route[] = ['broadcast']
const USER_AND_ADMIN: readonly Route[] = ['user', 'admin']

export function routesFor (type: string, userId: string | undefined): readonly Route[] {
  if (type === 'admin' || type.startsWith('admin.')) return ADMIN_ONLY
  if (userId !== undefined) return USER_AND_ADMIN
  if (type === 'system' || type.startsWith('system.')) return BROADCAST
  return ADMIN_ONLY
}
