import { HeraldError } from '../errors.js'

// How deeply event and notification `data` may nest (docs/design.md, "Nesting
// depth"). JSON.parse takes any depth, but what walks a value by recursion
// does not: JSON.stringify throws past a few thousand levels, and Socket.IO's
// encoder overflowed the stack inside the Redis message handler, which took
// the node down. 32 levels is far beyond any event we know of and far below
// any stack.

/** Levels of objects and arrays in `data`, `data` itself being the first. */
export const MAX_DATA_DEPTH = 32

/**
 * True when `value` nests objects and arrays more than `max` levels deep.
 * Iterative, and it stops at the first level too many: a cycle counts as too deep.
 */
export function deeperThan (value: unknown, max: number): boolean {
  if (typeof value !== 'object' || value === null) return false
  const values: object[] = [value]
  const depths: number[] = [1]
  while (values.length > 0) {
    const v = values.pop()!
    const depth = depths.pop()!
    if (depth > max) return true
    const children = Array.isArray(v) ? v as unknown[] : Object.values(v)
    for (const c of children) {
      if (typeof c === 'object' && c !== null) { values.push(c); depths.push(depth + 1) }
    }
  }
  return false
}

/** Refuses `data` nested past MAX_DATA_DEPTH, before anything serialises it. */
export function checkDataDepth (data: unknown): void {
  if (deeperThan(data, MAX_DATA_DEPTH)) throw new HeraldError('DATA_TOO_DEEP', `data must nest at most ${MAX_DATA_DEPTH} levels of objects and arrays`)
}

/**
 * True when `value` holds an own `__proto__` key at any level. JSON.parse
 * makes it a plain property, but a receiver that merges the object
 * (Object.assign, a deep merge) takes it for the prototype: a client's
 * `{"__proto__":{"userId":"bob"}}` would then read as bob's. Iterative, like
 * deeperThan(), and called on values that passed it.
 */
export function holdsProtoKey (value: unknown): boolean {
  if (typeof value !== 'object' || value === null) return false
  const values: object[] = [value]
  while (values.length > 0) {
    const v = values.pop()!
    if (!Array.isArray(v) && Object.hasOwn(v, '__proto__')) return true
    for (const c of Array.isArray(v) ? v as unknown[] : Object.values(v)) {
      if (typeof c === 'object' && c !== null) values.push(c)
    }
  }
  return false
}

export type JsonShape = 'ok' | 'too_deep' | 'malformed'

/**
 * The nesting and bracket balance of a JSON text, without parsing it: for
 * messages a node takes from Redis, which anyone with access to Redis may
 * have written. Not a full check of JSON syntax.
 */
export function jsonShape (json: string, maxDepth: number): JsonShape {
  let depth = 0
  const n = json.length
  for (let i = 0; i < n; i++) {
    const c = json.charCodeAt(i)
    if (c === 0x22) { // a string: skip to its closing quote
      for (i++; i < n; i++) {
        const s = json.charCodeAt(i)
        if (s === 0x5c) i++
        else if (s === 0x22) break
      }
      if (i >= n) return 'malformed'
    } else if (c === 0x7b || c === 0x5b) {
      if (++depth > maxDepth) return 'too_deep'
    } else if (c === 0x7d || c === 0x5d) {
      if (--depth < 0) return 'malformed'
    }
  }
  return depth === 0 ? 'ok' : 'malformed'
}
