import type { StreamStore } from '../backend/streams.js'
import type { Channels } from '../cluster/channels.js'
import type { Stream } from '../protocol/streams.js'
import { decode, type Envelope } from './codec.js'
import { jsonShape, MAX_DATA_DEPTH } from './depth.js'

// Reading a stream back: what the backend kept (src/backend/streams.ts),
// decoded, as the messages a client receives. The service catch-up route
// reads it; so does a connection's resume.

// The payload is the event or notification object around `data`.
const MAX_PAYLOAD_DEPTH = MAX_DATA_DEPTH + 1

export interface HistoryPage {
  epoch: string
  top: number
  /** the retained messages, in stream order; a message a node could not deliver (not an envelope, JSON nested too deep or broken) is left out */
  messages: Envelope[]
  /** read again after this offset for more; null at the top */
  next: number | null
}

/** One page of `stream` after `after`, at most `limit` messages. */
export async function readHistory (streams: StreamStore, ch: Channels, stream: Stream, after: number, limit: number): Promise<HistoryPage> {
  const page = await streams.read(ch.of(stream), after, limit)
  const messages: Envelope[] = []
  for (const m of page.messages) {
    // Anyone with access to Redis can write there: judged as the hub judges what comes on a channel.
    const env = decode(m.message)
    if (env === null || env.kind === 'c' || env.offset !== m.offset || jsonShape(env.json, MAX_PAYLOAD_DEPTH) !== 'ok') continue
    messages.push(env)
  }
  return { epoch: page.epoch, top: page.top, messages, next: page.next }
}
