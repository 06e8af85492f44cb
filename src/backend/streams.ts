import { randomBytes } from 'node:crypto'
import { publishedAtOf, type Draft, type Position } from '../events/codec.js'
import { pageEnd } from './page-bytes.js'
import type { Fanout } from './webhooks.js'

// History: each stream (src/protocol/streams.ts) keeps its latest messages, so
// a client that missed some can read them back. The append happens in the
// broker (broker.ts `append`), in one step with the publish: the backend, not
// a node, gives each message its position, and nobody can see offset N+1 on
// pub/sub before N is readable here. Reads are this capability: memory
// (streams-memory.ts) and Redis (streams-redis.ts) run the contract suite
// test/backend/streams.test.ts.
//
// Per stream, named after its channel (whose hash tag they share):
//   <channel>:s  the messages, a Redis Stream whose entry ids are the offsets
//                (`<offset>-0`), trimmed to HISTORY_SIZE, expiring
//                HISTORY_TTL after the last append
//   <channel>:m  the meta: `e` the epoch, `s` the top offset; it outlives the
//                data (metaTtlMs), so a stream that expired while idle keeps
//                counting from where it was, in the same epoch
// A meta that is gone (Redis restarted empty, FLUSHALL, evicted) starts a new
// epoch and drops whatever stream data is left: offsets of the new epoch name
// other messages.

export type { Draft, Position }

/** How much each stream keeps (HISTORY_SIZE, HISTORY_TTL); null where history is off. */
export interface HistoryConfig {
  /** messages per stream */
  readonly size: number
  /** ms a stream lives after its last message; older messages are not returned */
  readonly ttlMs: number
}

/**
 * The defaults of HISTORY_SIZE and HISTORY_TTL (src/config/schema.ts), and of
 * the publisher library, which must append as the nodes do.
 */
export const DEFAULT_HISTORY: HistoryConfig = { size: 1000, ttlMs: 300_000 }

const DAY_MS = 86_400_000

/**
 * The meta outlives the stream by far: a client whose stream went idle and
 * expired still resumes in the same epoch (its position then just has
 * nothing after it), instead of seeing every idle stream as lost history.
 */
export const metaTtlMs = (h: HistoryConfig): number => Math.max(DAY_MS, 2 * h.ttlMs)

export const streamKey = (channel: string): string => `${channel}:s`
export const metaKey = (channel: string): string => `${channel}:m`

// Every append carries an epoch for a stream that turns out to have none:
// random bytes drawn in blocks, not a system call per publish.
let pool = Buffer.alloc(0)
let drawn = 0

/** A fresh epoch: 48 random bits, base64url (no tab, nothing JSON must escape). */
export function newEpoch (): string {
  if (drawn + 6 > pool.length) { pool = randomBytes(6 * 256); drawn = 0 }
  drawn += 6
  return pool.toString('base64url', drawn - 6, drawn)
}

/** One append: `draft` goes on `channel`'s stream and out on `channel`, positioned; `also` get the same message live only. */
export interface Append {
  readonly channel: string
  /** channels that receive the positioned message without it being theirs (the admin copy of a user's event) */
  readonly also: readonly string[]
  readonly draft: Draft
  /** webhook endpoints it goes to: their jobs are enqueued once it has its position, before the append resolves */
  readonly webhooks?: Fanout
}

export interface StreamMessage {
  readonly offset: number
  /** the message as it went out (src/events/codec.ts) */
  readonly message: string
}

export interface StreamRead {
  readonly epoch: string
  /** the offset of the stream's latest message in this epoch; 0 before the first */
  readonly top: number
  /**
   * Retained messages after the offset asked for, in order: in the stream
   * and published less than HISTORY_TTL ago. A gap before the first (its
   * offset above the one asked for plus one) is history no longer retained.
   */
  readonly messages: readonly StreamMessage[]
  /** the offset to read after for the next page; null when this page reached the top */
  readonly next: number | null
}

export interface StreamStore {
  readonly history: HistoryConfig
  /**
   * The stream's epoch and top. A stream without a meta gets one now, a new
   * epoch at top 0, so whoever asked knows which history later messages
   * belong to.
   */
  position (channel: string): Promise<Position>
  /** Up to `limit` retained messages after `after` (one page), with the epoch and top they belong to; creates the meta as position() does. */
  read (channel: string, after: number, limit: number): Promise<StreamRead>
}

/** At most this many messages per read: a bounded reply, never the whole stream at once. */
export const MAX_READ = 1000

/**
 * What of `raw` (a page read from the stream, in order) is retained at
 * `now`, and where the next page starts. Entries older than the TTL are
 * skipped (a stream lives HISTORY_TTL after its last message, so its oldest
 * can be older than that); a page that hit its limit below the top has more.
 */
export function page (raw: readonly StreamMessage[], epoch: string, top: number, limit: number, ttlMs: number, now: number): StreamRead {
  const oldest = now - ttlMs
  // Also at most MAX_READ_BYTES (page-bytes.ts).
  const { taken, full } = pageEnd(raw.map((m) => Buffer.byteLength(m.message)))
  const messages = raw.slice(0, taken).filter((m) => !(publishedAtOf(m.message) < oldest))
  const last = taken > 0 ? raw[taken - 1]!.offset : null
  return { epoch, top, messages, next: (taken >= limit || full) && last !== null && last < top ? last : null }
}

export function checkRead (after: number, limit: number): void {
  if (!Number.isSafeInteger(after) || after < 0) throw new RangeError(`after must be an offset (a whole number >= 0), got ${after}`)
  if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_READ) throw new RangeError(`limit must be 1-${MAX_READ}, got ${limit}`)
}
