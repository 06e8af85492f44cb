import type { Revocation } from '../auth/revocation.js'
import { inTime } from '../backend/deadline.js'
import type { Herald } from '../context.js'
import { HeraldError } from '../errors.js'
import type { NotificationInput } from '../events/model.js'
import { receipt, type Placement } from '../events/publisher.js'
import type { ConnectionRecord } from '../limits/connection-limiter.js'

// Operator actions, shared by /ws/admin and the HTTP API. Each one is
// published as an admin.* event (the audit trail admins can subscribe to).

/** Who acted: an admin or service token's subject, or an API key. */
export interface Actor { kind: 'admin' | 'service' | 'api-key', id: string }

export const DISCONNECTED_REASON = 'disconnected by an administrator'

// An operator waits for an answer: a frozen Redis (SIGSTOP keeps its socket
// open, so the client looks connected) must give a 503 in seconds, not hang.
const BACKEND_DEADLINE_MS = 3000

/**
 * `work` against the backend, or BACKEND_UNAVAILABLE when it is down or does
 * not answer in time. Work past the deadline may still apply: `ifLate` says
 * what the caller should do about it, for work a retry would repeat (a
 * create makes a second one); by default, retry.
 */
export async function withBackend<T> (h: Herald, what: string, work: () => Promise<T>, ifLate = 'retry (it is idempotent)'): Promise<T> {
  if (!h.probe.healthy) throw new HeraldError('BACKEND_UNAVAILABLE', `${what}: the cluster backend is unreachable`)
  return await inTime(work(), BACKEND_DEADLINE_MS, () => new HeraldError('BACKEND_UNAVAILABLE', `${what}: the cluster backend did not answer within ${BACKEND_DEADLINE_MS} ms; it may still apply, so ${ifLate}`))
}

async function audit (h: Herald, type: string, actor: Actor, data: Record<string, unknown>, userId?: string): Promise<void> {
  await h.publisher.publishEvent({ type, ...(userId !== undefined ? { userId } : {}), data: { actor, ...data } })
}

export interface ConnectionView {
  connectionId: string
  serverId: string
  userId: string
  sessionId: string | null
  ip: string
  endpoint: 'events' | 'admin'
  connectedAt: string
}

const view = (r: ConnectionRecord): ConnectionView => ({
  connectionId: r.connectionId, serverId: r.serverId, userId: r.userId, sessionId: r.sessionId, ip: r.ip, endpoint: r.endpoint, connectedAt: new Date(r.openedAt).toISOString(),
})

export async function listConnections (h: Herald, userId: string): Promise<ConnectionView[]> {
  return (await withBackend(h, 'listing connections', async () => await h.connectionLimiter.connectionsOf(userId))).map(view)
}

/** Closes one connection (4003) wherever it is. */
export async function disconnectConnection (h: Herald, actor: Actor, connectionId: string): Promise<void> {
  await withBackend(h, 'the disconnect', async () => {
    await h.publisher.publishControl('disconnect', { connectionId }, null)
    await audit(h, 'admin.connection.disconnected', actor, { connectionId })
  })
}

/** Closes every connection of a user (4003) on every node; their tokens stay valid. */
export async function disconnectUser (h: Herald, actor: Actor, userId: string): Promise<void> {
  await withBackend(h, 'the disconnect', async () => {
    await h.publisher.publishControl('disconnect', { userId }, null)
    await audit(h, 'admin.user.disconnected', actor, { targetUserId: userId }, userId)
  })
}

/** Durable first (new connections everywhere refuse it), then the live disconnects (4004). */
export async function revoke (h: Herald, actor: Actor, r: Revocation): Promise<{ revoked: 'session' | 'user', id: string, revokedAt: string }> {
  // A revocation that cannot be stored must fail loudly, not wait for Redis.
  await withBackend(h, 'the revocation', async () => await h.revocations.revoke(r))
  await h.publisher.publishControl('revoke', r, null)
  const id = r.kind === 'session' ? r.sessionId : r.userId
  await audit(h, r.kind === 'session' ? 'admin.session.revoked' : 'admin.user.revoked', actor, r.kind === 'session' ? { sessionId: id } : { targetUserId: id }, r.kind === 'user' ? id : undefined)
  return { revoked: r.kind, id, revokedAt: new Date(r.at).toISOString() }
}

/** Answers as a publish does: the notification's id, and its stream and position when history is on. */
export async function broadcast (h: Herald, actor: Actor, n: NotificationInput): Promise<{ id: string } & Placement> {
  const sent = await h.publisher.publishNotification(n, null)
  await audit(h, 'admin.notification.broadcast', actor, { notificationId: sent.id, level: n.level, title: n.title })
  return receipt(sent)
}
