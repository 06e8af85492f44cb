import { ADMIN_STREAM, BROADCAST_STREAM, streamName, userStream } from '../protocol/streams.js'

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

// --- Which streams a connection reads (src/protocol/streams.ts)
//
// The one answer to "may this connection read stream X": `welcome` lists the
// positions of exactly these streams, and a `since` naming any other is
// refused (STREAM_FORBIDDEN) before anything is read. Group streams join here,
// with the membership they need. What a connection may read is what it would
// receive live on the stream's own channel; a user's events also reach admins
// live on the admin channel, but that copy is no admin's stream to resume.

/** What decides a connection's streams: its endpoint, its user, whether it is a guest. */
export interface Reader {
  readonly kind: 'events' | 'admin'
  readonly userId: string
  readonly guest: boolean
}

/** The streams `r` reads, by name: its own user's and the broadcast on /ws/events (the broadcast alone for a guest); the admin stream and the broadcast on /ws/admin. */
export function readableStreams (r: Reader): readonly string[] {
  if (r.kind === 'admin') return ADMIN_READS
  return r.guest ? GUEST_READS : [streamName(userStream(r.userId)), BROADCAST_NAME]
}

/** May `r` read the stream named `name` (a name src/protocol/streams.ts parsed)? */
export function mayRead (r: Reader, name: string): boolean {
  if (name === BROADCAST_NAME) return true
  if (name === ADMIN_NAME) return r.kind === 'admin'
  return r.kind === 'events' && !r.guest && name === streamName(userStream(r.userId))
}

const BROADCAST_NAME = streamName(BROADCAST_STREAM)
const ADMIN_NAME = streamName(ADMIN_STREAM)
const ADMIN_READS: readonly string[] = [ADMIN_NAME, BROADCAST_NAME]
const GUEST_READS: readonly string[] = [BROADCAST_NAME]
