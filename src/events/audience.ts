// Who may receive what (brief §5, Audience), expressed as the channels an
// event is published on. Precedence: admin.* > system.* > userId.
//
//   admin.*              -> admin channel: admins only
//   system.*             -> broadcast channel: every subscribed user and admin
//   has userId           -> that user's channel, plus the admin channel
//   anything else        -> admin channel (no user is its audience)
//
// A node subscribes to a user's channel only while it holds that user's
// /ws/events connections, so no user can receive another user's event.

export type Route = 'user' | 'broadcast' | 'admin'

const ADMIN_ONLY: readonly Route[] = ['admin']
const BROADCAST: readonly Route[] = ['broadcast']
const USER_AND_ADMIN: readonly Route[] = ['user', 'admin']

export function routesFor (type: string, userId: string | undefined): readonly Route[] {
  if (type === 'admin' || type.startsWith('admin.')) return ADMIN_ONLY
  if (type === 'system' || type.startsWith('system.')) return BROADCAST
  if (userId !== undefined) return USER_AND_ADMIN
  return ADMIN_ONLY
}
