import type { Herald } from '../context.js'
import type { Connection } from '../endpoints/connection.js'
import { isGroupName } from '../protocol/groups.js'

// Which groups a connection's user is in, as this node knows it: the token's
// `groups` claim (for the token's life) and what the API set (the backend's
// GroupStore), read when the connection opens and kept current by a control
// message on the user's channel for every change the API makes. That channel
// reaches exactly the nodes holding the user's connections, so a change holds
// on every node within a pub/sub hop. Membership decides what the hub
// delivers (src/events/hub.ts) and whether a publish into a group is allowed.

/** A change the API made, as it travels on the user's channel. */
export interface MembershipChange { group: string, userId: string, member: boolean }

export const MEMBERSHIP_CONTROL = 'group'

// Changes heard while a connection's groups are being read: applied after
// the read, in order, so a leave heard mid-read is not undone by the read's
// older answer.
const loading = new WeakMap<Connection, MembershipChange[]>()

/**
 * Joins a new connection to its user's groups; resolves once their events
 * reach it (send `welcome` after). Admin connections and guests have none.
 */
export async function joinGroups (h: Herald, conn: Connection): Promise<void> {
  if (conn.kind !== 'events' || conn.guest) return
  const claimed = conn.identity.groups ?? []
  loading.set(conn, [])
  const read = await h.backend.groups.groupsOf(conn.userId).then((groups) => ({ groups }), (err: unknown) => ({ err }))
  const pending = loading.get(conn) ?? []
  loading.delete(conn)
  if ('err' in read) throw read.err
  // Closed meanwhile: the hub let go of it already, and must not hold channels for it again.
  if (conn.closed) return
  const stored = read.groups
  const joins: Array<Promise<void>> = []
  for (const g of new Set([...claimed, ...stored])) if (isGroupName(g)) joins.push(h.hub.joinGroup(conn, g))
  for (const c of pending) apply(h, conn, c)
  await Promise.all(joins)
}

/** A change the API made (control message): applied to the user's connections on this node. */
export function applyMembership (h: Herald, arg: unknown): void {
  const c = arg as Partial<MembershipChange> | null
  if (c === null || typeof c !== 'object' || !isGroupName(c.group) || typeof c.userId !== 'string' || typeof c.member !== 'boolean') return
  const change: MembershipChange = { group: c.group, userId: c.userId, member: c.member }
  h.connections.forEachOfUser(change.userId, (conn) => {
    const queued = loading.get(conn)
    if (queued !== undefined) queued.push(change)
    else apply(h, conn, change)
  })
}

function apply (h: Herald, conn: Connection, c: MembershipChange): void {
  if (conn.closed) return
  if (c.member) {
    h.hub.joinGroup(conn, c.group).catch((err: unknown) => conn.log.warn({ err: { message: (err as Error).message }, group: c.group }, 'could not listen on a group channel'))
  } else if (conn.identity.groups?.includes(c.group) !== true) {
    // A token that names the group keeps it for its life: revoke the token to end that.
    h.hub.leaveGroup(conn, c.group)
  }
}

/** Tells every node holding the user's connections (this one included). */
export async function announce (h: Herald, change: MembershipChange): Promise<void> {
  await h.publisher.publishControl(MEMBERSHIP_CONTROL, change, change.userId)
}

/**
 * An in-band `refresh` replaced the connection's token: groups its new
 * `groups` claim adds are joined; groups the old claim gave and the new one
 * does not are left unless the API made the user a member (read again), so
 * a token reissued without a group ends that group's events on the
 * connections it refreshed. Call after `conn.identity` is the new one.
 */
export async function reclaimGroups (h: Herald, conn: Connection, previous: readonly string[]): Promise<void> {
  if (conn.kind !== 'events' || conn.guest) return
  const now = conn.identity.groups ?? []
  const dropped = previous.filter((g) => !now.includes(g))
  const joins = now.filter(isGroupName).map(async (g) => await h.hub.joinGroup(conn, g))
  if (dropped.length > 0) {
    // Unreadable: left all the same (closed rather than open); an API membership comes back with the next connection.
    const stored = new Set(await h.backend.groups.groupsOf(conn.userId).catch(() => []))
    for (const g of dropped) if (!stored.has(g) && !conn.closed) h.hub.leaveGroup(conn, g)
  }
  await Promise.all(joins)
}
