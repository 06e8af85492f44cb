import type { Recipients } from '../events/hub.js'
import type { Connection, Endpoint, Transport } from './connection.js'

/** A user's /ws/events connections: the one connection itself, or a Set from the second. */
type Held = Connection | Set<Connection>

/**
 * This node's open connections, the one registry of them. Lifecycle
 * (lifecycle.ts) adds a connection once it opens and removes it when it
 * closes; everyone else looks up: by id (control messages), by user (the
 * hub's delivery, which finds its recipients here), counts by endpoint and
 * transport (stats, metrics, the node's capacity), iteration (drain,
 * heartbeat, revocations, operator disconnects).
 */
export class Connections implements Recipients {
  private readonly byId = new Map<string, Connection>()
  // A user's one connection is held as is, a Set only from the second: most
  // users have one, and a Set costs ~150 bytes on every idle connection.
  private readonly byUser = new Map<string, Held>()
  /** guests are in no user's entry: each is its own user, with no user channel */
  private readonly guests = new Set<Connection>()
  private readonly adminSet = new Set<Connection>()
  private readonly perEndpoint: Record<Endpoint, number> = { events: 0, admin: 0 }
  private readonly perTransport: Record<Transport, number> = { ws: 0, 'socket.io': 0 }
  /** frames written to this node's connections since boot, by endpoint; the send path only increments */
  readonly framesOut: Record<Endpoint, number> = { events: 0, admin: 0 }

  /** open connections */
  get size (): number { return this.byId.size }

  /** distinct signed-in users with /ws/events connections */
  get users (): number { return this.byUser.size }

  /** open connections by endpoint */
  get endpoints (): Readonly<Record<Endpoint, number>> { return this.perEndpoint }

  /** open connections by transport */
  get transports (): Readonly<Record<Transport, number>> { return this.perTransport }

  add (c: Connection): void {
    // Ids are random UUIDs: a second one would corrupt the counts and the hub's channel holds.
    if (this.byId.has(c.id)) throw new Error(`connection ${c.id} is registered already`)
    this.byId.set(c.id, c)
    this.perEndpoint[c.kind]++
    this.perTransport[c.transport]++
    if (c.kind === 'admin') { this.adminSet.add(c); return }
    if (c.guest) { this.guests.add(c); return }
    const held = this.byUser.get(c.userId)
    if (held === undefined) this.byUser.set(c.userId, c)
    else if (held instanceof Set) held.add(c)
    else this.byUser.set(c.userId, new Set([held, c]))
  }

  /** False when the connection was not here (closed before it was added). */
  delete (c: Connection): boolean {
    if (this.byId.get(c.id) !== c) return false
    this.byId.delete(c.id)
    this.perEndpoint[c.kind]--
    this.perTransport[c.transport]--
    if (c.kind === 'admin') { this.adminSet.delete(c); return true }
    if (c.guest) { this.guests.delete(c); return true }
    const held = this.byUser.get(c.userId)
    if (held === c) this.byUser.delete(c.userId)
    else if (held instanceof Set && held.delete(c) && held.size === 1) this.byUser.set(c.userId, held.values().next().value!)
    return true
  }

  get (id: string): Connection | undefined { return this.byId.get(id) }

  /** Every open connection. */
  values (): IterableIterator<Connection> { return this.byId.values() }

  /** Open /ws/admin connections. */
  admins (): IterableIterator<Connection> { return this.adminSet.values() }

  /** A signed-in user's /ws/events connections (no guest, no admin connection). */
  forEachOfUser (userId: string, f: (c: Connection) => void): void {
    const held = this.byUser.get(userId)
    if (held instanceof Set) for (const c of held) f(c)
    else if (held !== undefined) f(held)
  }

  /** Every /ws/events connection, guests included. */
  forEachOnEvents (f: (c: Connection) => void): void {
    for (const held of this.byUser.values()) {
      if (held instanceof Set) for (const c of held) f(c)
      else f(held)
    }
    for (const c of this.guests) f(c)
  }
}
