// The admin side of the SDK: a typed API over a HeraldClient connected to
// /ws/admin (docs/protocol.md). Like the client it runs in browsers (the
// admin dashboard is built on it) and in Node; payload types are generated
// from the protocol's schemas (protocol-types.ts).
import { HeraldClient, type ClientOptions, type Frame } from './index.js'
import type { ClientPayloads, ServerPayloads } from './protocol-types.js'

type ServerFrameType = keyof ServerPayloads
type ServerPayload<T extends ServerFrameType> = ServerPayloads[T]
type ClientPayload<T extends keyof ClientPayloads> = ClientPayloads[T]

export type Stats = ServerPayload<'stats'>
export type Metrics = ServerPayload<'metrics'>
export type ConnectionList = ServerPayload<'connections'>
export type Revoked = ServerPayload<'revoked'>
export type TailFilter = ClientPayload<'start_tail'>
export type TailStarted = ServerPayload<'tail_started'>
export type TailBatch = ServerPayload<'tail'>
export type BroadcastInput = ClientPayload<'broadcast'>
export type WebhookList = ServerPayload<'webhooks'>

export interface AdminEvents {
  /** every ADMIN_METRICS_INTERVAL: this node, the cluster's rows, the leaderboards */
  metrics: (m: Metrics) => void
  /** the running tail's events (at most `maxPerSecond` a second) and how many were left out */
  tail: (t: TailBatch) => void
  /** the tail could not be restarted after a reconnect */
  error: (err: Error) => void
}

/**
 * An operator's connection: stats, the metrics pushes, a user's connections,
 * disconnects, revocations, broadcasts and a live tail. Pass the options of a
 * HeraldClient whose `url` is the node's /ws/admin (the token needs role
 * `admin`), or a client made already. Each call waits for the connection
 * (and starts it); a refusal rejects with HeraldError and the node's code.
 * The tail is restarted with the same filter after every reconnect, as the
 * client restores subscriptions.
 */
export class HeraldAdmin {
  readonly client: HeraldClient
  private readonly listeners: { [K in keyof AdminEvents]: Array<AdminEvents[K]> } = { metrics: [], tail: [], error: [] }
  /** the running tail's filter, restarted after a reconnect; null: no tail */
  private tailFilter: TailFilter | null = null

  constructor (options: ClientOptions | HeraldClient) {
    this.client = options instanceof HeraldClient ? options : new HeraldClient(options)
    this.client.on('frame', (f) => this.onFrame(f))
    this.client.on('state', (s) => {
      if (s !== 'connected' || this.tailFilter === null) return
      const filter = this.tailFilter
      this.client.request('start_tail', filter).catch((err: Error) => {
        // The tail was stopped or replaced meanwhile: nothing to report.
        if (this.tailFilter === filter) for (const fn of [...this.listeners.error]) call(fn, err)
      })
    })
  }

  on<K extends keyof AdminEvents> (event: K, fn: AdminEvents[K]): () => void {
    const list = this.listeners[event] as Array<AdminEvents[K]>
    list.push(fn)
    return () => { const i = list.indexOf(fn); if (i >= 0) list.splice(i, 1) }
  }

  /** Resolves once connected; see HeraldClient.connect. */
  async connect (): Promise<void> { await this.client.connect() }

  close (): void { this.client.close() }

  /** This node, and the cluster as of each node's last heartbeat. */
  async stats (): Promise<Stats> {
    return await this.ask<'stats'>('get_stats')
  }

  /** A user's connections on every node. */
  async listConnections (userId: string): Promise<ConnectionList> {
    return await this.ask<'connections'>('list_connections', { userId })
  }

  /** Closes one connection (4003) on whatever node holds it. */
  async disconnectConnection (connectionId: string): Promise<void> {
    await this.ask<'disconnected'>('disconnect', { connectionId })
  }

  /** Closes every connection of a user (4003); their tokens stay valid. */
  async disconnectUser (userId: string): Promise<void> {
    await this.ask<'disconnected'>('disconnect', { userId })
  }

  /** Refuses the session from now on and closes its connections (4004). */
  async revokeSession (sessionId: string): Promise<Revoked> {
    return await this.ask<'revoked'>('revoke_session', { sessionId })
  }

  /** Refuses every token of the user issued up to now and closes their connections (4004). */
  async revokeUser (userId: string): Promise<Revoked> {
    return await this.ask<'revoked'>('revoke_user', { userId })
  }

  /** A notification to every /ws/events connection in the cluster; resolves with its id. */
  async broadcast (n: BroadcastInput): Promise<string> {
    return (await this.ask<'broadcasted'>('broadcast', n)).id
  }

  /** Every webhook endpoint with its queue, breaker and latest attempts, and whether the backend persists the queue. */
  async webhooks (): Promise<WebhookList> {
    return await this.ask<'webhooks'>('list_webhooks')
  }

  /**
   * Starts (or replaces) the live tail: events matching `eventTypes` (default
   * every event) and, when given, of `userId` arrive through `on('tail')`,
   * capped by the node at `maxPerSecond`, with a count of those left out.
   */
  async startTail (filter: TailFilter = {}): Promise<TailStarted> {
    const started = await this.ask<'tail_started'>('start_tail', filter)
    this.tailFilter = filter
    return started
  }

  /** Stops the tail; a connection that is down has none to stop. */
  async stopTail (): Promise<void> {
    this.tailFilter = null
    if (this.client.state === 'connected') await this.ask<'tail_stopped'>('stop_tail')
  }

  /** Waits for the connection (connecting it if need be), then asks; an `error` reply rejects with HeraldError. */
  private async ask<T extends ServerFrameType> (type: string, payload?: Record<string, unknown>): Promise<ServerPayload<T>> {
    await this.client.connect()
    return (await this.client.request(type, payload)).payload as ServerPayload<T>
  }

  private onFrame (f: Frame): void {
    // Pushes carry no id; replies are the client's.
    if (f.id !== undefined) return
    if (f.type === 'metrics') for (const fn of [...this.listeners.metrics]) call(fn, f.payload as Metrics)
    else if (f.type === 'tail') for (const fn of [...this.listeners.tail]) call(fn, f.payload as TailBatch)
  }
}

function call<A> (fn: (a: A) => void, a: A): void {
  try { fn(a) } catch { /* a listener's bug must not break the connection */ }
}
