import type { Cluster } from 'ioredis'
import { place, placedJson } from '../events/codec.js'
import type { Broker, MessageListener, Publish, StateListener, Webhooks } from './broker.js'
import type { RedisClient } from './redis-clients.js'
import type { Append, HistoryConfig, Position } from './streams.js'
import { Appender, type ScriptingClient } from './streams-redis.js'
import { Tripwire } from './tripwire.js'
import { jobsOf, type Enqueue } from './webhooks.js'
import { Enqueuer } from './webhooks-redis.js'

export interface RedisBrokerOptions {
  /** the subscriber connection (SSUBSCRIBE on a Cluster) */
  sub: RedisClient
  /**
   * the publish connection, which must never re-send on its own
   * (autoResendUnfulfilledCommands and the offline queue off): what was in
   * flight when Redis went away comes back to the broker as an error and
   * joins the replay, which waits until the other nodes have resubscribed
   */
  pub: RedisClient
  /**
   * the backend's other connections: the broker is healthy only while they
   * are ready too, since a node whose command connection is down cannot
   * admit connections or count limits either
   */
  peers?: RedisClient[]
  /** Redis Cluster: sharded pub/sub */
  sharded: boolean
  /** publishes waiting for Redis beyond this many are refused rather than queued without end */
  maxPendingPublishes?: number
  /** ms to hold publishes buffered during an outage after Redis is back, so other nodes resubscribe first */
  replayDelayMs?: number
  /** what each stream keeps (HISTORY_SIZE, HISTORY_TTL); null or absent: history off */
  history?: HistoryConfig | null
  /** REDIS_KEY_PREFIX: where the webhook queues are */
  keyPrefix: string
  onError?: (err: Error) => void
}

/**
 * What the broker sends Redis, or holds for it: a message for one channel,
 * an append (which publishes too, and enqueues its webhook jobs), or webhook
 * jobs alone (a message without a stream's, or jobs that failed after their append).
 */
type Job = { readonly channel: string, readonly message: string } | { readonly append: Append } | { readonly enqueue: readonly Enqueue[] }

/** Channel messages and enqueues a job puts out: what REDIS_PUBLISH_BUFFER counts. */
const weight = (j: Job): number => 'append' in j ? appendWeight(j.append) : 1
const appendWeight = (a: Append): number => 1 + a.also.length + (a.webhooks !== undefined ? 1 : 0)

/** The parts of a job Redis did not take (none: all done), and what the publish answers. */
interface Outcome<T> { failed: Job[], value: T }

// How long a publish waits for Redis to take it before it is answered as held
// (it stays queued on the connection). A paused Redis keeps its socket open
// and answers nothing: without a deadline the API call waited for as long as
// the pause, while the contract is that what is published during an outage is
// held and delivered after.
export const PUBLISH_WAIT_MS = 500

export class RedisBroker implements Broker {
  private readonly sub: RedisClient
  private readonly pubConn: RedisClient
  private readonly watched: RedisClient[]
  private readonly listeners: MessageListener[] = []
  private readonly stateListeners: StateListener[] = []
  private readonly shardListeners: Array<() => void> = []
  private readonly maxPending: number
  private readonly sharded: boolean
  readonly history: HistoryConfig | null
  private readonly appender: Appender | null
  private readonly enqueuer: Enqueuer
  /** publishes that were in flight when the connection dropped, replayed first */
  private retry: Job[] = []
  private pending = 0
  /** publishes answered as held after PUBLISH_WAIT_MS that Redis has not taken yet */
  private overdue = 0
  /** publishes made while disconnected, replayed in order once Redis is back */
  private outbox: Job[] = []
  /** channel messages in retry and outbox */
  private held = 0
  private replayTimer: NodeJS.Timeout | null = null
  private lastHealthy = false
  private closing = false
  // Fail what waits when close() starts: commands queued while Redis is unreachable
  // would otherwise wait for ever, since ioredis keeps its offline queue after disconnect().
  private readonly closed = new Tripwire()
  // Fail what waits on the publish connection when it drops. With
  // autoResendUnfulfilledCommands off, ioredis settles the commands in flight
  // at that moment only once the connection is ready again (ioredis 6; 5 never
  // did): a publish (or the probe, or a replay batch) would wait as long as
  // Redis is away, or for ever.
  private readonly pubWaiters = new Tripwire()
  /** (un)subscriptions waiting for the end of the turn (standalone Redis) */
  private subOps: Array<{ subscribe: boolean, channel: string, resolve: () => void, reject: (err: unknown) => void }> = []

  constructor (private readonly opts: RedisBrokerOptions) {
    this.sub = opts.sub
    this.pubConn = opts.pub
    this.sharded = opts.sharded
    this.watched = [opts.sub, opts.pub, ...(opts.peers ?? [])]
    this.maxPending = opts.maxPendingPublishes ?? 10_000
    this.history = opts.history ?? null
    this.appender = this.history === null ? null : new Appender(this.pubConn as ScriptingClient, this.history, this.sharded ? 'spublish' : 'publish', !this.sharded)
    // On the publish connection, after the appends they follow: one order, one outage buffer.
    this.enqueuer = new Enqueuer(this.pubConn as ScriptingClient, opts.keyPrefix, this.sharded ? 'spublish' : 'publish')
    this.pubConn.on('close', () => this.pubWaiters.trip(new Error('the Redis connection dropped with the publish in flight')))
    for (const c of this.watched) {
      for (const ev of ['ready', 'close', 'end', 'reconnecting', '+node', '-node']) c.on(ev, () => this.updateState())
    }
    // Runs inside ioredis's reply parser: a listener's exception must not escape into it.
    const deliver = (channel: string, message: string): void => {
      for (const l of this.listeners) {
        try { l(channel, message) } catch (err) { this.opts.onError?.(err as Error) }
      }
    }
    this.sub.on(this.sharded ? 'smessage' : 'message', deliver)
    // ioredis replaces a Cluster's sharded subscribers one shard at a time (a
    // dropped connection), the Cluster staying `ready` throughout, and after
    // each slots refresh that changed the topology (a slot moved) or found a
    // subscriber unhealthy it sends every subscriber's SSUBSCRIBEs again (or
    // will, once a new one's connection is ready) and emits `subscribersReady`.
    // So the event also follows a replacement that failed to connect (retried
    // 0.2 to 2 s later while a master is down) and the first connect: a
    // listener must be cheap to call often (the node's catch-ups are spaced).
    if (this.sharded) {
      this.sub.on('subscribersReady', () => {
        for (const l of this.shardListeners) {
          try { l() } catch (err) { this.opts.onError?.(err as Error) }
        }
      })
    }
  }

  get healthy (): boolean {
    return this.watched.every((c) => c.status === 'ready')
  }

  // Messages: an append (an event with its live copies and webhooks) is one;
  // a plain publish is one per channel, and its webhook jobs one more.
  get unwritten (): number { return this.retry.length + this.outbox.length + this.overdue }

  /**
   * Publishes made while Redis is unreachable are kept (up to the bound, then
   * refused with an error) and replayed in order after a short delay once it is
   * back, when the other nodes have had time to resubscribe. Publishes stuck on
   * a connected but unresponsive Redis (paused) count toward the same bound,
   * and are answered as held after PUBLISH_WAIT_MS (at once while an earlier
   * one is overdue): Redis takes them, in order, when it resumes; if the
   * connection drops first, they join the replay.
   */
  async publish (channels: string | readonly string[], message: string, webhooks?: Webhooks): Promise<void> {
    const list = typeof channels === 'string' ? [channels] : channels
    const jobs: Job[] = list.map((channel) => ({ channel, message }))
    const enqueue = webhooks === undefined ? [] : jobsOf(webhooks.fanout, webhooks.body)
    if (enqueue.length > 0) jobs.push({ enqueue })
    // All of a message's channels fit, or none is taken: a 503 then means nowhere.
    await this.submit(jobs, async () => {
      const failed = await Promise.all(jobs.map(async (j) => 'enqueue' in j ? await this.enqueueOne(j.enqueue) : await this.publishOne((j as { channel: string }).channel, message)))
      return { failed: failed.flat(), value: undefined }
    }, undefined)
  }

  /** What Redis did not take of webhook jobs: nothing, or the jobs again. */
  private async enqueueOne (jobs: readonly Enqueue[]): Promise<Job[]> {
    try {
      this.appender?.flush()
      await this.onPub(this.enqueuer.enqueue(jobs))
      return []
    } catch (err) {
      if ((err as Error).name === 'ReplyError') this.opts.onError?.(err as Error)
      return [{ enqueue: jobs }]
    }
  }

  /**
   * The append script (streams-redis.ts), under the same rules as publish():
   * held through an outage and replayed through the script, in order, so held
   * messages get their positions when Redis is back; answered as held (null)
   * past PUBLISH_WAIT_MS.
   */
  async append (a: Append): Promise<Position | null> {
    if (this.appender === null) throw new Error('history is off: nothing to append to')
    return await this.submit([{ append: a }], async () => await this.appendOne(a), null)
  }

  /**
   * append() of each under one submit: one bound check, one deadline, one
   * script call per 64 (per hash slot on a Cluster) in one turn; what Redis
   * did not take is held and replayed in order like any append.
   */
  async appendMany (list: readonly Append[]): Promise<Array<Position | null | Error>> {
    if (this.appender === null) throw new Error('history is off: nothing to append to')
    // A batch heavier than the whole bound (a small REDIS_PUBLISH_BUFFER)
    // would be refused even by an idle Redis: taken in slices that fit, in
    // order, each answered as it went, as the same events published one by one.
    let w = 0
    for (const a of list) w += appendWeight(a)
    if (w > this.maxPending && list.length > 1) {
      const out: Array<Position | null | Error> = []
      let from = 0
      while (from < list.length) {
        let to = from
        let sw = 0
        while (to < list.length && (to === from || sw + appendWeight(list[to]!) <= this.maxPending)) sw += appendWeight(list[to++]!)
        const slice = list.slice(from, to)
        try { out.push(...await this.appendMany(slice)) } catch (err) { for (let i = 0; i < slice.length; i++) out.push(err as Error) }
        from = to
      }
      return out
    }
    const held: null[] = list.map(() => null)
    return await this.submit(list.map((a) => ({ append: a })), async () => {
      let got: Array<Position | Error>
      try {
        got = await this.onPub(this.appender!.appendMany(list))
      } catch {
        return { failed: list.map((a) => ({ append: a })), value: held }
      }
      const value: Array<Position | null> = []
      const failed: Job[] = []
      const after: Array<Promise<Job[]>> = []
      list.forEach((a, i) => {
        const p = got[i]!
        if (p instanceof Error) {
          if (p.name === 'ReplyError') this.opts.onError?.(p)
          failed.push({ append: a })
          value.push(null)
          return
        }
        value.push(p)
        const rest = this.afterAppend(a, p)
        if (rest !== null) after.push(rest)
      })
      for (const jobs of await Promise.all(after)) failed.push(...jobs)
      return { failed, value }
    }, held)
  }

  private async submit<T> (jobs: Job[], run: () => Promise<Outcome<T>>, held: T): Promise<T> {
    if (this.closing) throw new Error('broker closed')
    const w = jobs.reduce((n, j) => n + weight(j), 0)
    if (this.held > 0 || !this.healthy || this.replayTimer !== null) {
      if (this.held + this.pending + w > this.maxPending) throw new Error(`Redis unreachable and the publish buffer is full (${this.maxPending})`)
      this.hold(this.outbox, jobs)
      this.scheduleReplay()
      return held
    }
    if (this.pending + w > this.maxPending) throw new Error(`Redis publish queue full (${this.maxPending} pending)`)
    this.pending += w
    // Settles, even when the connection drops or the broker closes under it.
    const settled = run().then((r) => {
      this.pending -= w
      // Dropped in flight: kept for the replay rather than lost.
      if (r.failed.length > 0) { this.hold(this.retry, r.failed); this.scheduleReplay() }
      return r.value
    })
    // Redis is already not answering: no point in waiting out another deadline.
    if (this.overdue > 0) {
      // Answered held at once, and counted unwritten until Redis takes it.
      this.overdue += jobs.length
      const done = (): void => { this.overdue -= jobs.length }
      settled.then(done, done)
      return held
    }
    return await this.atMostWait(settled, held, jobs.length)
  }

  private hold (list: Job[], jobs: readonly Job[]): void {
    for (const j of jobs) { list.push(j); this.held += weight(j) }
  }

  /** What Redis did not take of one message on one channel: nothing, or the message again. */
  private async publishOne (channel: string, message: string): Promise<Job[]> {
    try {
      // Appends issued before go first: one order on the connection.
      this.appender?.flush()
      await this.onPub(this.sharded ? (this.pubConn as Cluster).spublish(channel, message) : this.pubConn.publish(channel, message))
      return []
    } catch {
      return [{ channel, message }]
    }
  }

  /**
   * One append. Standalone, the script publishes the live-only copies too; on
   * a Cluster they live in other slots, so they follow the script, and one
   * that fails is retried as a plain message (its position is already given).
   */
  private async appendOne (a: Append): Promise<Outcome<Position | null>> {
    let position: Position
    try {
      position = await this.onPub(this.appender!.append(a))
    } catch (err) {
      // A reply error (not a dropped connection) is a fault worth a log line: it is retried like a drop.
      if ((err as Error).name === 'ReplyError') this.opts.onError?.(err as Error)
      return { failed: [{ append: a }], value: null }
    }
    const rest = this.afterAppend(a, position)
    return { failed: rest === null ? [] : await rest, value: position }
  }

  /** What follows an append once it has its position: the Cluster's live-only copies, its webhook jobs; null when nothing. */
  private afterAppend (a: Append, position: Position): Promise<Job[]> | null {
    const enqueue = a.webhooks === undefined ? [] : jobsOf(a.webhooks, placedJson(a.draft, position))
    const copies = this.sharded ? a.also : []
    if (copies.length === 0 && enqueue.length === 0) return null
    const message = place(a.draft, position)
    return Promise.all([
      ...copies.map(async (channel) => await this.publishOne(channel, message)),
      ...(enqueue.length > 0 ? [this.enqueueOne(enqueue)] : []),
    ]).then((failed) => failed.flat())
  }

  /** Resolves with what `settled` does, or `held` after PUBLISH_WAIT_MS with its `jobs` counted overdue until it settles. */
  private async atMostWait<T> (settled: Promise<T>, held: T, jobs: number): Promise<T> {
    return await new Promise<T>((resolve) => {
      let late = false
      const timer = setTimeout(() => { late = true; this.overdue += jobs; resolve(held) }, PUBLISH_WAIT_MS)
      void settled.then((position) => {
        clearTimeout(timer)
        if (late) this.overdue -= jobs
        resolve(position)
      })
    })
  }

  async publishNow (channel: string, message: string): Promise<void> {
    if (this.closing || !this.healthy) throw new Error('Redis unreachable')
    await this.onPub(this.sharded ? (this.pubConn as Cluster).spublish(channel, message) : this.pubConn.publish(channel, message))
  }

  async subscribe (channel: string): Promise<void> {
    const done = this.sharded ? (this.sub as Cluster).ssubscribe(channel) : this.queued(true, channel)
    await this.closed.guard(done)
  }

  async unsubscribe (channel: string): Promise<void> {
    if (this.closing) return
    if (this.sharded) await (this.sub as Cluster).sunsubscribe(channel)
    else await this.queued(false, channel)
  }

  /**
   * (Un)subscriptions asked for in one event-loop turn go out together, in
   * the order asked, as one SUBSCRIBE (or UNSUBSCRIBE) per run of the same
   * kind: a reconnect storm's thousands of user channels cost a command per
   * turn, not one each, and a channel dropped then taken again in one turn
   * ends subscribed. Sharded subscriptions go one by one: a channel's shard
   * is its own.
   */
  private queued (subscribe: boolean, channel: string): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.subOps.length === 0) setImmediate(() => this.flushSubOps())
      this.subOps.push({ subscribe, channel, resolve, reject })
    })
  }

  private flushSubOps (): void {
    const ops = this.subOps
    this.subOps = []
    for (let i = 0; i < ops.length;) {
      let j = i
      while (j < ops.length && ops[j]!.subscribe === ops[i]!.subscribe) j++
      const run = ops.slice(i, j)
      const channels = run.map((o) => o.channel)
      const sent = run[0]!.subscribe ? this.sub.subscribe(...channels) : this.sub.unsubscribe(...channels)
      sent.then(() => { for (const o of run) o.resolve() }, (err: unknown) => { for (const o of run) o.reject(err) })
      i = j
    }
  }

  onMessage (listener: MessageListener): void { this.listeners.push(listener) }
  onStateChange (listener: StateListener): void { this.stateListeners.push(listener) }
  onShardResubscribed (listener: () => void): void { this.shardListeners.push(listener) }

  /** Tells the state listeners where the connections stand now (after the backend connected them). */
  checkState (): void { this.updateState() }

  /** Stops; the backend closes the connections after. */
  async close (): Promise<void> {
    this.closing = true
    if (this.replayTimer) clearTimeout(this.replayTimer)
    const err = new Error('broker closed')
    this.closed.trip(err)
    this.pubWaiters.trip(err)
  }

  /** A command on the publish connection, settled even if the connection drops under it. */
  private async onPub<T> (command: Promise<T>): Promise<T> {
    return await this.pubWaiters.guard(command)
  }

  private updateState (): void {
    const h = this.healthy
    if (h === this.lastHealthy) return
    this.lastHealthy = h
    this.scheduleReplay()
    for (const l of this.stateListeners) l(h)
  }

  /** Replays held publishes REDIS_REPLAY_DELAY after Redis is back, when the other nodes have resubscribed. */
  private scheduleReplay (): void {
    if (!this.healthy || this.replayTimer !== null || this.closing) return
    if (this.held === 0) return
    this.replayTimer = setTimeout(() => {
      this.replay().catch((err: Error) => this.opts.onError?.(err)).finally(() => {
        this.replayTimer = null
        this.scheduleReplay()
      })
    }, this.opts.replayDelayMs ?? 2000)
    this.replayTimer.unref()
  }

  private async replay (): Promise<void> {
    // In-flight failures first: they were published before anything held since.
    if (this.retry.length > 0) { this.outbox = this.retry.concat(this.outbox); this.retry = [] }
    while (this.outbox.length > 0 && this.healthy && !this.closing) {
      // Sent back to back, not one by one: one connection (one per shard on a
      // Cluster) keeps them in order, so a stream's held appends take their
      // offsets in the order they were published.
      const batch = this.outbox.slice(0, 500)
      const outcomes = await Promise.all(batch.map(async (j) => 'append' in j
        ? await this.appendOne(j.append)
        : 'enqueue' in j
          ? { failed: await this.enqueueOne(j.enqueue), value: null }
          : { failed: await this.publishOne(j.channel, j.message), value: null }))
      this.outbox.splice(0, batch.length)
      for (const j of batch) this.held -= weight(j)
      // What failed (the connection dropped again) goes first next time; what
      // Redis took is not sent twice.
      const failed = outcomes.flatMap((o) => o.failed)
      if (failed.length > 0) {
        const rest = this.outbox
        this.outbox = []
        this.hold(this.outbox, failed)
        this.outbox.push(...rest)
        return
      }
    }
  }
}

/** The caller's own client, as the publisher library gets it: ioredis, standalone or Cluster. */
export interface PublishingClient {
  publish (channel: string, message: string): Promise<unknown>
  spublish?: (channel: string, message: string) => Promise<unknown>
  /** ioredis: the stream append is a script defined on the client */
  defineCommand?: ScriptingClient['defineCommand']
  /** ioredis: true on a Cluster */
  readonly isCluster?: boolean
}

/**
 * Publishing over a client someone else owns (the publisher library's
 * direct-to-Redis mode): each channel at once, failures to the caller. No
 * outage buffer: the caller is a service with its own retry policy, not a
 * node that must answer within its deadline.
 */
export class ClientPublish implements Publish {
  private readonly one: (channel: string, message: string) => Promise<unknown>
  private readonly appender: Appender | null = null
  private readonly enqueuer: Enqueuer | null = null

  /**
   * `sharded` (SPUBLISH) defaults to true on an ioredis Cluster, where nodes
   * listen with SSUBSCRIBE. `history`: what the nodes keep per stream
   * (HISTORY_SIZE, HISTORY_TTL), null when they keep nothing.
   */
  constructor (client: PublishingClient, sharded = client.isCluster === true, readonly history: HistoryConfig | null = null, webhooks: { keyPrefix: string } | null = null) {
    // Nodes on a Redis Cluster listen with SSUBSCRIBE, which a plain PUBLISH
    // never reaches: the publish would succeed, return an id and reach no one.
    if (sharded && typeof client.spublish !== 'function') throw new Error('sharded publishing needs a Redis client with spublish (ioredis 5 or later)')
    this.one = sharded
      ? async (c, m) => await client.spublish!(c, m)
      : async (c, m) => await client.publish(c, m)
    if (history !== null) {
      if (typeof client.defineCommand !== 'function') throw new Error('history needs a Redis client that runs scripts (ioredis: defineCommand); with the nodes\' history off, pass history: false')
      // The live-only copies go in the script where they share its server (not a Cluster).
      this.appender = new Appender(client as ScriptingClient, history, sharded ? 'spublish' : 'publish', !sharded && client.isCluster !== true)
    }
    if (webhooks !== null) {
      if (typeof client.defineCommand !== 'function') throw new Error('webhooks need a Redis client that runs scripts (ioredis: defineCommand); with no webhook endpoints on the cluster, pass webhooks: false')
      this.enqueuer = new Enqueuer(client as ScriptingClient, webhooks.keyPrefix, sharded ? 'spublish' : 'publish')
    }
  }

  async publish (channels: string | readonly string[], message: string, webhooks?: Webhooks): Promise<void> {
    // Appends issued before go first: one order on the connection.
    this.appender?.flush()
    await Promise.all([
      ...(typeof channels === 'string' ? [channels] : channels).map(async (c) => await this.one(c, message)),
      ...(webhooks !== undefined ? [this.enqueue(jobsOf(webhooks.fanout, webhooks.body))] : []),
    ])
  }

  async append (a: Append): Promise<Position> {
    if (this.appender === null) throw new Error('history is off: nothing to append to')
    const position = await this.appender.append(a)
    await this.afterAppend(a, position)
    return position
  }

  async appendMany (list: readonly Append[]): Promise<Array<Position | Error>> {
    if (this.appender === null) throw new Error('history is off: nothing to append to')
    const got = await this.appender.appendMany(list)
    return await Promise.all(list.map(async (a, i) => {
      const p = got[i]!
      if (p instanceof Error) return p
      try { await this.afterAppend(a, p); return p } catch (err) { return err as Error }
    }))
  }

  /** The live-only copies the script could not publish (a Cluster), and the webhook jobs. */
  private async afterAppend (a: Append, position: Position): Promise<void> {
    const copies = !this.appender!.liveInScript && a.also.length > 0
    if (!copies && a.webhooks === undefined) return
    await Promise.all([
      ...(copies ? [this.publish(a.also, place(a.draft, position))] : []),
      ...(a.webhooks !== undefined ? [this.enqueue(jobsOf(a.webhooks, placedJson(a.draft, position)))] : []),
    ])
  }

  private async enqueue (jobs: readonly Enqueue[]): Promise<void> {
    if (jobs.length === 0) return
    if (this.enqueuer === null) throw new Error('webhooks are off for this publisher (webhooks: false), yet an endpoint matched')
    await this.enqueuer.enqueue(jobs)
  }
}
