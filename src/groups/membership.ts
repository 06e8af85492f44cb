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
//
// The message says which membership changed, not what it became: two calls
// on two nodes (an add and a remove of one user) can write the store in one
// order and announce in the other, and a node that applied each message as
// it came would be left with the first write. Each node reads the user's
// groups again when a message comes, and applies what the store holds then:
// the last message to come is read after both writes.

/** A change the API made, as it travels on the user's channel. */
export interface MembershipChange { group: string, userId: string, member: boolean }

export const MEMBERSHIP_CONTROL = 'group'

// Reads of a user's groups on this node, numbered as issued. They go out in
// that order (the groups store batches them per turn, in order) to the
// shard of the user's set, one connection, so they are answered in that
// order too: a higher number is a later state of the store. Two
// exceptions, on a standalone Redis, where a turn's reads are a script call:
// if Redis forgets the script (SCRIPT FLUSH), ioredis sends it again after
// what it had queued meanwhile; and a turn whose users' sets are too large
// for one call reads the rest in another once the first has answered. Either
// way some reads are answered after later ones. A membership applied from
// them may then be an older state than one applied before, until the next
// change is announced and read.
let reads = 0

// A connection whose groups are being read: the read's number, and what the
// messages heard meanwhile found, applied after the read only if read later.
const loading = new WeakMap<Connection, { read: number, heard: Array<{ read: number, change: MembershipChange }> }>()

/**
 * Joins a new connection to its user's groups; resolves once their events
 * reach it (send `welcome` after). Admin connections and guests have none.
 */
export async function joinGroups (h: Herald, conn: Connection): Promise<void> {
  if (conn.kind !== 'events' || conn.guest) return
  const claimed = conn.identity.groups ?? []
  const state = { read: ++reads, heard: [] as Array<{ read: number, change: MembershipChange }> }
  loading.set(conn, state)
  const read = await h.backend.groups.groupsOf(conn.userId).then((groups) => ({ groups }), (err: unknown) => ({ err }))
  loading.delete(conn)
  if ('err' in read) throw read.err
  // Closed meanwhile: the hub let go of it already, and must not hold channels for it again.
  if (conn.closed) return
  const want = new Set([...claimed, ...read.groups])
  // A change applied before this read began (its own read answered earlier,
  // so older than this one): the read stands over it.
  for (const g of [...(conn.groups ?? [])]) if (!want.has(g)) h.hub.leaveGroup(conn, g)
  const joins: Array<Promise<void>> = []
  for (const g of want) if (isGroupName(g)) joins.push(h.hub.joinGroup(conn, g))
  for (const x of state.heard) if (x.read > state.read) apply(h, conn, x.change)
  await Promise.all(joins)
}

/**
 * A change the API made (control message): the store read again, and what it
 * holds applied to the user's connections on this node. Unreadable, the
 * message's word is taken instead.
 */
export function applyMembership (h: Herald, arg: unknown): void {
  const c = arg as Partial<MembershipChange> | null
  if (c === null || typeof c !== 'object' || !isGroupName(c.group) || typeof c.userId !== 'string' || typeof c.member !== 'boolean') return
  const { group, userId, member } = c
  let held = false
  h.connections.forEachOfUser(userId, () => { held = true })
  if (!held) return
  const read = ++reads
  const settle = (now: boolean): void => {
    const change: MembershipChange = { group, userId, member: now }
    h.connections.forEachOfUser(userId, (conn) => {
      const state = loading.get(conn)
      if (state !== undefined) state.heard.push({ read, change })
      else apply(h, conn, change)
    })
  }
  h.backend.groups.groupsOf(userId).then((groups) => settle(groups.includes(group)), (err: unknown) => {
    h.log.warn({ error: (err as Error).message, group }, 'could not read a changed group membership; applied as announced')
    settle(member)
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
