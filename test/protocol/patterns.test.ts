import t from 'tap'
import { EVENT_TYPE_PATTERN, matches, MAX_SEGMENTS, MAX_TYPE_LENGTH, parseEventType, parsePattern, PatternIndex, SUBSCRIPTION_PATTERN } from '../../src/protocol/patterns.js'

const P = (s: string): string[] => {
  const p = parsePattern(s)
  if (p === null) throw new Error(`test pattern ${s} is invalid`)
  return p
}
const T = (s: string): string[] => {
  const e = parseEventType(s)
  if (e === null) throw new Error(`test type ${s} is invalid`)
  return e
}
const m = (pattern: string, type: string): boolean => matches(P(pattern), T(type))

t.test('parseEventType', async (t) => {
  t.same(parseEventType('authentication.login.success'), ['authentication', 'login', 'success'])
  t.same(parseEventType('system'), ['system'])
  t.same(parseEventType('a_b.c-d.0'), ['a_b', 'c-d', '0'])
  const bad: unknown[] = [
    '', '.', 'a.', '.a', 'a..b', 'Authentication.login', 'a.B', 'a b', ' a', 'a ', 'a.b c', 'a\tb', 'a\nb', '*', 'a.*', 'a.*.b', '**', 'a.**',
    'a/b', 'a:b', 'a+b', 'é', 'a.é', '\u0000', 'a'.repeat(MAX_TYPE_LENGTH + 1), Array.from({ length: MAX_SEGMENTS + 1 }, () => 'a').join('.'),
    undefined, null, 42, ['a'], { type: 'a' },
  ]
  for (const b of bad) t.equal(parseEventType(b), null, `refuses ${JSON.stringify(b)?.slice(0, 40)}`)
  t.ok(parseEventType('a'.repeat(MAX_TYPE_LENGTH)), 'exactly MAX_TYPE_LENGTH characters is fine')
  t.same(parseEventType(Array.from({ length: MAX_SEGMENTS }, () => 'a').join('.'))?.length, MAX_SEGMENTS, 'exactly MAX_SEGMENTS segments is fine')
  t.ok(MAX_TYPE_LENGTH >= 64 && MAX_SEGMENTS >= 4, 'limits leave room for realistic types')
})

t.test('parsePattern', async (t) => {
  t.same(parsePattern('*'), ['*'])
  t.same(parsePattern('authentication.*'), ['authentication', '*'])
  t.same(parsePattern('*.login.*'), ['*', 'login', '*'])
  t.same(parsePattern('a.*.c'), ['a', '*', 'c'])
  t.same(parsePattern('*.*'), ['*', '*'])
  t.same(parsePattern('system.shutdown'), ['system', 'shutdown'])
  const bad: unknown[] = [
    '', '.', '*.', '.*', 'a..*', '**', 'a.**', '**.a', '***', 'a*', '*a', 'a.b*', 'a.*b', 'Auth.*', 'A', 'a.*.C', 'a *', ' *', '* ', 'a. *',
    'a.?', 'a.#', 'a.>', 'a.[b]', 'a.(b|c)', 'a.+', '.*.', 'a.*.b\n', 'a'.repeat(MAX_TYPE_LENGTH + 1),
    Array.from({ length: MAX_SEGMENTS + 1 }, () => '*').join('.'), undefined, null, 1, ['*'], {},
  ]
  for (const b of bad) t.equal(parsePattern(b), null, `refuses ${JSON.stringify(b)?.slice(0, 40)}`)
  t.ok(parsePattern(Array.from({ length: MAX_SEGMENTS }, () => '*').join('.')), 'MAX_SEGMENTS stars')
})

t.test('the schemas\' regular expressions accept exactly what the segment walk accepts', async (t) => {
  // The schemas (frames, API, OpenAPI) say the rule as a JSON Schema pattern,
  // compiled with the u flag as Ajv does; matching walks segments. Were they
  // to disagree, a subscription the validator let through would be split into
  // segments the rule does not allow.
  const typeRe = new RegExp(EVENT_TYPE_PATTERN, 'u')
  const patternRe = new RegExp(SUBSCRIPTION_PATTERN, 'u')
  const n = (k: number, seg = 'a'): string => Array.from({ length: k }, () => seg).join('.')
  const fixed = [
    '', '.', 'a', 'a.', '.a', 'a..b', '*', '**', 'a.*', '*.a', 'a.*.b', '*.*', 'a*', 'A', 'a b', 'a\nb', 'a.b\n', '\na', 'é', '😀', 'a.😀',
    'x'.repeat(MAX_TYPE_LENGTH), 'x'.repeat(MAX_TYPE_LENGTH + 1), `${'x'.repeat(MAX_TYPE_LENGTH - 2)}.*`, `${'x'.repeat(MAX_TYPE_LENGTH - 1)}.*`,
    n(MAX_SEGMENTS), n(MAX_SEGMENTS + 1), n(MAX_SEGMENTS, '*'), n(MAX_SEGMENTS + 1, '*'), 'a_b-c.0', 'a.b.c.d.e.f.g.h.i.j.k.l',
  ]
  // Random strings made of segments, mostly well formed, near both limits.
  let seed = 7
  const rnd = (k: number): number => { seed = (seed * 1103515245 + 12345) % 2 ** 31; return seed % k }
  const good = 'az09_-'
  const bad = ['A', ' ', '\u0000', 'é', '😀', '**', '?', '.']
  const segment = (): string => {
    const r = rnd(20)
    if (r === 0) return ''
    if (r < 3) return '*'
    let seg = Array.from({ length: 1 + rnd(r < 5 ? 40 : 8) }, () => good[rnd(good.length)]).join('')
    if (rnd(12) === 0) { const i = rnd(seg.length + 1); seg = seg.slice(0, i) + bad[rnd(bad.length)]! + seg.slice(i) }
    return seg
  }
  const random = Array.from({ length: 5000 }, () => Array.from({ length: 1 + rnd(MAX_SEGMENTS + 2) }, segment).join('.'))
  let disagree = 0
  for (const s of [...fixed, ...random]) {
    if (typeRe.test(s) !== (parseEventType(s) !== null)) { disagree++; t.fail(`event type ${JSON.stringify(s.slice(0, 40))}: regex ${typeRe.test(s)}, walk ${parseEventType(s) !== null}`) }
    if (patternRe.test(s) !== (parsePattern(s) !== null)) { disagree++; t.fail(`pattern ${JSON.stringify(s.slice(0, 40))}: regex ${patternRe.test(s)}, walk ${parsePattern(s) !== null}`) }
  }
  t.equal(disagree, 0, `${fixed.length + random.length} strings, no disagreement`)
  t.ok(random.filter((s) => parsePattern(s) !== null).length > 100, 'the random strings include many valid patterns')
})

t.test('matches: the pattern rules of docs/protocol.md', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    // exact
    ['authentication.login.success', 'authentication.login.success', true],
    ['authentication.login', 'authentication.login.success', false],
    ['authentication.login.success', 'authentication.login', false],
    ['authentication.login.success', 'authentication.login.failure', false],
    // trailing star: one or more segments
    ['authentication.*', 'authentication.login', true],
    ['authentication.*', 'authentication.login.success', true],
    ['authentication.*', 'authentication.a.b.c.d.e', true],
    ['authentication.*', 'authentication', false],
    ['authentication.*', 'authenticationx.login', false],
    ['authentication.*', 'security.login', false],
    ['authentication.*', 'authentic.login', false],
    // * alone matches everything
    ['*', 'system', true],
    ['*', 'authentication.login.success', true],
    ['*', 'a.b.c.d.e.f.g.h.i.j.k.l', true],
    // *.login.*
    ['*.login.*', 'authentication.login.success', true],
    ['*.login.*', 'authentication.login.success.extra', true],
    ['*.login.*', 'authentication.login', false],
    ['*.login.*', 'login.success', false],
    ['*.login.*', 'a.b.login.success', false],
    ['*.login.*', 'authentication.logout.success', false],
    // middle star: exactly one
    ['a.*.c', 'a.b.c', true],
    ['a.*.c', 'a.x.c', true],
    ['a.*.c', 'a.c', false],
    ['a.*.c', 'a.b.b.c', false],
    ['a.*.c', 'a.b.c.d', false],
    ['a.*.c', 'a.b.d', false],
    ['a.*.c', 'b.b.c', false],
    // leading star not last: exactly one
    ['*.login', 'authentication.login', true],
    ['*.login', 'login', false],
    ['*.login', 'a.b.login', false],
    ['*.login', 'authentication.login.success', false],
    // several stars
    ['*.*', 'a', false],
    ['*.*', 'a.b', true],
    ['*.*', 'a.b.c', true],
    ['*.*.c', 'a.b.c', true],
    ['*.*.c', 'a.c', false],
    ['a.*.*', 'a.b', false],
    ['a.*.*', 'a.b.c', true],
    ['a.*.*', 'a.b.c.d', true],
    ['system.*', 'system.maintenance.started', true],
    ['admin.*', 'system.admin', false],
  ]
  for (const [pattern, type, want] of cases) t.equal(m(pattern, type), want, `${pattern} ${want ? 'matches' : 'does not match'} ${type}`)
})

/** Small deterministic PRNG (mulberry32), so a failure reproduces. */
function rng (seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D2B79F5) >>> 0
    let x = a
    x = Math.imul(x ^ (x >>> 15), x | 1)
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61)
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

const ALPHABET = ['a', 'b', 'c', 'login', 'x']

function randomType (r: () => number): string[] {
  const n = 1 + Math.floor(r() * 5)
  return Array.from({ length: n }, () => ALPHABET[Math.floor(r() * ALPHABET.length)]!)
}
function randomPattern (r: () => number): string[] {
  const n = 1 + Math.floor(r() * 4)
  return Array.from({ length: n }, () => r() < 0.35 ? '*' : ALPHABET[Math.floor(r() * ALPHABET.length)]!)
}

/** Reference semantics written independently of the implementation: recursive over segments. */
function reference (p: readonly string[], ty: readonly string[]): boolean {
  if (p.length === 0) return ty.length === 0
  if (ty.length === 0) return false
  if (p.length === 1 && p[0] === '*') return ty.length >= 1
  if (p[0] !== '*' && p[0] !== ty[0]) return false
  return reference(p.slice(1), ty.slice(1))
}

t.test('matches agrees with an independent reference on random inputs', async (t) => {
  const r = rng(12345)
  let disagreements = 0
  let positives = 0
  for (let i = 0; i < 20_000; i++) {
    const p = randomPattern(r)
    const ty = randomType(r)
    const want = reference(p, ty)
    if (want) positives++
    if (matches(p, ty) !== want) {
      disagreements++
      if (disagreements <= 5) t.fail(`matches(${p.join('.')}, ${ty.join('.')}) should be ${want}`)
    }
  }
  t.equal(disagreements, 0, 'no disagreement')
  t.ok(positives > 1000, `the sample exercises matches (${positives} positives)`)
})

t.test('PatternIndex.forEachMatch equals matches() over generated subscriptions', async (t) => {
  const r = rng(987654321)
  let failures = 0
  let nonEmpty = 0
  const ROUNDS = 3000
  for (let round = 0; round < ROUNDS; round++) {
    const index = new PatternIndex<number>()
    const subs = 1 + Math.floor(r() * 6)
    // each subscriber has 1..4 patterns (duplicates allowed; the index keeps a set)
    const owned = new Map<number, Set<string>>()
    for (let s = 0; s < subs; s++) {
      const set = new Set<string>()
      const k = 1 + Math.floor(r() * 4)
      for (let j = 0; j < k; j++) {
        const p = randomPattern(r)
        set.add(p.join('.'))
        index.add(p, s)
      }
      owned.set(s, set)
    }
    // some removals, including patterns a subscriber never had
    for (let s = 0; s < subs; s++) {
      if (r() < 0.3) {
        const set = owned.get(s)!
        const victim = [...set][Math.floor(r() * set.size)]!
        index.remove(victim.split('.'), s)
        set.delete(victim)
      }
      if (r() < 0.2) {
        const stray = randomPattern(r)
        if (!owned.get(s)!.has(stray.join('.'))) index.remove(stray, s)
      }
    }
    for (let q = 0; q < 5; q++) {
      const ty = randomType(r)
      const calls: number[] = []
      index.forEachMatch(ty, (s) => calls.push(s))
      // expected: one call per (subscriber, distinct pattern) that matches
      const expected: number[] = []
      for (const [s, set] of owned) for (const p of set) if (matches(p.split('.'), ty)) expected.push(s)
      calls.sort((a, b) => a - b)
      expected.sort((a, b) => a - b)
      if (expected.length > 0) nonEmpty++
      if (JSON.stringify(calls) !== JSON.stringify(expected)) {
        failures++
        if (failures <= 5) {
          t.fail(`type ${ty.join('.')}: got ${JSON.stringify(calls)}, want ${JSON.stringify(expected)}`, {
            subscriptions: Object.fromEntries([...owned].map(([s, set]) => [s, [...set]])),
          })
        }
      }
    }
  }
  t.equal(failures, 0, `${ROUNDS * 5} queries agree with matches()`)
  t.ok(nonEmpty > ROUNDS, `the sample exercises delivery (${nonEmpty} queries with matches)`)
})

/**
 * Whether the trie is pruned down to a bare root. Read from the index's own
 * root: churn must not leave empty nodes behind, and nothing else shows them.
 */
function emptied (index: PatternIndex<string>): boolean {
  const root = (index as unknown as { root: { children: unknown, star: unknown, ends: unknown, tail: unknown } }).root
  return root.children === null && root.star === null && root.ends === null && root.tail === null
}

t.test('PatternIndex: churn leaves the index empty', async (t) => {
  const index = new PatternIndex<string>()
  t.equal(emptied(index), true, 'starts empty')
  const r = rng(42)
  const live: Array<[string[], string]> = []
  for (let i = 0; i < 5000; i++) {
    if (live.length > 0 && r() < 0.45) {
      const [p, s] = live.splice(Math.floor(r() * live.length), 1)[0]!
      index.remove(p, s)
    } else {
      const p = randomPattern(r)
      const s = `sub-${Math.floor(r() * 50)}`
      index.add(p, s)
      live.push([p, s])
    }
  }
  t.equal(emptied(index), false, 'not empty while subscriptions remain')
  // The same (pattern, sub) may have been added twice; the index holds it once, so
  // remove every distinct pair once and the rest are no-ops.
  for (const [p, s] of live) index.remove(p, s)
  t.equal(emptied(index), true, 'empty after removing everything')
  let calls = 0
  index.forEachMatch(['a', 'b'], () => calls++)
  t.equal(calls, 0, 'nothing delivered from an emptied index')

  // removing what was never there leaves it empty and does not throw
  index.remove(['a', '*'], 'ghost')
  index.remove(['*'], 'ghost')
  index.remove(['a', 'b', 'c'], 'ghost')
  t.equal(emptied(index), true)
})

t.test('PatternIndex: specific cases', async (t) => {
  const index = new PatternIndex<string>()
  const add = (p: string, s: string): void => index.add(P(p), s)
  const got = (type: string): string[] => { const out: string[] = []; index.forEachMatch(T(type), (s) => out.push(s)); return out.sort() }
  add('*', 'all')
  add('authentication.*', 'auth')
  add('*.login.*', 'logins')
  add('a.*.c', 'mid')
  add('authentication.login', 'exact')
  add('authentication.login', 'exact2')
  t.same(got('authentication'), ['all'])
  t.same(got('authentication.login'), ['all', 'auth', 'exact', 'exact2'])
  t.same(got('authentication.login.success'), ['all', 'auth', 'logins'])
  t.same(got('a.b.c'), ['all', 'mid'])
  t.same(got('a.c'), ['all'])
  t.same(got('a.b.b.c'), ['all'])

  // a subscriber with two matching patterns is reported once per pattern
  add('authentication.login.*', 'auth')
  t.same(got('authentication.login.success'), ['all', 'auth', 'auth', 'logins'])
  // removing one pattern keeps the others
  index.remove(P('authentication.*'), 'auth')
  t.same(got('authentication.login.success'), ['all', 'auth', 'logins'])
  t.same(got('authentication.login'), ['all', 'exact', 'exact2'])
  // removing a pattern for the wrong subscriber changes nothing
  index.remove(P('authentication.login'), 'nobody')
  t.same(got('authentication.login'), ['all', 'exact', 'exact2'])
  index.remove(P('authentication.login'), 'exact')
  t.same(got('authentication.login'), ['all', 'exact2'])
  // a `*` middle segment and a literal `*`-free path are distinct
  index.remove(P('a.b.c'), 'mid')
  t.same(got('a.b.c'), ['all', 'mid'], 'a.b.c is not a.*.c')
  for (const [p, s] of [['*', 'all'], ['*.login.*', 'logins'], ['a.*.c', 'mid'], ['authentication.login', 'exact2'], ['authentication.login.*', 'auth']] as const) index.remove(P(p), s)
  t.equal(emptied(index), true)
})
