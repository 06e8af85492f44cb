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


import { ADMIN_STREAM, BROADCAST_STREAM, groupStream, parseStream, streamName, userStream } from '../protocol/streams.js'

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

// --- Which streams a connection reads (src/protocol/streams.ts)
//
// The one answer to "may this connection read stream X", for reading a
// stream back (resume) as for what it receives live on the stream's own
// channel: its user's stream, the broadcast, and the streams of the groups
// it is a member of now; on /ws/admin the admin stream and the broadcast (a
// user's or a group's events reach admins live on the admin channel, but
// that copy is no admin's stream to resume).

/** What decides a connection's streams: its endpoint, its user, whether it is a guest, its groups. */
export interface Reader {
  readonly kind: 'events' | 'admin'
  readonly userId: string
  readonly guest: boolean
  /** the groups its user is a member of now (token claim or the API), as the node applies them; null: none */
  readonly groups: ReadonlySet<string> | null
}

/** The streams `r` reads, by name. */
export function readableStreams (r: Reader): readonly string[] {
  if (r.kind === 'admin') return ADMIN_READS
  if (r.guest) return GUEST_READS
  const out = [streamName(userStream(r.userId)), BROADCAST_NAME]
  if (r.groups !== null) for (const g of r.groups) out.push(streamName(groupStream(g)))
  return out
}

/** May `r` read the stream named `name` (a name src/protocol/streams.ts parsed)? */
export function mayRead (r: Reader, name: string): boolean {
  if (name === BROADCAST_NAME) return true
  if (name === ADMIN_NAME) return r.kind === 'admin'
  if (r.kind !== 'events' || r.guest) return false
  const s = parseStream(name)
  if (s === null) return false
  if (s.kind === 'group') return r.groups?.has(s.group) === true
  return s.kind === 'user' && s.userId === r.userId
}

const BROADCAST_NAME = streamName(BROADCAST_STREAM)
const ADMIN_NAME = streamName(ADMIN_STREAM)
const ADMIN_READS: readonly string[] = [ADMIN_NAME, BROADCAST_NAME]
const GUEST_READS: readonly string[] = [BROADCAST_NAME]
