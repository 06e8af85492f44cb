import type { ErrorCode } from '../errors.js'
import { Errors } from '../errors.js'

// One envelope both ways: { type, id?, payload? }, on /ws/events and /ws/admin (docs/protocol.md, Frames).

export interface ClientMessage {
  type: string
  id?: string
  payload?: Record<string, unknown>
}

export type ParseResult =
  | { ok: true, msg: ClientMessage }
  | { ok: false, code: ErrorCode, message: string, id?: string }

const MAX_ID_LENGTH = 128
const MAX_TYPE_LENGTH = 64

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v)

export function parseClientFrame (text: string): ParseResult {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return { ok: false, code: 'BAD_JSON', message: Errors.BAD_JSON.message }
  }
  if (!isPlainObject(raw)) return { ok: false, code: 'BAD_MESSAGE', message: 'a frame must be a JSON object {type, id?, payload?}' }
  // Echo an id only when it is well formed, so replies never carry attacker-sized strings.
  const id = typeof raw.id === 'string' && raw.id.length <= MAX_ID_LENGTH ? raw.id : undefined
  if (raw.id !== undefined && id === undefined) return { ok: false, code: 'BAD_MESSAGE', message: `id must be a string of at most ${MAX_ID_LENGTH} characters` }
  if (typeof raw.type !== 'string' || raw.type.length === 0 || raw.type.length > MAX_TYPE_LENGTH) {
    return { ok: false, code: 'BAD_MESSAGE', message: 'type must be a non-empty string', id }
  }
  if (raw.payload !== undefined && !isPlainObject(raw.payload)) {
    return { ok: false, code: 'INVALID_PAYLOAD', message: 'payload must be an object', id }
  }
  const msg: ClientMessage = { type: raw.type }
  if (id !== undefined) msg.id = id
  if (raw.payload !== undefined) msg.payload = raw.payload as Record<string, unknown>
  return { ok: true, msg }
}

export function serverFrame (type: string, payload?: unknown, id?: string): string {
  const out: { type: string, id?: string, payload?: unknown } = { type }
  if (id !== undefined) out.id = id
  if (payload !== undefined) out.payload = payload
  return JSON.stringify(out)
}
