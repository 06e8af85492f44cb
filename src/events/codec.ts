// The message a node puts on a channel: a tab-separated header the receiving
// node routes on without parsing JSON, then the client-ready JSON payload that
// is framed once and written to every recipient.
//
//   kind \t origin \t publishedAtMs \t type \t userId \t json
//
// origin: the node that already delivered it to its own connections (during a
// Redis outage), which skips the echo; empty otherwise.
// kind: e (event), n (notification) or c (control: revocations, evictions;
// `type` names the action and json is its argument, never sent to clients). Header fields never contain tabs:
// types are validated segments, ids are checked at the edge.

export interface Envelope {
  kind: 'e' | 'n' | 'c'
  origin: string
  publishedAt: number
  type: string
  userId: string
  json: string
}

export const encode = (e: Envelope): string =>
  `${e.kind}\t${e.origin}\t${e.publishedAt}\t${e.type}\t${e.userId}\t${e.json}`

export function decode (raw: string): Envelope | null {
  const a = raw.indexOf('\t')
  const b = raw.indexOf('\t', a + 1)
  const c = raw.indexOf('\t', b + 1)
  const d = raw.indexOf('\t', c + 1)
  const f = raw.indexOf('\t', d + 1)
  if (a !== 1 || f < 0) return null
  const kind = raw[0]
  if (kind !== 'e' && kind !== 'n' && kind !== 'c') return null
  return {
    kind,
    origin: raw.slice(a + 1, b),
    publishedAt: Number(raw.slice(b + 1, c)),
    type: raw.slice(c + 1, d),
    userId: raw.slice(d + 1, f),
    json: raw.slice(f + 1),
  }
}
