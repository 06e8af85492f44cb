// Event types and subscription patterns (docs/protocol.md, Event types and patterns).
//
// A type is dot-separated lowercase segments. In a pattern, `*` matches exactly
// one segment, except as the last segment, where it matches one or more.
// Matching walks segments; nothing here builds a RegExp from client input.

export const MAX_TYPE_LENGTH = 128
export const MAX_SEGMENTS = 12

const SEGMENT_SOURCE = '[a-z0-9_-]+'
const SEGMENT = new RegExp(`^${SEGMENT_SOURCE}$`)

// The same rules as JSON Schema patterns, for the schemas in schema.ts (the
// API's OpenAPI, the frame validators); the segment walk below is what
// matching uses, and a test holds the two to agreement. The length limit is a
// lookahead rather than maxLength: Ajv counts maxLength in code points, a
// walk over every pattern of a subscribe that cost more than the rest of the
// check, and these strings are ASCII when valid.
const LENGTH = `(?=.{1,${MAX_TYPE_LENGTH}}$)`
const STAR_OR_SEGMENT = `(?:${SEGMENT_SOURCE}|\\*)`
export const EVENT_TYPE_PATTERN = `^${LENGTH}${SEGMENT_SOURCE}(?:\\.${SEGMENT_SOURCE}){0,${MAX_SEGMENTS - 1}}$`
export const SUBSCRIPTION_PATTERN = `^${LENGTH}${STAR_OR_SEGMENT}(?:\\.${STAR_OR_SEGMENT}){0,${MAX_SEGMENTS - 1}}$`

/** The rules in words, for descriptions and refusals. */
export const TYPE_RULE = `dot-separated lowercase segments [a-z0-9_-], at most ${MAX_SEGMENTS} segments and ${MAX_TYPE_LENGTH} characters`
export const PATTERN_RULE = `dot-separated lowercase segments [a-z0-9_-] or *, at most ${MAX_SEGMENTS} segments and ${MAX_TYPE_LENGTH} characters`

function segmentsOf (s: unknown, allowStar: boolean): string[] | null {
  if (typeof s !== 'string' || s.length === 0 || s.length > MAX_TYPE_LENGTH) return null
  const segs = s.split('.')
  if (segs.length > MAX_SEGMENTS) return null
  for (const seg of segs) {
    if (allowStar && seg === '*') continue
    if (!SEGMENT.test(seg)) return null
  }
  return segs
}

/** Segments of a valid event type, or null. */
export const parseEventType = (s: unknown): string[] | null => segmentsOf(s, false)

/** Segments of a valid pattern, or null. */
export const parsePattern = (s: unknown): string[] | null => segmentsOf(s, true)

export function matches (pattern: readonly string[], type: readonly string[]): boolean {
  const last = pattern.length - 1
  for (let i = 0; i <= last; i++) {
    const p = pattern[i]
    if (i === last && p === '*') return type.length > i
    if (i >= type.length) return false
    if (p !== '*' && p !== type[i]) return false
  }
  return type.length === pattern.length
}

interface TrieNode<T> {
  children: Map<string, TrieNode<T>> | null
  star: TrieNode<T> | null
  /** subscribers whose pattern ends exactly here */
  ends: Set<T> | null
  /** subscribers whose pattern ends with a trailing `*` after this node: one or more segments follow */
  tail: Set<T> | null
}

const node = <T>(): TrieNode<T> => ({ children: null, star: null, ends: null, tail: null })

/**
 * Subscribers indexed by pattern, so a broadcast event costs the number of
 * matching subscribers rather than the number of connections.
 */
export class PatternIndex<T> {
  private readonly root: TrieNode<T> = node()

  add (pattern: readonly string[], sub: T): void {
    let n = this.root
    const last = pattern.length - 1
    for (let i = 0; i < last; i++) n = this.step(n, pattern[i]!)
    if (pattern[last] === '*') (n.tail ??= new Set()).add(sub)
    else (this.step(n, pattern[last]!).ends ??= new Set()).add(sub)
  }

  remove (pattern: readonly string[], sub: T): void {
    const path: Array<[TrieNode<T>, string]> = []
    let n: TrieNode<T> | null | undefined = this.root
    const last = pattern.length - 1
    for (let i = 0; i < last && n; i++) {
      const seg = pattern[i]!
      path.push([n, seg])
      n = seg === '*' ? n.star : n.children?.get(seg)
    }
    if (!n) return
    if (pattern[last] === '*') {
      n.tail?.delete(sub)
      if (n.tail?.size === 0) n.tail = null
    } else {
      const seg = pattern[last]!
      path.push([n, seg])
      const leaf = seg === '*' ? n.star : n.children?.get(seg)
      if (!leaf) return
      leaf.ends?.delete(sub)
      if (leaf.ends?.size === 0) leaf.ends = null
    }
    // Prune empty nodes bottom-up so churn does not grow the trie.
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, seg] = path[i]!
      const child = seg === '*' ? parent.star : parent.children?.get(seg)
      if (!child || child.ends || child.tail || child.star || (child.children && child.children.size > 0)) break
      if (seg === '*') parent.star = null
      else { parent.children!.delete(seg); if (parent.children!.size === 0) parent.children = null }
    }
  }

  /** Calls fn once per matching (subscriber, pattern) pair; callers dedupe subscribers. */
  forEachMatch (type: readonly string[], fn: (sub: T) => void): void {
    this.walk(this.root, type, 0, fn)
  }

  private step (n: TrieNode<T>, seg: string): TrieNode<T> {
    if (seg === '*') return (n.star ??= node())
    const children = (n.children ??= new Map())
    let c = children.get(seg)
    if (!c) { c = node(); children.set(seg, c) }
    return c
  }

  private walk (n: TrieNode<T>, type: readonly string[], i: number, fn: (sub: T) => void): void {
    if (i === type.length) {
      if (n.ends) for (const s of n.ends) fn(s)
      return
    }
    if (n.tail) for (const s of n.tail) fn(s)
    const c = n.children?.get(type[i]!)
    if (c) this.walk(c, type, i + 1, fn)
    if (n.star) this.walk(n.star, type, i + 1, fn)
  }
}
