import { Ajv } from 'ajv'
import { parseEventType } from '../protocol/patterns.js'
import { AJV_OPTIONS, describe } from '../protocol/validation.js'

// Per-type JSON schemas for the `data` of client publishes (PUBLISH_SCHEMAS):
// an agent's heartbeat or a chat message has a shape its consumers rely on,
// and a malformed one is refused at the edge, with where and why, rather
// than handed to every recipient and webhook. Operators write these schemas,
// so they get their own Ajv instance (their formats and keywords must not
// leak into the protocol's validators), with the protocol's options: nothing
// coerced, stripped or defaulted.

export type DataCheck = (data: unknown) => string | null

const MAX_SCHEMAS = 1000

function compiler (): Ajv {
  return new Ajv({ ...AJV_OPTIONS, strict: false })
}

/**
 * PUBLISH_SCHEMAS read and every schema compiled, so a broken one stops the
 * boot with its type named rather than refusing publishes later.
 */
export function parsePublishSchemas (text: string): Record<string, object> {
  let raw: unknown
  try { raw = JSON.parse(text) } catch { throw new Error('must be a JSON object {"<event type>": <JSON schema>}: it is not JSON') }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new Error('must be a JSON object {"<event type>": <JSON schema>}')
  const entries = Object.entries(raw as Record<string, unknown>)
  if (entries.length > MAX_SCHEMAS) throw new Error(`may hold at most ${MAX_SCHEMAS} types`)
  const ajv = compiler()
  const out: Record<string, object> = {}
  for (const [type, schema] of entries) {
    if (parseEventType(type) === null) throw new Error(`has ${JSON.stringify(type.slice(0, 140))}, which is not an event type`)
    if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) throw new Error(`gives ${type} a schema that is not a JSON object`)
    try { ajv.compile(schema) } catch (err) { throw new Error(`gives ${type} a schema Ajv refuses: ${(err as Error).message}`) }
    out[type] = schema
  }
  return out
}

/** One check per configured type: null when `data` is valid, or what is wrong with it. */
export function compileSchemas (schemas: Record<string, object>): Map<string, DataCheck> {
  const ajv = compiler()
  const checks = new Map<string, DataCheck>()
  for (const [type, schema] of Object.entries(schemas)) {
    const valid = ajv.compile(schema)
    checks.set(type, (data) => valid(data) ? null : describe(valid.errors!, 'payload.data').message)
  }
  return checks
}
