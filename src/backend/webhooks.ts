// Outbound webhooks on the backend: the endpoints every node and publisher
// reads, and the durable queue of deliveries with its retries, dead letters,
// circuit breakers and recent attempts. Memory (webhooks-memory.ts) and Redis
// (webhooks-redis.ts) implementations run the contract suite
// test/backend/webhooks.test.ts. What a node does with it (matching, signing,
// the HTTP call, the schedule) is src/webhooks/.
//
// Keys (Redis), all under one hash tag so each script runs on a Redis Cluster:
//   <prefix>{wh}:ep        hash   endpoint id -> its definition (JSON)
//   <prefix>{wh}:on        set    ids of enabled endpoints
//   <prefix>{wh}:off       hash   id -> why it is disabled
//   <prefix>{wh}:ver       string +1 on every change of the three above
//   <prefix>{wh}:q:<id>    stream deliveries ready to be tried (group `d`;
//                                 a claimed one sits in the group's pending
//                                 list under the node that claimed it)
//   <prefix>{wh}:r:<id>    zset   retries: "<attempts>\t<job>" by due time
//   <prefix>{wh}:age:<id>  zset   webhook-id of every undelivered job by first enqueue time
//   <prefix>{wh}:dl:<id>   zset   dead letters by time; :dlb:<id> their jobs, :dlm:<id> why
//   <prefix>{wh}:log:<id>  list   the latest attempts (JSON), newest first
//   <prefix>{wh}:br        hash   endpoint id -> its breaker
//   <prefix>{wh}:wake      channel  published when deliveries become ready

import { pageEnd } from './page-bytes.js'
import type { Position } from './streams.js'

export type { Position }

/** A signing secret, and until when it still signs (null: the current one). */
export interface SecretRecord { readonly secret: string, readonly expiresAt: number | null }

/** An endpoint as stored. */
export interface EndpointRecord {
  readonly id: string
  readonly url: string
  /** patterns, matched as subscriptions are */
  readonly eventTypes: readonly string[]
  /** the current secret first, then earlier ones until they expire (a rotation's overlap) */
  readonly secrets: readonly SecretRecord[]
  readonly enabled: boolean
  readonly description?: string
  readonly createdAt: number
  readonly updatedAt: number
  /** why it is disabled: `gone` (it answered 410) or `operator` */
  readonly disabledReason?: string
  /** an endpoint seeded from configuration: the digest of its definition there */
  readonly seed?: string
}

/** What a delivery carries whatever its attempt: made once, at enqueue. */
export interface JobRecord {
  /** `webhook-id`: the event's id and the endpoint's, the same on every attempt */
  readonly webhookId: string
  readonly endpointId: string
  readonly eventId: string
  readonly type: string
  /** when it was first enqueued (ms) */
  readonly firstAt: number
  /** the JSON POSTed: the event as clients receive it */
  readonly body: string
}

/** A job a node claimed: its entry in the endpoint's queue, and the attempts made before. */
export interface ClaimedJob {
  readonly entry: string
  readonly attempts: number
  readonly job: JobRecord
}

/** One attempt, as the API lists it. */
export interface AttemptRecord {
  readonly webhookId: string
  readonly eventId: string
  /** 1 for the first */
  readonly attempt: number
  /** ms since the epoch */
  readonly at: number
  readonly durationMs: number
  readonly outcome: string
  readonly status?: number
  readonly serverId: string
  readonly error?: string
  /** ms until the next attempt, when one is scheduled */
  readonly retryInMs?: number
}

export type DeadReason = 'exhausted' | 'gone' | 'disabled'

export interface DeadLetter {
  readonly webhookId: string
  readonly eventId: string
  readonly type: string
  readonly reason: DeadReason
  readonly deadAt: number
  readonly attempts: number
  readonly firstAt: number
  readonly body: string
}

/**
 * What became of a claimed job. `ok` feeds the endpoint's breaker (null: the
 * job was not tried, e.g. handed back at shutdown).
 */
export type Settlement =
  | { readonly kind: 'delivered', readonly claimed: ClaimedJob, readonly attempt: AttemptRecord }
  | { readonly kind: 'retry', readonly claimed: ClaimedJob, readonly dueAt: number, readonly attempt: AttemptRecord }
  | { readonly kind: 'dead', readonly claimed: ClaimedJob, readonly reason: DeadReason, readonly attempt: AttemptRecord }
  /** handed back untried: ready again at once, its attempts unchanged */
  | { readonly kind: 'release', readonly claimed: ClaimedJob }

export type BreakerPhase = 'closed' | 'open' | 'half-open'

export interface BreakerState {
  readonly phase: BreakerPhase
  /** open: until when; half-open: until when the probe's claim holds */
  readonly until: number
  /** how long the latest opening lasts (0 while closed) */
  readonly cooldownMs: number
  readonly windowStart: number
  readonly ok: number
  readonly fail: number
  /** re-enabled: the next success is reported as recovered */
  readonly watch: boolean
}

export interface BreakerConfig {
  /** attempts are counted in windows this long */
  readonly windowMs: number
  /** at least this many attempts in the window before it can open */
  readonly minAttempts: number
  /** opens when this share of the window's attempts failed */
  readonly failureRatio: number
  /** the first cool-down; doubled after each failed probe, up to maxCooldownMs */
  readonly cooldownMs: number
  readonly maxCooldownMs: number
}

/** A breaker's change that the cluster is told about (admin.webhook.* events). */
export interface BreakerChange { readonly endpointId: string, readonly change: 'opened' | 'recovered' }

export interface QueueStats {
  /** undelivered jobs: ready, in flight and waiting for a retry */
  readonly depth: number
  /** when the oldest of them was first enqueued; null when none */
  readonly oldestAt: number | null
}

/** One endpoint's share of a publish: the job for it. */
export interface Enqueue { readonly endpointId: string, readonly webhookId: string, readonly job: string }

/**
 * The endpoints a publish goes to, known before the message has its
 * position; the jobs are made once it has one (jobsOf), since the body is
 * the message as clients receive it.
 */
export interface Fanout {
  readonly eventId: string
  readonly type: string
  /** publish time (ms) */
  readonly at: number
  readonly endpoints: readonly string[]
}

/** `webhook-id`: stable across the retries of one event to one endpoint (no `.`, as the specification asks). */
export const webhookIdOf = (eventId: string, endpointId: string): string => `msg_${eventId}_${endpointId}`

export function jobsOf (f: Fanout, body: string): Enqueue[] {
  return f.endpoints.map((endpointId) => {
    const webhookId = webhookIdOf(f.eventId, endpointId)
    return { endpointId, webhookId, job: jobJson({ webhookId, endpointId, eventId: f.eventId, type: f.type, firstAt: f.at, body }) }
  })
}

/** The reads the publish path needs (the publisher library supplies them over its caller's client). */
export interface WebhookEndpointSource {
  /** changes whenever an endpoint is added, changed or removed */
  version (): Promise<number>
  endpoints (): Promise<EndpointRecord[]>
}

export interface WebhookStore extends WebhookEndpointSource {
  endpoint (id: string): Promise<EndpointRecord | null>
  /**
   * Stores an endpoint: `create` only when no endpoint has its id (false
   * otherwise, or when `max` endpoints exist), `update` only when one does,
   * `upsert` either way. Disabling moves what is queued for it to its dead
   * letters (reason `disabled`); enabling again starts its breaker afresh,
   * watching for the first success.
   */
  save (e: EndpointRecord, mode: 'create' | 'update' | 'upsert', max: number): Promise<boolean>
  /** Removes an endpoint and everything of it: its queue, retries, dead letters, log and breaker. */
  remove (id: string): Promise<boolean>
  /** Disables an endpoint (as save() with enabled false) unless it is already; true when this call did it. */
  disable (id: string, reason: string, now: number): Promise<boolean>

  /** Enqueues jobs for enabled endpoints (others' are dropped); resolves with how many it took. */
  enqueue (jobs: readonly Enqueue[], now: number): Promise<number>
  /**
   * Claims up to `count` ready jobs of each endpoint for `consumer`: they
   * are its own until settled, taken over (takeOver) or handed back.
   */
  claim (consumer: string, asks: ReadonlyArray<{ endpointId: string, count: number }>): Promise<ClaimedJob[]>
  /** Settles claimed jobs in one step; resolves with the breakers' changes it made. */
  settle (settlements: readonly Settlement[], now: number, breaker: BreakerConfig): Promise<BreakerChange[]>
  /** Retries that are due go back to their endpoint's ready queue; resolves with how many. */
  promote (endpointIds: readonly string[], now: number): Promise<number>
  /**
   * Claims for `consumer` the jobs `from` had claimed (a dead node), or, with
   * `from` null, any claimed longer than `minIdleMs` ago (a lease that lapsed).
   */
  takeOver (consumer: string, endpointIds: readonly string[], from: string | null, minIdleMs: number): Promise<ClaimedJob[]>
  /** The breaker of each endpoint that has one. */
  breakers (): Promise<Map<string, BreakerState>>
  /** An open breaker whose cool-down ended lets one caller probe; true for that caller. */
  probe (endpointId: string, now: number, leaseMs: number): Promise<boolean>
  stats (endpointIds: readonly string[]): Promise<Map<string, QueueStats>>
  /** The latest attempts, newest first. */
  attempts (endpointId: string, limit: number): Promise<AttemptRecord[]>
  /**
   * Dead letters, newest first: up to `limit` from the `from`th, ending with
   * the one whose job brings the page to MAX_READ_BYTES (a payload may be
   * 64 KiB); `next` is the `from` of the next page, null at the end.
   */
  deadLetters (endpointId: string, from: number, limit: number): Promise<DeadLetterPage>
  /** Dead letters (those named, or the newest `limit`) back to the ready queue, their attempts from 0; resolves with how many. */
  replay (endpointId: string, webhookIds: readonly string[] | null, limit: number, now: number): Promise<number>
}

/** The consumer group every node reads the queues in. */
export const GROUP = 'd'
/** Attempts kept per endpoint for the API. */
export const ATTEMPT_LOG = 50
/** Dead letters kept per endpoint; past it the oldest go. */
export const MAX_DEAD_LETTERS = 10_000

export interface WebhookKeys {
  readonly endpoints: string
  readonly enabled: string
  readonly disabled: string
  readonly version: string
  readonly breakers: string
  readonly wake: string
  queue (id: string): string
  retries (id: string): string
  age (id: string): string
  dead (id: string): string
  deadJobs (id: string): string
  deadMeta (id: string): string
  log (id: string): string
}

export function webhookKeys (prefix: string): WebhookKeys {
  const p = `${prefix}{wh}:`
  return {
    endpoints: `${p}ep`,
    enabled: `${p}on`,
    disabled: `${p}off`,
    version: `${p}ver`,
    breakers: `${p}br`,
    wake: `${p}wake`,
    queue: (id) => `${p}q:${id}`,
    retries: (id) => `${p}r:${id}`,
    age: (id) => `${p}age:${id}`,
    dead: (id) => `${p}dl:${id}`,
    deadJobs: (id) => `${p}dlb:${id}`,
    deadMeta: (id) => `${p}dlm:${id}`,
    log: (id) => `${p}log:${id}`,
  }
}

/** The job's JSON, made once per endpoint at publish time. */
export const jobJson = (j: JobRecord): string => JSON.stringify(j)

/** The definition stored for an endpoint: everything but whether it is enabled. */
export function definitionJson (e: EndpointRecord): string {
  const { enabled: _enabled, disabledReason: _reason, ...rest } = e
  return JSON.stringify(rest)
}

export function fromStored (json: string, enabled: boolean, disabledReason: string | undefined): EndpointRecord {
  const d = JSON.parse(json) as EndpointRecord
  return { ...d, enabled, ...(enabled || disabledReason === undefined ? {} : { disabledReason }) }
}

// --- the breaker, one step at a time: the Redis script spells the same in Lua

export const closedBreaker = (now: number, watch = false): BreakerState =>
  ({ phase: 'closed', until: 0, cooldownMs: 0, windowStart: now, ok: 0, fail: 0, watch })

/** `phase|until|cooldown|windowStart|ok|fail|watch`: what Lua parses without cjson. */
export const breakerString = (b: BreakerState): string => `${b.phase}|${b.until}|${b.cooldownMs}|${b.windowStart}|${b.ok}|${b.fail}|${b.watch ? 1 : 0}`

export function parseBreaker (s: string): BreakerState {
  const [phase, until, cooldownMs, windowStart, ok, fail, watch] = s.split('|')
  return { phase: phase as BreakerPhase, until: Number(until), cooldownMs: Number(cooldownMs), windowStart: Number(windowStart), ok: Number(ok), fail: Number(fail), watch: watch === '1' }
}

/**
 * One attempt's outcome on an endpoint's breaker. Closed: counted in the
 * current window; opens when at least `minAttempts` were made and the share
 * that failed reaches `failureRatio`. Half-open: the probe's outcome closes
 * it (recovered) or opens it again for twice as long. Open: late outcomes of
 * attempts begun before it opened change nothing.
 */
export function breakerStep (b: BreakerState, ok: boolean, now: number, cfg: BreakerConfig): { state: BreakerState, change: BreakerChange['change'] | null } {
  if (b.phase === 'half-open') {
    if (ok) return { state: closedBreaker(now), change: 'recovered' }
    const cooldownMs = Math.min(b.cooldownMs * 2, cfg.maxCooldownMs)
    return { state: { ...b, phase: 'open', until: now + cooldownMs, cooldownMs }, change: 'opened' }
  }
  if (b.phase === 'open') return { state: b, change: null }
  let w = b
  if (now - w.windowStart >= cfg.windowMs) w = { ...w, windowStart: now, ok: 0, fail: 0 }
  if (ok) {
    if (w.watch) return { state: { ...w, ok: w.ok + 1, watch: false }, change: 'recovered' }
    return { state: { ...w, ok: w.ok + 1 }, change: null }
  }
  const fail = w.fail + 1
  const total = w.ok + fail
  if (total >= cfg.minAttempts && fail / total >= cfg.failureRatio) {
    return { state: { ...w, fail, phase: 'open', until: now + cfg.cooldownMs, cooldownMs: cfg.cooldownMs }, change: 'opened' }
  }
  return { state: { ...w, fail }, change: null }
}

/** May `now`'s caller probe? Open past its cool-down, or half-open whose probe's claim lapsed. */
export function breakerProbe (b: BreakerState, now: number, leaseMs: number): BreakerState | null {
  if ((b.phase === 'open' || b.phase === 'half-open') && now >= b.until) return { ...b, phase: 'half-open', until: now + leaseMs }
  return null
}

export interface DeadLetterPage { readonly deadLetters: DeadLetter[], readonly next: number | null }

/** The size a stored dead letter counts for in a page (page-bytes.ts): its job, which holds the payload. */
export const deadLetterBytes = (job: string | null): number => job === null ? 0 : Buffer.byteLength(job)

/**
 * A page of dead letters from their stored jobs and metas, in list order
 * (null: gone meanwhile, skipped but counted), ending at the page's byte
 * bound; `more`: the list goes on past these rows.
 */
export function deadLetterPage (from: number, rows: ReadonlyArray<readonly [string | null, string | null]>, more: boolean): DeadLetterPage {
  const { taken } = pageEnd(rows.map(([job]) => deadLetterBytes(job)))
  const deadLetters = rows.slice(0, taken).flatMap(([job, meta]) => job === null || meta === null ? [] : [deadLetter(job, meta)])
  return { deadLetters, next: taken < rows.length || more ? from + taken : null }
}

/** A dead letter from its job and the meta stored beside it (`{reason, deadAt, attempts}`). */
export function deadLetter (job: string, meta: string): DeadLetter {
  const j = JSON.parse(job) as JobRecord
  const m = JSON.parse(meta) as { reason: DeadReason, deadAt: number, attempts: number }
  return { webhookId: j.webhookId, eventId: j.eventId, type: j.type, reason: m.reason, deadAt: m.deadAt, attempts: m.attempts, firstAt: j.firstAt, body: j.body }
}
