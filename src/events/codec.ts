// The message a node puts on a channel, and a stream keeps: a tab-separated
// header the receiving node routes on without parsing JSON, then the
// client-ready JSON payload that is framed once and written to every
// recipient.
//
//   kind \t origin \t publishedAtMs \t type \t userId \t stream \t offset \t epoch \t json
//
// origin: the node that already delivered it to its own connections (during a
// Redis outage), which skips the echo; empty otherwise.
// kind: e (event), n (notification) or c (control: revocations, evictions;
// `type` names the action and json is its argument, never sent to clients).
// stream: the stream it belongs to (src/protocol/streams.ts); empty for
// control messages and when history is off.
// offset, epoch: its position in that stream, given by the backend when it
// appends the message (src/backend/streams.ts); empty when it has none
// (control messages, history off, delivered locally during an outage). A
// positioned message's json ends with the same `"offset":N,"epoch":"E"`.
// Header fields never contain tabs: types are validated segments, ids are
// checked at the edge, epochs are base64url.

export interface Envelope {
  kind: 'e' | 'n' | 'c'
  origin: string
  publishedAt: number
  type: string
  userId: string
  /** the stream's name; '' when none */
  stream: string
  /** null: no position */
  offset: number | null
  /** '' when no position */
  epoch: string
  json: string
}

/** A stream's position: the offset of a message (or of its latest) in an epoch of its history. */
export interface Position { offset: number, epoch: string }

export const encode = (e: Envelope): string =>
  `${e.kind}\t${e.origin}\t${e.publishedAt}\t${e.type}\t${e.userId}\t${e.stream}\t${e.offset ?? ''}\t${e.epoch}\t${e.json}`

/**
 * A message waiting for its position: `head` is the header up to the stream
 * (tab included), `body` the JSON without its closing brace. The backend
 * appends it to its stream and completes it with place(), or the same
 * concatenation in its Lua script (src/backend/streams-redis.ts).
 */
export interface Draft { readonly head: string, readonly body: string }

/** `json` must be an object with at least one property: the position is added as its last two. */
export function draft (e: Omit<Envelope, 'offset' | 'epoch'>): Draft {
  return draftOf(e, e.json.slice(0, -1))
}

/** draft() of a JSON object given without its closing brace (`body`), as a composer that writes it has it. */
export const draftOf = (e: Omit<Envelope, 'offset' | 'epoch' | 'json'>, body: string): Draft =>
  ({ head: `${e.kind}\t${e.origin}\t${e.publishedAt}\t${e.type}\t${e.userId}\t${e.stream}\t`, body })

/** The complete message: positioned, or without a position (delivered locally during an outage). */
export const place = (d: Draft, p: Position | null): string => p === null
  ? `${d.head}\t\t${d.body}}`
  : `${d.head}${p.offset}\t${p.epoch}\t${d.body},"offset":${p.offset},"epoch":"${p.epoch}"}`

/** The client payload of a placed message: what place() puts after the header. */
export const placedJson = (d: Draft, p: Position | null): string => p === null
  ? `${d.body}}`
  : `${d.body},"offset":${p.offset},"epoch":"${p.epoch}"}`

const OFFSET = /^[1-9][0-9]{0,15}$/

export function decode (raw: string): Envelope | null {
  const a = raw.indexOf('\t')
  const b = raw.indexOf('\t', a + 1)
  const c = raw.indexOf('\t', b + 1)
  const d = raw.indexOf('\t', c + 1)
  const f = raw.indexOf('\t', d + 1)
  const g = raw.indexOf('\t', f + 1)
  const h = raw.indexOf('\t', g + 1)
  const i = raw.indexOf('\t', h + 1)
  if (a !== 1 || i < 0) return null
  const kind = raw[0]
  if (kind !== 'e' && kind !== 'n' && kind !== 'c') return null
  const offset = raw.slice(g + 1, h)
  if (offset !== '' && !OFFSET.test(offset)) return null
  return {
    kind,
    origin: raw.slice(a + 1, b),
    publishedAt: Number(raw.slice(b + 1, c)),
    type: raw.slice(c + 1, d),
    userId: raw.slice(d + 1, f),
    stream: raw.slice(f + 1, g),
    offset: offset === '' ? null : Number(offset),
    epoch: raw.slice(h + 1, i),
    json: raw.slice(i + 1),
  }
}

/** When a message was published (ms since the epoch), read from its header alone; NaN when it is no message. */
export function publishedAtOf (raw: string): number {
  const a = raw.indexOf('\t')
  const b = raw.indexOf('\t', a + 1)
  const c = raw.indexOf('\t', b + 1)
  return a === 1 && c > b ? Number(raw.slice(b + 1, c)) : NaN
}
