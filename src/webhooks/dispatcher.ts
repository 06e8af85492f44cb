import type { FastifyBaseLogger } from 'fastify'
import type { Broker } from '../backend/broker.js'
import type { AttemptRecord, BreakerChange, BreakerConfig, BreakerState, ClaimedJob, EndpointRecord, Settlement, WebhookStore } from '../backend/webhooks.js'
import { channels as diag } from '../observability/channels.js'
import { Cancel, type AttemptResult, type Sender } from './delivery.js'
import type { EndpointDirectory } from './directory.js'
import { nextDelay } from './schedule.js'
import { signatures } from './signing.js'

// The node's share of delivering webhooks. Any node may deliver any job: it
// claims ready jobs from each endpoint's queue, at most WEBHOOK_CONCURRENCY
// in flight per endpoint on this node, POSTs them, and settles them (in
// batches: one script call per event-loop turn). An endpoint's queue is read
// only while it has room here and its breaker (cluster-wide) is closed, so a
// slow or failing endpoint holds only its own slots: other endpoints, and
// WebSocket delivery, which never waits on any of this, go on.
//
// What a node claimed is its own until settled; if the node dies, a live one
// takes its claims over as soon as the registry declares it dead, and any
// claim older than the lease (a wedged node) is taken over by whoever sweeps.
// Retries wait in the backend, moved back to the queue when due by any node.

export interface DispatcherOptions {
  /** ms one attempt may take, connect to the end of the answer (WEBHOOK_TIMEOUT) */
  timeoutMs: number
  /** the retry schedule's base (WEBHOOK_RETRY_BASE) */
  retryBaseMs: number
  /** attempts in flight per endpoint on this node (WEBHOOK_CONCURRENCY) */
  concurrency: number
  breaker: BreakerConfig
}

export interface DispatcherDeps {
  store: WebhookStore
  directory: EndpointDirectory
  broker: Pick<Broker, 'subscribe' | 'unsubscribe' | 'onMessage'>
  /** the channel the backend publishes on when jobs become ready */
  wakeChannel: string
  sender: Sender
  serverId: string
  log: FastifyBaseLogger
  /** a breaker opened or closed again, or an endpoint answered 410 and this node disabled it: told once, by the node that saw it */
  onChange: (endpoint: EndpointRecord, change: BreakerChange['change'] | 'gone', until?: number) => void
  onError: (err: Error) => void
}

/** Promote due retries, read what is ready, refresh the breakers: this often at least, whatever wakes the node. */
const TICK_MS = 250
/** Queue depth and age, sampled for the metrics. */
const SAMPLE_MS = 2000
/** Ready jobs claimed per endpoint per read at most. */
const MAX_READ = 100

export class Dispatcher {
  private readonly inFlight = new Map<string, number>()
  /** endpoints whose last read filled what was asked: more may wait */
  private readonly more = new Set<string>()
  private readonly active = new Map<ClaimedJob, Cancel>()
  private breakers = new Map<string, BreakerState>()
  private waiting: Settlement[] = []
  private flushing: Promise<void> | null = null
  private cycling = false
  private again = false
  private stopped = true
  private readonly timers: NodeJS.Timeout[] = []
  private readonly leaseMs: number
  private readonly onWake = (channel: string): void => { if (channel === this.d.wakeChannel) this.kick() }

  constructor (private readonly d: DispatcherDeps, private readonly o: DispatcherOptions) {
    // Longer than any attempt can last: a live node's claim never lapses.
    this.leaseMs = o.timeoutMs + 20_000
  }

  /** Deliveries in flight on this node. */
  get busy (): number { return this.active.size }

  async start (): Promise<void> {
    this.stopped = false
    this.d.broker.onMessage(this.onWake)
    await this.d.broker.subscribe(this.d.wakeChannel)
    await this.d.directory.ready()
    // What a process that ran under this SERVER_ID before had claimed.
    this.adopt(await this.d.store.takeOver(this.d.serverId, this.ids(), this.d.serverId, 0))
    const every = (ms: number, fn: () => Promise<void>): void => {
      const t = setInterval(() => { if (!this.stopped) fn().catch(this.d.onError) }, ms)
      t.unref()
      this.timers.push(t)
    }
    every(TICK_MS, async () => await this.tick())
    every(Math.max(1000, Math.floor(this.leaseMs / 4)), async () => { this.adopt(await this.d.store.takeOver(this.d.serverId, this.ids(), null, this.leaseMs)) })
    every(SAMPLE_MS, async () => await this.sample())
    await this.tick()
  }

  /** Takes over what a dead node had claimed (the registry declared it dead). */
  async takeOverFrom (serverId: string): Promise<number> {
    if (this.stopped) return 0
    const jobs = await this.d.store.takeOver(this.d.serverId, this.ids(), serverId, 0)
    this.adopt(jobs)
    return jobs.length
  }

  /**
   * Stops claiming; what is in flight is cut short and handed back, ready for
   * another node at once (not after a lease), and the settlements are written.
   */
  async stop (): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const t of this.timers) clearInterval(t)
    for (const c of this.active.values()) c.cancel()
    await this.d.broker.unsubscribe(this.d.wakeChannel).catch(() => {})
    // Aborted attempts settle on the next microtasks.
    await new Promise((resolve) => setImmediate(resolve))
    await this.flush()
  }

  private ids (): string[] {
    return this.d.directory.all().map((e) => e.id)
  }

  private async tick (): Promise<void> {
    const enabled = this.d.directory.all().filter((e) => e.enabled).map((e) => e.id)
    if (this.waiting.length > 0) await this.flush()
    if (enabled.length === 0) return
    await this.d.store.promote(enabled, Date.now())
    this.breakers = await this.d.store.breakers()
    this.kick()
  }

  private kick (): void {
    if (this.stopped) return
    if (this.cycling) { this.again = true; return }
    this.cycling = true
    void this.cycle().catch(this.d.onError).finally(() => { this.cycling = false })
  }

  private async cycle (): Promise<void> {
    do {
      this.again = false
      const asks = await this.asks()
      if (asks.length === 0) return
      const jobs = await this.d.store.claim(this.d.serverId, asks)
      const got = new Map<string, number>()
      for (const j of jobs) got.set(j.job.endpointId, (got.get(j.job.endpointId) ?? 0) + 1)
      for (const a of asks) {
        if ((got.get(a.endpointId) ?? 0) >= a.count) { this.more.add(a.endpointId); this.again = true } else this.more.delete(a.endpointId)
      }
      this.adopt(jobs)
    } while (this.again && !this.stopped)
  }

  /** What to read from each endpoint now: its room here, if its breaker lets it. */
  private async asks (): Promise<Array<{ endpointId: string, count: number }>> {
    const asks: Array<{ endpointId: string, count: number }> = []
    const now = Date.now()
    for (const e of this.d.directory.all()) {
      if (!e.enabled) continue
      const busy = this.inFlight.get(e.id) ?? 0
      const room = this.o.concurrency - busy
      // Busy: read again once a quarter of its slots are free, a batch rather than a round trip per slot.
      if (room <= 0 || (busy > 0 && room < Math.ceil(this.o.concurrency / 4))) continue
      const b = this.breakers.get(e.id)
      if (b === undefined || b.phase === 'closed') {
        asks.push({ endpointId: e.id, count: Math.min(room, MAX_READ) })
        continue
      }
      // Open (or a probe whose claim lapsed): one node, cluster-wide, tries one delivery.
      if (now < b.until) continue
      if (await this.d.store.probe(e.id, now, this.leaseMs)) {
        this.breakers.set(e.id, { ...b, phase: 'half-open', until: now + this.leaseMs })
        asks.push({ endpointId: e.id, count: 1 })
      }
    }
    return asks
  }

  private adopt (jobs: readonly ClaimedJob[]): void {
    for (const j of jobs) {
      const id = j.job.endpointId
      this.inFlight.set(id, (this.inFlight.get(id) ?? 0) + 1)
      const cancel = new Cancel()
      this.active.set(j, cancel)
      void this.attempt(j, cancel).catch(this.d.onError).finally(() => {
        this.active.delete(j)
        const n = (this.inFlight.get(id) ?? 1) - 1
        if (n <= 0) this.inFlight.delete(id)
        else this.inFlight.set(id, n)
        if (this.more.has(id)) this.kick()
      })
    }
  }

  private async attempt (c: ClaimedJob, cancel: Cancel): Promise<void> {
    const e = this.d.directory.get(c.job.endpointId)
    // Removed or disabled since: its queue went with it, so this settles nothing.
    if (e === undefined || !e.enabled) { this.settle({ kind: 'release', claimed: c }); return }
    const at = Date.now()
    const timestamp = Math.floor(at / 1000)
    const r = await this.d.sender.post(e.url, {
      'webhook-id': c.job.webhookId,
      'webhook-timestamp': String(timestamp),
      'webhook-signature': signatures(e.secrets, at, c.job.webhookId, timestamp, c.job.body),
    }, c.job.body, cancel)
    if (r.outcome === 'aborted') { this.settle({ kind: 'release', claimed: c }); return }
    const n = c.attempts + 1
    const delay = r.outcome === 'success' || r.outcome === 'gone' ? null : nextDelay(n, this.o.retryBaseMs, r.retryAfterMs)
    const attempt: AttemptRecord = {
      webhookId: c.job.webhookId,
      eventId: c.job.eventId,
      attempt: n,
      at,
      durationMs: r.durationMs,
      outcome: r.outcome,
      ...(r.status !== undefined ? { status: r.status } : {}),
      serverId: this.d.serverId,
      ...(r.error !== undefined ? { error: r.error } : {}),
      ...(delay !== null ? { retryInMs: delay } : {}),
    }
    const result = r.outcome === 'success' ? 'delivered' : delay !== null ? 'retry' : 'dead'
    this.report(e, c, r, n, result)
    if (r.outcome === 'success') this.settle({ kind: 'delivered', claimed: c, attempt })
    else if (delay !== null) this.settle({ kind: 'retry', claimed: c, dueAt: at + delay, attempt })
    else this.settle({ kind: 'dead', claimed: c, reason: r.outcome === 'gone' ? 'gone' : 'exhausted', attempt })
    if (r.outcome === 'gone') {
      await this.flush()
      if (await this.d.store.disable(e.id, 'gone', Date.now())) {
        await this.d.directory.refresh().catch(this.d.onError)
        this.d.onChange(e, 'gone')
      }
    }
  }

  private report (e: EndpointRecord, c: ClaimedJob, r: AttemptResult, attempt: number, result: 'delivered' | 'retry' | 'dead'): void {
    if (!diag.webhookAttempt.hasSubscribers) return
    diag.webhookAttempt.publish({
      serverId: this.d.serverId, endpointId: e.id, webhookId: c.job.webhookId, attempt, outcome: r.outcome,
      ...(r.status !== undefined ? { status: r.status } : {}), durationMs: r.durationMs, result, log: this.d.log,
    })
  }

  /** Settlements wait for the end of the turn and go in one call. */
  private settle (s: Settlement): void {
    this.waiting.push(s)
    if (this.waiting.length === 1) setImmediate(() => { this.flush().catch(this.d.onError) })
  }

  private async flush (): Promise<void> {
    while (this.flushing !== null) await this.flushing.catch(() => {})
    if (this.waiting.length === 0) return
    const batch = this.waiting
    this.waiting = []
    this.flushing = (async () => {
      let changes: BreakerChange[]
      try {
        changes = await this.d.store.settle(batch, Date.now(), this.o.breaker)
      } catch (err) {
        // Kept for the next try (the tick's): a settlement lost would mean a delivery made twice or a retry never made.
        this.waiting = batch.concat(this.waiting)
        throw err
      }
      if (changes.length === 0) return
      this.breakers = await this.d.store.breakers()
      for (const ch of changes) {
        const e = this.d.directory.get(ch.endpointId)
        if (e !== undefined) this.d.onChange(e, ch.change, this.breakers.get(ch.endpointId)?.until)
      }
    })().finally(() => { this.flushing = null })
    await this.flushing
  }

  private async sample (): Promise<void> {
    if (!diag.webhookQueues.hasSubscribers) return
    const ids = this.ids()
    const stats = await this.d.store.stats(ids)
    const now = Date.now()
    diag.webhookQueues.publish({
      serverId: this.d.serverId,
      endpoints: ids.map((id) => {
        const s = stats.get(id)
        return { endpointId: id, depth: s?.depth ?? 0, oldestAgeMs: s?.oldestAt == null ? 0 : Math.max(0, now - s.oldestAt), breaker: this.breakers.get(id)?.phase ?? 'closed' }
      }),
    })
  }
}
