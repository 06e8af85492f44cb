import { inTime } from '../backend/deadline.js'
import type { StreamStore } from '../backend/streams.js'
import type { Channels } from '../cluster/channels.js'
import { HeraldError } from '../errors.js'
import { parseStream } from '../protocol/streams.js'
import { mayRead, readableStreams, type Reader } from './audience.js'
import type { Position } from './codec.js'
import { readHistory, type HistoryPage } from './history.js'
import { deliveryOf, receives, type Delivery, type Subscriber } from './hub.js'

// Resume: a connection that names, in `subscribe`'s `since`, the last position
// it processed of some of its streams gets what it missed, then live
// messages, with nothing lost or doubled at the seam.
//
// The seam: live deliveries to the connection are held from before the first
// read (Connection.startReplay), so every message that was not yet delivered
// when the hold began is either read back (its offset at or below the top the
// last page reported: the append puts it in the stream before it goes out on
// pub/sub) or held. The held ones at or below that top are dropped, the rest
// sent after the reply (Connection.endReplay).
//
// `recovered` is true only when, for every stream named, the epoch is the
// same and every message after the position is still retained. A stream that
// cannot be recovered is not replayed at all: its position in the reply is
// its top, where live messages continue, and the client refetches what it
// shows from that stream (never a partial recovery passed off as complete).

/** Messages read per page of a replay: the connection's socket takes each page before the next is read. */
const REPLAY_PAGE = 200

/**
 * A page not read by then is given up: the stream counts as not recovered.
 * Live messages to the connection are held while it replays, so a Redis that
 * stops answering (paused: its socket stays open) must not hold them for
 * as long as it is away.
 */
export const REPLAY_READ_TIMEOUT_MS = 2000

/** `read`, or a rejection once REPLAY_READ_TIMEOUT_MS have passed since it was asked for. */
async function readInTime<T> (read: Promise<T>): Promise<T> {
  return await inTime(read, REPLAY_READ_TIMEOUT_MS, () => new Error(`the history did not answer within ${REPLAY_READ_TIMEOUT_MS} ms`))
}

/** At most this many streams in one `since`: more than any connection reads. */
export const MAX_SINCE_STREAMS = 16

/** What a connection replays to: the hub's subscriber, with the seam's hold and replay. */
// Its groups are the hub's (Subscriber), which Reader reads as a ReadonlySet.
export interface Resumable extends Subscriber, Omit<Reader, 'groups'> {
  readonly closed: boolean
  startReplay (): void
  replay (d: Delivery): void
  drained (): Promise<boolean>
}

export interface Resumed {
  /** every stream named was recovered in full */
  recovered: boolean
  /** per stream named, the position the client is at once the replay is through: live messages continue after it */
  positions: Record<string, Position>
  /** the streams named that were not recovered (epoch changed, history no longer retained, unreadable) */
  unrecovered: string[]
  /** the positions the replay covered, for the seam: held live messages at or below them were sent already */
  tops: Map<string, Position>
}

/**
 * Checks `since` before anything is held or read: every name a stream, and
 * one the connection may read (audience.ts mayRead). Throws the refusal.
 */
export function checkSince (r: Reader, since: Record<string, Position>): void {
  const names = Object.keys(since)
  if (names.length > MAX_SINCE_STREAMS) throw new HeraldError('INVALID_PAYLOAD', `since names at most ${MAX_SINCE_STREAMS} streams`)
  for (const name of names) {
    if (parseStream(name) === null) throw new HeraldError('UNKNOWN_STREAM', `since names no stream: ${JSON.stringify(name.slice(0, 140))}; streams are ${readableStreams(r).join(', ')} for this connection`)
    if (!mayRead(r, name)) throw new HeraldError('STREAM_FORBIDDEN', `this connection may not read ${JSON.stringify(name.slice(0, 140))}: it reads ${readableStreams(r).join(', ')}`)
  }
}

/** The current top of every stream `r` reads (or of `names`), for `welcome`. */
export async function positionsOf (streams: StreamStore, ch: Channels, r: Reader, names: readonly string[] = readableStreams(r)): Promise<Record<string, Position>> {
  const tops = await Promise.all(names.map(async (name) => await streams.position(ch.of(parseStream(name)!))))
  return Object.fromEntries(names.map((name, i) => [name, tops[i]!]))
}

/**
 * Replays to `conn` what it missed of each stream in `since` (checked by
 * checkSince) and may receive. The caller has called conn.startReplay() and
 * ends the seam with the result. A stream whose read fails (Redis
 * unreachable) or does not answer in REPLAY_READ_TIMEOUT_MS counts as not
 * recovered; its position is then the one given.
 */
export async function replay (streams: StreamStore, ch: Channels, conn: Resumable, since: Record<string, Position>): Promise<Resumed> {
  const positions: Record<string, Position> = {}
  const unrecovered: string[] = []
  const tops = new Map<string, Position>()
  // Every stream's first page is asked for at once (one batch of the turn's
  // reads, src/backend/turn-batch.ts), then replayed one stream after the other.
  const firsts = Object.entries(since).map(([name, from]) => readInTime(readHistory(streams, ch, parseStream(name)!, from.offset, REPLAY_PAGE)))
  for (const f of firsts) f.catch(() => {})
  for (const [i, [name, from]] of Object.entries(since).entries()) {
    let r: { recovered: boolean, at: Position }
    try {
      r = await replayStream(streams, ch, conn, name, from, firsts[i]!)
    } catch {
      r = { recovered: false, at: from }
    }
    positions[name] = r.at
    if (!r.recovered) unrecovered.push(name)
    // Held live messages at or below it were replayed, or (not recovered) belong to history the client gives up on.
    tops.set(name, r.at)
    if (conn.closed) break
  }
  return { recovered: unrecovered.length === 0, positions, unrecovered, tops }
}

async function replayStream (streams: StreamStore, ch: Channels, conn: Resumable, name: string, from: Position, first: Promise<HistoryPage>): Promise<{ recovered: boolean, at: Position }> {
  const stream = parseStream(name)!
  let after = from.offset
  let epoch: string | null = null
  for (;;) {
    let page: HistoryPage
    if (epoch === null) page = await first
    else {
      try {
        page = await readInTime(readHistory(streams, ch, stream, after, REPLAY_PAGE))
      } catch {
        // Pages up to `after` were sent: the client is there, not back at `from`.
        return { recovered: false, at: { epoch, offset: after } }
      }
    }
    if (epoch === null) {
      epoch = page.epoch
      // Another epoch (history lost), a position beyond the top (not from this
      // history), or the first message after it no longer retained: nothing is
      // replayed; the client continues from the top.
      const first = page.messages[0]
      const lost = page.epoch !== from.epoch || from.offset > page.top ||
        (from.offset < page.top && (first === undefined || first.offset !== from.offset + 1))
      if (lost) return { recovered: false, at: { epoch: page.epoch, offset: page.top } }
    } else if (page.epoch !== epoch) {
      // History lost between two pages: what was sent stands, the rest is gone.
      return { recovered: false, at: { epoch: page.epoch, offset: page.top } }
    }
    for (const env of page.messages) {
      // A hole: a message no node could deliver (readHistory leaves it out).
      if (env.offset !== after + 1) return { recovered: false, at: { epoch, offset: page.top } }
      after = env.offset
      if (receives(conn, name, env)) conn.replay(deliveryOf(env))
    }
    if (!await conn.drained()) return { recovered: false, at: { epoch, offset: after } }
    if (page.next === null) {
      return after === page.top ? { recovered: true, at: { epoch, offset: after } } : { recovered: false, at: { epoch, offset: page.top } }
    }
  }
}
