// Writes the generated tables of docs/protocol.md from the
// sources they document: the frame schemas (src/protocol/schema.ts), the
// error registry (src/errors.ts) and the close codes
// (src/protocol/close-codes.ts). `npm run docs:protocol`; a test fails when
// a committed table differs from what this writes. Each table sits between
//   <!-- generated: NAME (npm run docs:protocol) -->  and  <!-- end: NAME -->
// and the prose around it is left alone.
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { Errors, type ErrorDef } from '../src/errors.js'
import { CloseCodeRanges, CloseCodeTable, type Reconnect } from '../src/protocol/close-codes.js'
import { ClientFrames, ServerFrames, type ClientFrameDef, type ServerFrameDef } from '../src/protocol/schema.js'

interface Schema {
  type?: string
  properties?: Record<string, Schema>
  required?: string[]
  items?: Schema
  anyOf?: Schema[]
  enum?: unknown[]
  const?: unknown
  description?: string
}

const cell = (s: string): string => s.replaceAll('|', '\\|').replaceAll('\n', ' ')
const code = (s: string): string => `\`${s}\``

/** A compact type: full at the top, keys only one level down, `object` below. */
function shape (s: Schema, depth = 0): string {
  // An object's anyOf only names which properties it needs (see payload()).
  if (s.anyOf !== undefined && s.type !== 'object') return s.anyOf.map((x) => shape(x, depth)).join(' | ')
  if (s.enum !== undefined) return s.enum.map((v) => JSON.stringify(v)).join(' | ')
  if (s.const !== undefined) return JSON.stringify(s.const)
  if (s.type === 'array') {
    const inner = shape(s.items ?? {}, depth)
    return inner.includes(' ') && !inner.startsWith('{') ? `(${inner})[]` : `${inner}[]`
  }
  if (s.type === 'object') {
    const props = Object.entries(s.properties ?? {})
    if (props.length === 0 || depth > 1) return 'object'
    const opt = (k: string): string => (s.required ?? []).includes(k) ? k : `${k}?`
    if (depth === 1) return `{${props.map(([k]) => opt(k)).join(', ')}}`
    return `{${props.map(([k, v]) => `${opt(k)}: ${shape(v, depth + 1)}`).join(', ')}}`
  }
  return s.type ?? 'any'
}

/** The payload's shape, then what its fields mean (from their descriptions). */
function payload (s: Schema): string {
  if (s.type === 'object' && Object.keys(s.properties ?? {}).length === 0) return '–'
  const notes = Object.entries(s.properties ?? {}).filter(([, v]) => v.description !== undefined).map(([k, v]) => `${code(k)}: ${v.description!}`)
  if (s.anyOf !== undefined && s.type === 'object' && s.description !== undefined) notes.unshift(`${s.description} required`)
  return cell([code(shape(s)), ...notes].join('; '))
}

const on = (e: string): string => e === 'both' ? 'events, admin' : e

function clientFrames (): string {
  const rows = Object.entries(ClientFrames as Record<string, ClientFrameDef>).map(([type, f]) =>
    `| ${code(type)} | ${on(f.endpoint)} | ${payload(f.payload as Schema)} | ${code(f.reply)}${f.description === '' ? '' : `; ${cell(f.description)}`} |`)
  return ['| type | on | payload | reply |', '|---|---|---|---|', ...rows].join('\n')
}

function serverFrames (): string {
  const rows = Object.entries(ServerFrames as Record<string, ServerFrameDef>).map(([type, f]) =>
    `| ${code(type)} | ${on(f.endpoint)} | ${payload(f.payload as Schema)} | ${cell(f.description)} |`)
  return ['| type | on | payload | when |', '|---|---|---|---|', ...rows].join('\n')
}

const SDK: Record<Reconnect, string> = {
  backoff: 'reconnects after backoff',
  soon: 'reconnects soon (within `drainJitterMs`), to another node',
  'rate-limited': 'reconnects after `Retry-After`, or backoff of at least `rateLimitDelayMs`',
  'new-token': 'asks `getToken` for a new token, reconnects',
  stop: 'stops',
}

function errorCodes (): string {
  const rows = Object.values(Errors as Record<string, ErrorDef>).map((e) =>
    `| ${code(e.code)} | ${e.status} | ${e.retryable ? 'yes' : 'no'} | ${e.reconnect === undefined ? '–' : SDK[e.reconnect]} | ${cell(e.when)} |`)
  return ['| code | status | retryable | refusing a handshake: the SDK | when |', '|---|---|---|---|---|', ...rows].join('\n')
}

function closeCodes (): string {
  const rows = Object.values(CloseCodeTable).map((c) => `| ${c.code} | ${cell(c.meaning)} | ${code(c.reconnect)}: ${SDK[c.reconnect]} |`)
  const ranges = CloseCodeRanges.map((r) => `| ${r.from}-${r.to} | ${cell(r.meaning)} | ${code(r.reconnect)}: ${SDK[r.reconnect]} |`)
  return ['| code | meaning | reconnect |', '|---|---|---|', ...rows, ...ranges].join('\n')
}

export const TABLES: Record<string, () => string> = {
  'client-frames': clientFrames,
  'server-frames': serverFrames,
  'error-codes': errorCodes,
  'close-codes': closeCodes,
}

/** Which tables each file carries. */
export const FILES: Record<string, string[]> = {
  'docs/protocol.md': ['client-frames', 'server-frames', 'error-codes', 'close-codes'],
}

/** `text` with each of `names`' tables replaced by what the sources say now. */
export function render (text: string, names: readonly string[]): string {
  let out = text
  for (const name of names) {
    const open = `<!-- generated: ${name} (npm run docs:protocol) -->`
    const close = `<!-- end: ${name} -->`
    const a = out.indexOf(open)
    const b = out.indexOf(close)
    if (a < 0 || b < a) throw new Error(`no "${open}" ... "${close}" markers`)
    out = `${out.slice(0, a + open.length)}\n${TABLES[name]!()}\n${out.slice(b)}`
  }
  return out
}

export const root = fileURLToPath(new URL('..', import.meta.url))

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  for (const [file, names] of Object.entries(FILES)) {
    const path = root + file
    const before = readFileSync(path, 'utf8')
    const after = render(before, names)
    if (after !== before) writeFileSync(path, after)
    console.log(`${file}: ${after === before ? 'up to date' : 'written'}`)
  }
}
