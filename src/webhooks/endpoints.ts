import { createHash, randomBytes } from 'node:crypto'
import { ATTEMPT_LOG, type AttemptRecord, type BreakerState, type EndpointRecord, type QueueStats, type SecretRecord, type WebhookStore } from '../backend/webhooks.js'
import { HeraldError } from '../errors.js'
import { MAX_WEBHOOKS } from '../protocol/schema.js'
import { urlRefusal } from './delivery.js'
import { newSecret, secretKey, SECRET_RULE } from './signing.js'
import type { AddressPolicy } from './ssrf.js'

// Managing endpoints: what /api/webhooks and the WEBHOOKS configuration do,
// over the backend's store. The schema (src/protocol/schema.ts) has checked
// the shapes; here the rules that need more than a shape: the URL against
// the delivery policy, the secret's key, rotation.

export interface EndpointRules {
  policy: AddressPolicy
  allowHttp: boolean
  /** ms a replaced secret keeps signing (WEBHOOK_SECRET_OVERLAP) */
  secretOverlapMs: number
}

/** An endpoint as configuration seeds it (WEBHOOKS): its id and secret are the operator's. */
export interface SeedEndpoint {
  id: string
  url: string
  eventTypes: string[]
  secret: string
  enabled?: boolean
  description?: string
}

export interface EndpointInput {
  url: string
  eventTypes: string[]
  secret?: string
  enabled?: boolean
  description?: string
}

export interface EndpointPatch {
  url?: string
  eventTypes?: string[]
  secret?: string
  rotateSecret?: boolean
  enabled?: boolean
  description?: string
}

export const newEndpointId = (): string => 'ep_' + randomBytes(12).toString('base64url')

/** Why `url` is refused, or null: the rules deliveries follow, for literal addresses; names are judged at each connection. */
export function checkUrl (url: string, rules: EndpointRules): void {
  const why = urlRefusal(url, rules)
  if (why !== null) throw new HeraldError('WEBHOOK_URL_REFUSED', `url: ${why}`)
}

export function checkSecret (secret: string, field = 'secret'): void {
  try { secretKey(secret) } catch { throw new HeraldError('VALIDATION', `${field} must be ${SECRET_RULE}`) }
}

/** The secrets after a rotation to `next`: the current one keeps signing for the overlap; expired ones go. */
function rotated (secrets: readonly SecretRecord[], next: string, now: number, overlapMs: number): SecretRecord[] {
  const kept = secrets.filter((s) => s.expiresAt !== null && s.expiresAt > now)
  const current = secrets.find((s) => s.expiresAt === null)
  const previous = current !== undefined && current.secret !== next && overlapMs > 0 ? [{ secret: current.secret, expiresAt: now + overlapMs }] : []
  return [{ secret: next, expiresAt: null }, ...previous, ...kept.filter((s) => s.secret !== next)]
}

export const seedDigest = (s: SeedEndpoint): string => createHash('sha256').update(JSON.stringify([s.url, s.eventTypes, s.secret, s.enabled ?? true, s.description ?? null])).digest('base64url')

export class EndpointService {
  constructor (private readonly store: WebhookStore, private readonly rules: EndpointRules) {}

  async create (input: EndpointInput, now = Date.now()): Promise<{ record: EndpointRecord, secret: string }> {
    checkUrl(input.url, this.rules)
    if (input.secret !== undefined) checkSecret(input.secret)
    const secret = input.secret ?? newSecret()
    const enabled = input.enabled ?? true
    const record: EndpointRecord = {
      id: newEndpointId(),
      url: input.url,
      eventTypes: [...new Set(input.eventTypes)],
      secrets: [{ secret, expiresAt: null }],
      enabled,
      ...(enabled ? {} : { disabledReason: 'operator' }),
      ...(input.description !== undefined ? { description: input.description } : {}),
      createdAt: now,
      updatedAt: now,
    }
    if (!await this.store.save(record, 'create', MAX_WEBHOOKS)) throw new HeraldError('TOO_MANY_WEBHOOKS')
    return { record, secret }
  }

  async get (id: string): Promise<EndpointRecord> {
    const e = await this.store.endpoint(id)
    if (e === null) throw new HeraldError('WEBHOOK_NOT_FOUND', `no webhook endpoint ${id}`)
    return e
  }

  async update (id: string, patch: EndpointPatch, now = Date.now()): Promise<{ record: EndpointRecord, secret?: string }> {
    const e = await this.get(id)
    if (patch.url !== undefined) checkUrl(patch.url, this.rules)
    if (patch.secret !== undefined) checkSecret(patch.secret)
    if (patch.secret !== undefined && patch.rotateSecret === true) throw new HeraldError('VALIDATION', 'body: give secret or rotateSecret, not both')
    const next = patch.rotateSecret === true ? newSecret() : patch.secret
    const enabled = patch.enabled ?? e.enabled
    const { disabledReason: _r, ...rest } = e
    const record: EndpointRecord = {
      ...rest,
      ...(patch.url !== undefined ? { url: patch.url } : {}),
      ...(patch.eventTypes !== undefined ? { eventTypes: [...new Set(patch.eventTypes)] } : {}),
      ...(patch.description !== undefined ? { description: patch.description } : {}),
      secrets: next === undefined ? e.secrets : rotated(e.secrets, next, now, this.rules.secretOverlapMs),
      enabled,
      ...(enabled ? {} : { disabledReason: patch.enabled === false ? 'operator' : e.disabledReason ?? 'operator' }),
      updatedAt: now,
    }
    if (!await this.store.save(record, 'update', MAX_WEBHOOKS)) throw new HeraldError('WEBHOOK_NOT_FOUND', `no webhook endpoint ${id}`)
    return { record, ...(next !== undefined ? { secret: next } : {}) }
  }

  async remove (id: string): Promise<void> {
    if (!await this.store.remove(id)) throw new HeraldError('WEBHOOK_NOT_FOUND', `no webhook endpoint ${id}`)
  }

  /**
   * The endpoints of the WEBHOOKS configuration: made when missing, and
   * written again when their definition there changed since (a secret changed
   * there rotates, with the overlap). One left as the API or a 410 made it
   * while its configuration stays the same is left alone.
   */
  async seed (seeds: readonly SeedEndpoint[], now = Date.now()): Promise<void> {
    for (const s of seeds) {
      const digest = seedDigest(s)
      const e = await this.store.endpoint(s.id)
      if (e !== null && e.seed === digest) continue
      const enabled = s.enabled ?? true
      const record: EndpointRecord = {
        id: s.id,
        url: s.url,
        eventTypes: [...new Set(s.eventTypes)],
        secrets: e === null ? [{ secret: s.secret, expiresAt: null }] : rotated(e.secrets, s.secret, now, this.rules.secretOverlapMs),
        enabled,
        ...(enabled ? {} : { disabledReason: 'operator' }),
        ...(s.description !== undefined ? { description: s.description } : {}),
        createdAt: e?.createdAt ?? now,
        updatedAt: now,
        seed: digest,
      }
      await this.store.save(record, 'upsert', MAX_WEBHOOKS)
    }
  }
}

/** What a listing adds to an endpoint: its queue, breaker and latest attempts. */
export interface EndpointState {
  readonly stats: QueueStats
  readonly breaker: BreakerState | undefined
  readonly attempts?: readonly AttemptRecord[]
}

/**
 * Every endpoint with its state, oldest first: what `GET /api/webhooks` and
 * the admin endpoint's `list_webhooks` (the dashboard) show.
 */
export async function listEndpoints (store: WebhookStore, now: number): Promise<Array<Record<string, unknown>>> {
  const list = (await store.endpoints()).sort((a, b) => a.createdAt - b.createdAt)
  const [stats, breakers, logs] = await Promise.all([
    store.stats(list.map((e) => e.id)),
    store.breakers(),
    Promise.all(list.map(async (e) => await store.attempts(e.id, ATTEMPT_LOG))),
  ])
  return list.map((e, i) => endpointView(e, now, { stats: stats.get(e.id)!, breaker: breakers.get(e.id), attempts: logs[i] }))
}

function recentOf (attempts: readonly AttemptRecord[]): Record<string, unknown> {
  const last = attempts[0]
  return {
    attempts: attempts.length,
    failed: attempts.filter((a) => a.outcome !== 'success').length,
    ...(last !== undefined
      ? { last: { at: new Date(last.at).toISOString(), outcome: last.outcome, ...(last.status !== undefined ? { status: last.status } : {}), ...(last.error !== undefined ? { error: last.error } : {}) } }
      : {}),
  }
}

/** An endpoint as the API shows it: never a secret. */
export function endpointView (e: EndpointRecord, now: number, queue?: EndpointState): Record<string, unknown> {
  const previous = e.secrets.filter((s) => s.expiresAt !== null && s.expiresAt > now).map((s) => s.expiresAt!)
  const b = queue?.breaker
  return {
    id: e.id,
    url: e.url,
    eventTypes: e.eventTypes,
    enabled: e.enabled,
    ...(e.disabledReason !== undefined ? { disabledReason: e.disabledReason } : {}),
    ...(e.description !== undefined ? { description: e.description } : {}),
    createdAt: new Date(e.createdAt).toISOString(),
    updatedAt: new Date(e.updatedAt).toISOString(),
    ...(previous.length > 0 ? { secretRotation: { previousExpiresAt: new Date(Math.max(...previous)).toISOString() } } : {}),
    seeded: e.seed !== undefined,
    ...(queue !== undefined
      ? {
          queue: {
            depth: queue.stats.depth,
            oldestAgeMs: queue.stats.oldestAt === null ? null : Math.max(0, now - queue.stats.oldestAt),
            breaker: b?.phase ?? 'closed',
            ...(b !== undefined && b.phase === 'open' ? { breakerUntil: new Date(b.until).toISOString() } : {}),
          },
        }
      : {}),
    ...(queue?.attempts !== undefined ? { recent: recentOf(queue.attempts) } : {}),
  }
}
