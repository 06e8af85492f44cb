import { Ajv, type ErrorObject } from 'ajv'
import type { Static, TSchema } from '@sinclair/typebox'
import type { ErrorCode } from '../errors.js'
import { ID_PATTERN, ID_RULE } from './identifiers.js'
import { EVENT_TYPE_PATTERN, PATTERN_RULE, SUBSCRIPTION_PATTERN, TYPE_RULE } from './patterns.js'
import { GROUP_PATTERN, GROUP_RULE } from './groups.js'
import { AFTER_PATTERN, EventInput, LIMIT_PATTERN, NotificationInput } from './schema.js'

// The schemas of schema.ts compiled into validators, and their failures said
// in words. Ajv, configured as Fastify's for the HTTP API (src/app.ts), so an
// API body and a frame are judged alike: nothing coerced, stripped or
// defaulted; the first failure only; lengths in characters (code points);
// patterns with the `u` flag. `verbose` gives each failure its value and its
// schema, from which the message is made.
export const AJV_OPTIONS = { coerceTypes: false, removeAdditional: false, useDefaults: false, allErrors: false, verbose: true } as const

const ajv = new Ajv(AJV_OPTIONS)

export const compile = <T extends TSchema>(schema: T): ((v: unknown) => v is Static<T>) & { errors?: ErrorObject[] | null } =>
  ajv.compile(schema) as never

const quote = (v: unknown): string => JSON.stringify(String(v).slice(0, 140))

// Patterns said in words (a regex in a refusal helps nobody), and the code a
// frame refused for breaking one gets.
const RULES: Record<string, { says: (where: string, value: unknown) => string, code?: ErrorCode }> = {
  [ID_PATTERN]: { says: (where) => `${where} must be ${ID_RULE}` },
  [EVENT_TYPE_PATTERN]: { says: (where, v) => `${where} ${quote(v)} is not an event type: ${TYPE_RULE}` },
  [SUBSCRIPTION_PATTERN]: { says: (_where, v) => `invalid pattern ${quote(v)}: ${PATTERN_RULE}`, code: 'INVALID_PATTERN' },
  [AFTER_PATTERN]: { says: (where, v) => `${where} ${quote(v)} is not an offset: a whole number from 0, without leading zeros` },
  [LIMIT_PATTERN]: { says: (where, v) => `${where} ${quote(v)} must be a whole number from 1 to 1000` },
  // Group names and publish keys share the rule (schema.ts).
  [GROUP_PATTERN]: { says: (where, v) => `${where} ${quote(v)} must be ${GROUP_RULE}` },
}

const ARTICLE: Record<string, string> = { object: 'an object', array: 'an array', string: 'a string', integer: 'an integer', number: 'a number', boolean: 'a boolean', null: 'null' }

/** `payload` + `/eventTypes/3` -> `payload.eventTypes[3]` */
function where (root: string, pointer: string): string {
  let out = root
  for (const raw of pointer.split('/').slice(1)) {
    const seg = raw.replaceAll('~1', '/').replaceAll('~0', '~').slice(0, 64)
    out += /^\d+$/.test(seg) ? `[${seg}]` : out === '' ? seg : `.${seg}`
  }
  return out === '' ? 'the value' : out
}

const parentOf = (e: ErrorObject): Record<string, unknown> => (e.parentSchema ?? {}) as Record<string, unknown>

function range (min: unknown, max: unknown, unit: string): string {
  if (typeof min === 'number' && typeof max === 'number') return `${min}-${max} ${unit}`
  if (typeof max === 'number') return `at most ${max} ${unit}`
  return `at least ${String(min)} ${unit}`
}

/** One failure in words, naming where it is from `root` ('payload', 'body', '' for the value itself). */
function say (e: ErrorObject, root: string): string {
  const at = where(root, e.instancePath)
  const s = parentOf(e)
  const rule = typeof s.pattern === 'string' ? RULES[s.pattern] : undefined
  const p = e.params as Record<string, unknown>
  switch (e.keyword) {
    case 'type': return `${at} must be ${String(p.type).split(',').map((t) => ARTICLE[t] ?? t).join(' or ')}`
    case 'required': return `${where(root, `${e.instancePath}/${String(p.missingProperty)}`)} is required`
    case 'additionalProperties': return `${where(root, `${e.instancePath}/${String(p.additionalProperty)}`)} is not allowed here`
    case 'pattern':
    case 'minLength':
    case 'maxLength':
      if (rule !== undefined) return rule.says(at, e.data)
      if (e.keyword === 'pattern') return `${at} must match ${String(p.pattern)}`
      if (s.maxLength === undefined && s.minLength === 1) return `${at} must not be empty`
      return `${at} must be ${range(s.minLength, s.maxLength, 'characters')}`
    case 'minItems':
    case 'maxItems': return `${at} must hold ${range(s.minItems, s.maxItems, 'items')}`
    case 'enum': return `${at} must be one of ${(p.allowedValues as unknown[]).join(', ')}`
    case 'const': return `${at} must be ${JSON.stringify(p.allowedValue)}`
    default: return `${at} ${e.message ?? 'is invalid'}`
  }
}

export interface Refusal { code: ErrorCode, message: string }

/**
 * The failure to report, in words. With a choice (the branches of an anyOf
 * all failed), the deepest says most; branches that each miss a property
 * become one "a or b is required".
 */
export function describe (errors: readonly ErrorObject[], root: string): { error: ErrorObject, message: string } {
  const last = errors[errors.length - 1]!
  if (last.keyword === 'anyOf' || last.keyword === 'oneOf') {
    const inner = errors.slice(0, -1)
    const deeper = inner.filter((e) => e.instancePath.length > last.instancePath.length)
    if (deeper.length > 0) {
      const e = deeper.reduce((a, b) => b.instancePath.length > a.instancePath.length ? b : a)
      return { error: e, message: say(e, root) }
    }
    if (inner.length > 0 && inner.every((e) => e.keyword === 'required')) {
      const names = inner.map((e) => where(root, `${e.instancePath}/${String((e.params as { missingProperty: unknown }).missingProperty)}`))
      return { error: last, message: `${names.join(' or ')} is required` }
    }
    const d = parentOf(last).description
    return { error: last, message: `${where(root, last.instancePath)} must be ${typeof d === 'string' ? d : 'one of the shapes allowed'}` }
  }
  return { error: errors[0]!, message: say(errors[0]!, root) }
}

/**
 * A frame payload's check: null when valid, otherwise the refusal. Breaking a
 * pattern rule that names a code (subscription patterns: INVALID_PATTERN)
 * gets that code, anything else INVALID_PAYLOAD.
 */
export function payloadCheck (schema: TSchema): (payload: unknown) => Refusal | null {
  const valid = compile(schema)
  return (payload) => {
    if (valid(payload)) return null
    const { error, message } = describe(valid.errors!, 'payload')
    const s = parentOf(error)
    const rule = typeof s.pattern === 'string' && ['pattern', 'minLength', 'maxLength'].includes(error.keyword) ? RULES[s.pattern] : undefined
    return { code: rule?.code ?? 'INVALID_PAYLOAD', message }
  }
}

/** An input's check (a publish, from the API or the publisher library): null when valid, otherwise what is wrong. */
export function inputCheck (schema: TSchema): (input: unknown) => string | null {
  const valid = compile(schema)
  return (input) => valid(input) ? null : describe(valid.errors!, '').message
}

export const checkEventInput = inputCheck(EventInput)
export const checkNotificationInput = inputCheck(NotificationInput)
