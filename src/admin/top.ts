import type diagnostics from 'node:diagnostics_channel'
import type { BoardLimits, Ranked } from '../backend/leaderboards.js'
import type { Herald } from '../context.js'
import { channels, type ConnectionOpen, type EventPublished } from '../observability/channels.js'
import { withBackend } from './actions.js'

// The dashboard's leaderboards: users by connections opened and event types by
// events published, per minute, summed over the cluster in the backend's
// leaderboards. Each node counts what it sees (from the diagnostics channels:
// its own connections, the events published through it) and adds a batch
// every TOP_FLUSH_MS, never a call per connection or event. Bounded
// everywhere: at most MAX_PENDING members per board wait for a batch (more
// are not counted), a minute keeps its 1,000 highest, and lapses after 15
// minutes. Events the publisher library puts on Redis itself pass no node's
// publisher, so they are not counted.

export const TOP_FLUSH_MS = 5000
export const TOP_WINDOW_MINUTES = 5
export const TOP_SIZE = 10
export const BOARD_LIMITS: BoardLimits = { keep: 1000, retainMs: 15 * 60_000 }
const MAX_PENDING = 10_000

export type Board = 'users' | 'events'

export const minuteOf = (ms: number): number => Math.floor(ms / 60_000)

export interface TopReply { windowMinutes: number, users: Ranked[], eventTypes: Ranked[] }

/** Counts what this node sees and adds it to the boards every TOP_FLUSH_MS; returns the stop. */
export function startTopCounts (h: Herald, onError: (err: Error) => void): () => void {
  const serverId = h.config.serverId
  // board -> minute -> member -> count, since the last batch
  const pending: Record<Board, Map<number, Map<string, number>>> = { users: new Map(), events: new Map() }
  const sizes: Record<Board, number> = { users: 0, events: 0 }
  const count = (board: Board, name: string): void => {
    const minute = minuteOf(Date.now())
    let m = pending[board].get(minute)
    if (m === undefined) { m = new Map(); pending[board].set(minute, m) }
    const n = m.get(name)
    if (n !== undefined) { m.set(name, n + 1); return }
    if (sizes[board] >= MAX_PENDING) return
    sizes[board]++
    m.set(name, 1)
  }
  const subs: Array<[diagnostics.Channel, (m: unknown) => void]> = [
    [channels.connectionOpen, (m) => { const x = m as ConnectionOpen; if (x.endpoint === 'events' && !x.guest) count('users', x.userId) }],
    [channels.eventPublished, (m) => { const x = m as EventPublished; if (x.kind === 'event') count('events', x.type) }],
  ]
  const mine = subs.map(([ch, fn]): [diagnostics.Channel, (m: unknown) => void] => [ch, (m) => { if ((m as { serverId?: unknown }).serverId === serverId) fn(m) }])
  for (const [ch, fn] of mine) ch.subscribe(fn)

  let running = false
  const flush = async (): Promise<void> => {
    const batches: Array<[Board, number, Map<string, number>]> = []
    for (const board of ['users', 'events'] as const) {
      for (const [minute, m] of pending[board]) batches.push([board, minute, m])
      pending[board] = new Map()
      sizes[board] = 0
    }
    // Counts are approximate by nature: a batch the backend cannot take now is
    // dropped rather than queued behind an outage.
    if (batches.length === 0 || !h.probe.healthy) return
    await Promise.all(batches.map(async ([board, minute, m]) => await h.backend.leaderboards.add(board, minute, m, BOARD_LIMITS)))
  }
  const timer = setInterval(() => {
    // A batch still in flight (a stalled Redis): the next waits, bounded by MAX_PENDING.
    if (running) return
    running = true
    flush().catch(onError).finally(() => { running = false })
  }, TOP_FLUSH_MS)
  timer.unref()
  return () => {
    clearInterval(timer)
    for (const [ch, fn] of mine) ch.unsubscribe(fn)
  }
}

/** The leaders of the last TOP_WINDOW_MINUTES minutes, the current one included. */
export async function readTop (h: Herald): Promise<TopReply> {
  const now = minuteOf(Date.now())
  const minutes = Array.from({ length: TOP_WINDOW_MINUTES }, (_v, i) => now - i)
  return await withBackend(h, 'the leaderboards', async () => {
    const [users, eventTypes] = await Promise.all([
      h.backend.leaderboards.top('users', minutes, TOP_SIZE),
      h.backend.leaderboards.top('events', minutes, TOP_SIZE),
    ])
    return { windowMinutes: TOP_WINDOW_MINUTES, users, eventTypes }
  })
}
