// Pub/sub between nodes: events, notifications and control messages go out on
// channels (src/cluster/channels.ts) and come back to every node subscribed.
// Memory (broker-memory.ts) and Redis (broker-redis.ts) implementations run
// the same contract suite (test/backend/broker.test.ts).

import type { Append, HistoryConfig, Position } from './streams.js'
import type { Fanout } from './webhooks.js'

/** A message's webhook jobs: the endpoints it goes to, and the body they are POSTed. */
export interface Webhooks { readonly fanout: Fanout, readonly body: string }

export type MessageListener = (channel: string, message: string) => void
export type StateListener = (healthy: boolean) => void

/**
 * What the publish path needs of a broker. Every backend has it, the one the
 * publisher library builds over a caller's Redis client included.
 */
export interface Publish {
  /**
   * Puts one message on one or more channels, and enqueues its webhook
   * jobs. Resolves once the backend has both, or they are held for replay
   * after an outage; rejects, for every channel at once, when they can be
   * neither.
   */
  publish (channels: string | readonly string[], message: string, webhooks?: Webhooks): Promise<void>
  /** what each stream keeps; null: history is off, and append() refuses */
  readonly history: HistoryConfig | null
  /**
   * Appends a message to its channel's stream and publishes it there (and on
   * `also`) with the position the stream gave it, in one step: nobody sees
   * it on pub/sub before it is in the stream, and a stream's offsets go out
   * in order. Its webhook jobs (`a.webhooks`) are enqueued once it has its
   * position, before this resolves. Resolves with the position; null when
   * the append is held for after an outage (it gets its position then, in
   * order with the others held, and its jobs after it). Rejects as
   * publish() does.
   */
  append (a: Append): Promise<Position | null>
  /**
   * append() of each, in order, handed to the backend together (one turn,
   * so one round trip to Redis): each answered in its place with its
   * position, null (held), or the error that kept it out. Rejects, for all
   * at once, where append() would reject for any (the outage buffer full);
   * a list heavier than the whole buffer is taken in slices that fit, each
   * answered (or refused) as it went.
   */
  appendMany (list: readonly Append[]): Promise<Array<Position | null | Error>>
}

export interface Broker extends Publish {
  /** true while publishes and subscriptions reach the backend */
  readonly healthy: boolean
  /**
   * Publishes answered (held, or past the publish wait) that the backend has
   * not taken yet: lost if the process ends before it comes back.
   */
  readonly unwritten: number
  /**
   * Puts one message on one channel now or never: no buffering, no replay.
   * For the readiness probe, which must measure Redis as it is, not wait in
   * the outage buffer meant for events.
   */
  publishNow (channel: string, message: string): Promise<void>
  /** Resolves once messages on the channel will reach onMessage. */
  subscribe (channel: string): Promise<void>
  unsubscribe (channel: string): Promise<void>
  onMessage (listener: MessageListener): void
  onStateChange (listener: StateListener): void
  /**
   * Part of the subscription may have come back without the broker's state
   * changing: on a Redis Cluster, a shard's sharded subscriber was replaced
   * (its connection dropped) or slots moved, and the subscriptions were sent
   * again. What was published on those channels meanwhile did not arrive.
   * Also called when nothing was lost (a replacement that failed to connect,
   * the first connect). A drop of the whole subscription is a state change,
   * which the readiness probe follows.
   */
  onShardResubscribed (listener: () => void): void
  /** Stops: subscriptions end, waiting publishes fail, later ones are refused. */
  close (): Promise<void>
}
