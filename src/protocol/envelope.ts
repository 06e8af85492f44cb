import type { ErrorCode } from '../errors.js'
import { Errors } from '../errors.js'
import { Envelope, FrameId } from './schema.js'
import { compile, describe } from './validation.js'

// One envelope both ways: { type, id?, payload? } (schema.ts).

export interface ClientMessage {
  type: string
  id?: string
  payload?: Record<string, unknown>
}

export type ParseResult =
  | { ok: true, msg: ClientMessage }
  | { ok: false, code: ErrorCode, message: string, id?: string }

const validEnvelope = compile(Envelope)
const validId = compile(FrameId)

export function parseClientFrame (text: string): ParseResult {
  let raw: unknown
  try {
    raw = JSON.parse(text)
  } catch {
    return { ok: false, code: 'BAD_JSON', message: Errors.BAD_JSON.message }
  }
  if (validEnvelope(raw)) {
    // Only the envelope's own fields go on: nothing else a client adds is read.
    const msg: ClientMessage = { type: raw.type }
    if (raw.id !== undefined) msg.id = raw.id
    if (raw.payload !== undefined) msg.payload = raw.payload
    return { ok: true, msg }
  }
  const { error, message } = describe(validEnvelope.errors!, '')
  if (error.instancePath === '' && error.keyword === 'type') return { ok: false, code: 'BAD_MESSAGE', message: 'a frame must be a JSON object {type, id?, payload?}' }
  // Echo an id only when it is well formed, so replies never carry attacker-sized strings.
  const rawId = (raw as { id?: unknown }).id
  const id = rawId !== undefined && validId(rawId) ? rawId : undefined
  return { ok: false, code: error.instancePath === '/payload' ? 'INVALID_PAYLOAD' : 'BAD_MESSAGE', message, ...(id !== undefined ? { id } : {}) }
}

export function serverFrame (type: string, payload?: unknown, id?: string): string {
  const out: { type: string, id?: string, payload?: unknown } = { type }
  if (id !== undefined) out.id = id
  if (payload !== undefined) out.payload = payload
  return JSON.stringify(out)
}
