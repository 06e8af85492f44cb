import { placedJson } from '../events/codec.js'
import type { Broker, MessageListener, StateListener, Webhooks } from './broker.js'
import { MemoryStore } from './memory-store.js'
import type { Append, HistoryConfig, Position } from './streams.js'
import { appendInMemory } from './streams-memory.js'
import { jobsOf } from './webhooks.js'
import { MemoryWebhooks } from './webhooks-memory.js'

export class MemoryBroker implements Broker {
  private readonly listeners: MessageListener[] = []
  private readonly channels = new Set<string>()
  private closed = false

  private readonly webhooks: MemoryWebhooks

  constructor (private readonly store: MemoryStore = new MemoryStore(), readonly history: HistoryConfig | null = null, keyPrefix = 'herald:') {
    this.webhooks = new MemoryWebhooks(store, keyPrefix)
  }

  get healthy (): boolean { return !this.closed }

  /** Nothing waits: every publish is taken when made. */
  get unwritten (): number { return 0 }

  async publish (channels: string | readonly string[], message: string, webhooks?: Webhooks): Promise<void> {
    this.deliverAll(typeof channels === 'string' ? [channels] : channels, message)
    if (webhooks !== undefined) await this.webhooks.enqueue(jobsOf(webhooks.fanout, webhooks.body), Date.now())
  }

  /** In the stream and on its way to subscribers in one synchronous step, as the Redis script does it; its webhook jobs right after. */
  async append (a: Append): Promise<Position> {
    if (this.history === null) throw new Error('history is off: nothing to append to')
    const { position, message } = appendInMemory(this.store, a, this.history)
    this.deliverAll([a.channel, ...a.also], message)
    if (a.webhooks !== undefined) await this.webhooks.enqueue(jobsOf(a.webhooks, placedJson(a.draft, position)), Date.now())
    return position
  }

  async appendMany (list: readonly Append[]): Promise<Array<Position | Error>> {
    const out: Array<Position | Error> = []
    for (const a of list) {
      try { out.push(await this.append(a)) } catch (err) { out.push(err as Error) }
    }
    return out
  }

  private deliverAll (channels: readonly string[], message: string): void {
    for (const channel of channels) {
      const subs = this.store.subscribers.get(channel)
      if (!subs) continue
      // Delivered on a later tick, in publish order, as Redis would.
      for (const b of subs) queueMicrotask(() => b.deliver(channel, message))
    }
  }

  async publishNow (channel: string, message: string): Promise<void> {
    await this.publish(channel, message)
  }

  async subscribe (channel: string): Promise<void> {
    if (this.closed) throw new Error('broker closed')
    this.channels.add(channel)
    let set = this.store.subscribers.get(channel)
    if (!set) { set = new Set(); this.store.subscribers.set(channel, set) }
    set.add(this)
  }

  async unsubscribe (channel: string): Promise<void> {
    this.channels.delete(channel)
    const set = this.store.subscribers.get(channel)
    set?.delete(this)
    if (set?.size === 0) this.store.subscribers.delete(channel)
  }

  onMessage (listener: MessageListener): void { this.listeners.push(listener) }
  onStateChange (_listener: StateListener): void {}
  /** An in-process subscription never drops. */
  onShardResubscribed (_listener: () => void): void {}

  async close (): Promise<void> {
    for (const c of [...this.channels]) await this.unsubscribe(c)
    this.closed = true
  }

  /** called by the store for a message on a channel this broker subscribed to */
  deliver (channel: string, message: string): void {
    if (this.closed || !this.channels.has(channel)) return
    for (const l of this.listeners) l(channel, message)
  }
}
