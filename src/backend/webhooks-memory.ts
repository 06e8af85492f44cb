import { MemoryStore, type MemoryQueued } from './memory-store.js'
import {
  ATTEMPT_LOG, MAX_DEAD_LETTERS, breakerProbe, breakerStep, breakerString, closedBreaker, definitionJson, fromStored, parseBreaker, webhookKeys,
  type AttemptRecord, type BreakerChange, type BreakerConfig, type BreakerState, type ClaimedJob, type DeadLetterPage, type DeadReason, type EndpointRecord,
  type Enqueue, type JobRecord, type QueueStats, type Settlement, type WebhookStore, deadLetterPage,
} from './webhooks.js'

/** The same contract as the Redis store, on a MemoryStore: what backends given one store share. */
export class MemoryWebhooks implements WebhookStore {
  private readonly s
  private readonly wake: string

  constructor (private readonly store: MemoryStore = new MemoryStore(), prefix = 'herald:') {
    this.s = store.webhooks
    this.wake = webhookKeys(prefix).wake
  }

  async version (): Promise<number> { return this.s.version }

  async endpoints (): Promise<EndpointRecord[]> {
    return [...this.s.endpoints].map(([id, json]) => fromStored(json, this.s.enabled.has(id), this.s.disabled.get(id)))
  }

  async endpoint (id: string): Promise<EndpointRecord | null> {
    const json = this.s.endpoints.get(id)
    return json === undefined ? null : fromStored(json, this.s.enabled.has(id), this.s.disabled.get(id))
  }

  async save (e: EndpointRecord, mode: 'create' | 'update' | 'upsert', max: number): Promise<boolean> {
    const exists = this.s.endpoints.has(e.id)
    if (mode === 'create' && (exists || this.s.endpoints.size >= max)) return false
    if (mode === 'update' && !exists) return false
    if (mode === 'upsert' && !exists && this.s.endpoints.size >= max) return false
    const wasEnabled = this.s.enabled.has(e.id)
    this.s.endpoints.set(e.id, definitionJson(e))
    if (e.enabled) {
      this.s.enabled.add(e.id)
      this.s.disabled.delete(e.id)
      if (exists && !wasEnabled) this.s.breakers.set(e.id, breakerString(closedBreaker(Date.now(), true)))
    } else {
      this.s.enabled.delete(e.id)
      this.s.disabled.set(e.id, e.disabledReason ?? 'operator')
      if (wasEnabled || !exists) this.deadAll(e.id, Date.now())
    }
    if (!this.s.queues.has(e.id)) this.s.queues.set(e.id, new Map())
    this.s.version++
    return true
  }

  async remove (id: string): Promise<boolean> {
    if (!this.s.endpoints.delete(id)) return false
    this.s.enabled.delete(id)
    this.s.disabled.delete(id)
    for (const m of [this.s.queues, this.s.retries, this.s.age, this.s.dead, this.s.log, this.s.breakers]) m.delete(id)
    this.s.version++
    return true
  }

  async disable (id: string, reason: string, now: number): Promise<boolean> {
    if (!this.s.enabled.has(id)) return false
    this.s.enabled.delete(id)
    this.s.disabled.set(id, reason)
    this.deadAll(id, now)
    this.s.version++
    return true
  }

  /** Everything queued or waiting for a retry becomes a dead letter (reason `disabled`). */
  private deadAll (id: string, now: number): void {
    const q = this.s.queues.get(id)
    for (const e of q?.values() ?? []) this.bury(id, e.job, e.attempts, 'disabled', now)
    q?.clear()
    for (const r of this.s.retries.get(id) ?? []) this.bury(id, r.job, r.attempts, 'disabled', now)
    this.s.retries.delete(id)
  }

  async enqueue (jobs: readonly Enqueue[], now: number): Promise<number> {
    let n = 0
    for (const j of jobs) {
      if (!this.s.enabled.has(j.endpointId)) continue
      this.ready(j.endpointId, j.job, 0)
      this.ageOf(j.endpointId).set(j.webhookId, this.ageOf(j.endpointId).get(j.webhookId) ?? now)
      n++
    }
    if (n > 0) this.wakeUp()
    return n
  }

  private ready (id: string, job: string, attempts: number): void {
    let q = this.s.queues.get(id)
    if (q === undefined) { q = new Map(); this.s.queues.set(id, q) }
    const entry = `${++this.s.seq}-0`
    q.set(entry, { entry, attempts, job, owner: null, claimedAt: 0 })
  }

  private ageOf (id: string): Map<string, number> {
    let a = this.s.age.get(id)
    if (a === undefined) { a = new Map(); this.s.age.set(id, a) }
    return a
  }

  private wakeUp (): void {
    for (const b of this.store.subscribers.get(this.wake) ?? []) queueMicrotask(() => b.deliver(this.wake, ''))
  }

  async claim (consumer: string, asks: ReadonlyArray<{ endpointId: string, count: number }>): Promise<ClaimedJob[]> {
    const out: ClaimedJob[] = []
    const now = Date.now()
    for (const a of asks) {
      let n = 0
      for (const e of this.s.queues.get(a.endpointId)?.values() ?? []) {
        if (n >= a.count) break
        if (e.owner !== null) continue
        e.owner = consumer
        e.claimedAt = now
        out.push(claimed(e))
        n++
      }
    }
    return out
  }

  async settle (settlements: readonly Settlement[], now: number, cfg: BreakerConfig): Promise<BreakerChange[]> {
    const changes: BreakerChange[] = []
    for (const st of settlements) {
      const { claimed: c } = st
      const id = c.job.endpointId
      const q = this.s.queues.get(id)
      // Settled already (by a node that took it over), or moved away (disabled): nothing more to do.
      if (q?.delete(c.entry) !== true) continue
      const job = JSON.stringify(c.job)
      if (st.kind === 'release') {
        this.ready(id, job, c.attempts)
        continue
      }
      if (st.kind === 'delivered') this.s.age.get(id)?.delete(c.job.webhookId)
      else if (st.kind === 'retry') {
        let r = this.s.retries.get(id)
        if (r === undefined) { r = []; this.s.retries.set(id, r) }
        r.push({ due: st.dueAt, attempts: c.attempts + 1, job })
      } else {
        this.bury(id, job, c.attempts + 1, st.reason, now)
      }
      this.logAttempt(id, st.attempt)
      if (!this.s.endpoints.has(id)) continue
      const b = this.s.breakers.get(id)
      const { state, change } = breakerStep(b === undefined ? closedBreaker(now) : parseBreaker(b), st.kind === 'delivered', now, cfg)
      this.s.breakers.set(id, breakerString(state))
      if (change !== null) changes.push({ endpointId: id, change })
    }
    return changes
  }

  private logAttempt (id: string, a: AttemptRecord): void {
    let l = this.s.log.get(id)
    if (l === undefined) { l = []; this.s.log.set(id, l) }
    l.unshift(JSON.stringify(a))
    if (l.length > ATTEMPT_LOG) l.length = ATTEMPT_LOG
  }

  private bury (id: string, job: string, attempts: number, reason: DeadReason, now: number): void {
    const j = JSON.parse(job) as JobRecord
    let d = this.s.dead.get(id)
    if (d === undefined) { d = new Map(); this.s.dead.set(id, d) }
    d.delete(j.webhookId)
    d.set(j.webhookId, { job, meta: JSON.stringify({ reason, deadAt: now, attempts }), at: now })
    while (d.size > MAX_DEAD_LETTERS) d.delete(d.keys().next().value!)
    this.s.age.get(id)?.delete(j.webhookId)
  }

  async promote (endpointIds: readonly string[], now: number): Promise<number> {
    let n = 0
    for (const id of endpointIds) {
      const r = this.s.retries.get(id)
      if (r === undefined) continue
      const due = r.filter((x) => x.due <= now).sort((a, b) => a.due - b.due)
      if (due.length === 0) continue
      this.s.retries.set(id, r.filter((x) => x.due > now))
      for (const x of due) this.ready(id, x.job, x.attempts)
      n += due.length
    }
    if (n > 0) this.wakeUp()
    return n
  }

  async takeOver (consumer: string, endpointIds: readonly string[], from: string | null, minIdleMs: number): Promise<ClaimedJob[]> {
    const out: ClaimedJob[] = []
    const now = Date.now()
    for (const id of endpointIds) {
      for (const e of this.s.queues.get(id)?.values() ?? []) {
        if (e.owner === null) continue
        if (from !== null ? e.owner !== from : e.owner === consumer || now - e.claimedAt < minIdleMs) continue
        e.owner = consumer
        e.claimedAt = now
        out.push(claimed(e))
      }
    }
    return out
  }

  async breakers (): Promise<Map<string, BreakerState>> {
    return new Map([...this.s.breakers].map(([id, b]) => [id, parseBreaker(b)]))
  }

  async probe (endpointId: string, now: number, leaseMs: number): Promise<boolean> {
    const b = this.s.breakers.get(endpointId)
    const next = b === undefined ? null : breakerProbe(parseBreaker(b), now, leaseMs)
    if (next === null) return false
    this.s.breakers.set(endpointId, breakerString(next))
    return true
  }

  async stats (endpointIds: readonly string[]): Promise<Map<string, QueueStats>> {
    const out = new Map<string, QueueStats>()
    for (const id of endpointIds) {
      const a = this.s.age.get(id)
      let oldest: number | null = null
      for (const t of a?.values() ?? []) if (oldest === null || t < oldest) oldest = t
      out.set(id, { depth: a?.size ?? 0, oldestAt: oldest })
    }
    return out
  }

  async attempts (endpointId: string, limit: number): Promise<AttemptRecord[]> {
    return (this.s.log.get(endpointId) ?? []).slice(0, limit).map((j) => JSON.parse(j) as AttemptRecord)
  }

  async deadLetters (endpointId: string, from: number, limit: number): Promise<DeadLetterPage> {
    const all = [...(this.s.dead.get(endpointId)?.values() ?? [])].reverse()
    return deadLetterPage(from, all.slice(from, from + limit).map((x) => [x.job, x.meta] as const), all.length > from + limit)
  }

  async replay (endpointId: string, webhookIds: readonly string[] | null, limit: number, now: number): Promise<number> {
    const d = this.s.dead.get(endpointId)
    if (d === undefined || !this.s.endpoints.has(endpointId)) return 0
    const ids = webhookIds ?? [...d.keys()].reverse().slice(0, limit)
    let n = 0
    for (const w of ids) {
      const x = d.get(w)
      if (x === undefined) continue
      d.delete(w)
      this.ready(endpointId, x.job, 0)
      this.ageOf(endpointId).set(w, now)
      n++
    }
    if (n > 0) this.wakeUp()
    return n
  }
}

const claimed = (e: MemoryQueued): ClaimedJob => ({ entry: e.entry, attempts: e.attempts, job: JSON.parse(e.job) as JobRecord })
