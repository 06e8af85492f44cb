import { place, type Position } from '../events/codec.js'
import type { MemoryStore } from './memory-store.js'
import { checkRead, metaTtlMs, newEpoch, page, type Append, type HistoryConfig, type StreamRead, type StreamStore } from './streams.js'

// History in this process: the same steps as the Redis scripts
// (streams-redis.ts), each done at once, so the memory broker's append is as
// atomic with its delivery as the script is with its PUBLISH.

const SWEEP_EVERY_MS = 60_000
const swept = new WeakMap<MemoryStore, number>()

/** The stream's meta, made anew (new epoch, top 0, the old messages dropped) when it is gone; its life extended either way. */
function meta (store: MemoryStore, channel: string, h: HistoryConfig, now: number): { epoch: string, top: number, expiresAt: number } {
  let m = store.streamMeta.get(channel)
  if (m === undefined || m.expiresAt <= now) {
    m = { epoch: newEpoch(), top: 0, expiresAt: 0 }
    store.streamMeta.set(channel, m)
    store.streams.delete(channel)
  }
  m.expiresAt = now + metaTtlMs(h)
  return m
}

/** Streams and metas past their time go, as Redis expires keys: a development node with many idle users does not keep them all. */
function sweep (store: MemoryStore, now: number): void {
  if (now - (swept.get(store) ?? 0) < SWEEP_EVERY_MS) return
  swept.set(store, now)
  for (const [k, s] of store.streams) if (s.expiresAt <= now) store.streams.delete(k)
  for (const [k, m] of store.streamMeta) if (m.expiresAt <= now) store.streamMeta.delete(k)
}

/** Appends to the stream of `a.channel` and returns the position and the message as it goes out. */
export function appendInMemory (store: MemoryStore, a: Append, h: HistoryConfig, now = Date.now()): { position: Position, message: string } {
  sweep(store, now)
  const m = meta(store, a.channel, h, now)
  const position = { offset: ++m.top, epoch: m.epoch }
  const message = place(a.draft, position)
  let s = store.streams.get(a.channel)
  if (s === undefined || s.expiresAt <= now) {
    s = { messages: [], expiresAt: 0 }
    store.streams.set(a.channel, s)
  }
  s.messages.push({ offset: position.offset, message })
  if (s.messages.length > h.size) s.messages.splice(0, s.messages.length - h.size)
  s.expiresAt = now + h.ttlMs
  return { position, message }
}

export class MemoryStreams implements StreamStore {
  constructor (private readonly store: MemoryStore, readonly history: HistoryConfig) {}

  async position (channel: string): Promise<Position> {
    const m = meta(this.store, channel, this.history, Date.now())
    return { offset: m.top, epoch: m.epoch }
  }

  async read (channel: string, after: number, limit: number): Promise<StreamRead> {
    checkRead(after, limit)
    const now = Date.now()
    const m = meta(this.store, channel, this.history, now)
    const s = this.store.streams.get(channel)
    const all = s === undefined || s.expiresAt <= now ? [] : s.messages
    // Offsets are consecutive in the array: the first after `after` is found by arithmetic.
    const from = all.length === 0 ? 0 : Math.max(0, after + 1 - all[0]!.offset)
    return page(all.slice(from, from + limit), m.epoch, m.top, limit, this.history.ttlMs, now)
  }
}
