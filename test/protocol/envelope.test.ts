import t from 'tap'
import { Errors } from '../../src/errors.js'
import { parseClientFrame, serverFrame, type ParseResult } from '../../src/protocol/envelope.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

function failsWith (t: Test, text: string, code: string, id?: string): void {
  let r: ParseResult
  try {
    r = parseClientFrame(text)
  } catch (err) {
    t.fail(`parseClientFrame threw on ${JSON.stringify(text.slice(0, 40))}: ${String(err)}`)
    return
  }
  const label = JSON.stringify(text.slice(0, 60))
  t.equal(r.ok, false, `${label} is refused`)
  if (r.ok) return
  t.equal(r.code, code, `${label}: ${code}`)
  t.type(r.message, 'string')
  t.ok(r.message.length > 0, 'with a message')
  t.ok(code in Errors, 'a registered error code')
  t.equal(r.id, id, id === undefined ? `${label}: no id echoed` : `${label}: id ${id} echoed`)
}

t.test('valid frames', async (t) => {
  t.same(parseClientFrame('{"type":"ping"}'), { ok: true, msg: { type: 'ping' } })
  t.same(parseClientFrame('{"type":"ping","id":"1"}'), { ok: true, msg: { type: 'ping', id: '1' } })
  t.same(parseClientFrame('{"type":"subscribe","id":"abc","payload":{"eventTypes":["a.*"]}}'),
    { ok: true, msg: { type: 'subscribe', id: 'abc', payload: { eventTypes: ['a.*'] } } })
  t.same(parseClientFrame('  {"type":"ping"}\n'), { ok: true, msg: { type: 'ping' } }, 'JSON whitespace')
  t.same(parseClientFrame('{"type":"x","payload":{}}'), { ok: true, msg: { type: 'x', payload: {} } })
  t.same(parseClientFrame(JSON.stringify({ type: 'x', id: 'i'.repeat(128) })), { ok: true, msg: { type: 'x', id: 'i'.repeat(128) } }, 'id of 128 characters')
  t.same(parseClientFrame(JSON.stringify({ type: 't'.repeat(64) })), { ok: true, msg: { type: 't'.repeat(64) } }, 'type of 64 characters')
  t.same(parseClientFrame('{"type":"ping","id":""}'), { ok: true, msg: { type: 'ping', id: '' } }, 'an empty id is a string id')
  // unknown envelope fields are dropped, not passed on
  const r = parseClientFrame('{"type":"ping","extra":1,"userId":"someone-else"}')
  t.same(r, { ok: true, msg: { type: 'ping' } })
  // an unknown type is the endpoint's business, not the parser's
  t.same(parseClientFrame('{"type":"no_such_type"}'), { ok: true, msg: { type: 'no_such_type' } })
})

t.test('bad JSON', async (t) => {
  for (const text of ['', ' ', '{', '}', '{"type":', "{'type':'ping'}", '{"type":"ping",}', 'ping', 'undefined', 'NaN', '{"type":"ping"}{"type":"ping"}', '\u0000', '{"type":"ping"', '[1,', '\uFEFF{"type":"ping"}']) {
    failsWith(t, text, 'BAD_JSON')
  }
})

t.test('not an object', async (t) => {
  for (const text of ['null', '[]', '[{"type":"ping"}]', '1', '0', '-1.5', '"ping"', 'true', 'false', '""']) {
    failsWith(t, text, 'BAD_MESSAGE')
  }
})

t.test('type', async (t) => {
  failsWith(t, '{}', 'BAD_MESSAGE')
  failsWith(t, '{"id":"7"}', 'BAD_MESSAGE', '7')
  failsWith(t, '{"type":"","id":"7"}', 'BAD_MESSAGE', '7')
  for (const type of ['1', 'null', 'true', '[]', '["ping"]', '{}', '{"t":"ping"}']) failsWith(t, `{"type":${type},"id":"x"}`, 'BAD_MESSAGE', 'x')
  failsWith(t, JSON.stringify({ type: 't'.repeat(65), id: 'long' }), 'BAD_MESSAGE', 'long')
  failsWith(t, JSON.stringify({ type: 't'.repeat(100_000) }), 'BAD_MESSAGE')
})

t.test('id', async (t) => {
  for (const id of ['1', '0', 'null', 'true', '{}', '["a"]', '{"a":1}']) failsWith(t, `{"type":"ping","id":${id}}`, 'BAD_MESSAGE')
  failsWith(t, JSON.stringify({ type: 'ping', id: 'i'.repeat(129) }), 'BAD_MESSAGE')
  const r = parseClientFrame(JSON.stringify({ type: 'ping', id: 'i'.repeat(10_000) }))
  t.equal(r.ok, false)
  if (!r.ok) {
    t.equal(r.id, undefined, 'an oversized id is never echoed')
    t.ok(r.message.length < 200, 'nor copied into the message')
  }
  // a bad id wins over a bad type: nothing attacker-sized is echoed
  failsWith(t, JSON.stringify({ id: 'i'.repeat(200) }), 'BAD_MESSAGE')
})

t.test('payload', async (t) => {
  for (const payload of ['1', '"x"', 'true', 'null', '[]', '[{"eventTypes":[]}]', '0']) {
    failsWith(t, `{"type":"subscribe","id":"q1","payload":${payload}}`, 'INVALID_PAYLOAD', 'q1')
  }
  failsWith(t, '{"type":"subscribe","payload":[]}', 'INVALID_PAYLOAD')
})

t.test('__proto__ and constructor keys do not pollute', async (t) => {
  const before = Object.getOwnPropertyNames(Object.prototype).sort()
  const texts = [
    '{"type":"subscribe","payload":{"__proto__":{"polluted":"yes"},"eventTypes":["a"]}}',
    '{"__proto__":{"polluted":"yes"},"type":"ping"}',
    '{"type":"ping","payload":{"constructor":{"prototype":{"polluted":"yes"}}}}',
    '{"type":"x","payload":{"a":{"__proto__":{"polluted":"yes"}}}}',
  ]
  for (const text of texts) {
    const r = parseClientFrame(text)
    t.equal(r.ok, true, `${text} parses`)
    if (r.ok && r.msg.payload !== undefined) {
      // the parsed payload is a plain object with the prototype it should have
      t.equal(Object.getPrototypeOf(r.msg.payload), Object.prototype)
      const copy = { ...r.msg.payload }
      t.equal((copy as Record<string, unknown>).polluted, undefined)
    }
  }
  const r = parseClientFrame(texts[1]!)
  t.same(r, { ok: true, msg: { type: 'ping' } }, 'an envelope-level __proto__ is dropped')
  const p = parseClientFrame(texts[0]!)
  t.ok(p.ok && Array.isArray(p.msg.payload!.eventTypes), 'other payload keys survive')
  t.equal(({} as Record<string, unknown>).polluted, undefined, 'Object.prototype not polluted')
  t.equal((Object.prototype as Record<string, unknown>).polluted, undefined)
  t.same(Object.getOwnPropertyNames(Object.prototype).sort(), before, 'Object.prototype unchanged')
  // a type named like a prototype member is just a string
  t.same(parseClientFrame('{"type":"__proto__"}'), { ok: true, msg: { type: '__proto__' } })
  t.same(parseClientFrame('{"type":"constructor"}'), { ok: true, msg: { type: 'constructor' } })
  failsWith(t, '{"type":"ping","payload":"__proto__"}', 'INVALID_PAYLOAD')
})

t.test('deep nesting does not throw out of the parser', async (t) => {
  const depth = 100_000
  const deepPayload = `{"type":"x","id":"deep","payload":${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}}`
  const deepArray = `{"type":"x","payload":{"a":${'['.repeat(depth)}${']'.repeat(depth)}}}`
  const deepEnvelope = `${'['.repeat(depth)}${']'.repeat(depth)}`
  const unbalanced = `{"type":"x","payload":${'{"a":'.repeat(depth)}`
  for (const [name, text] of [['deep payload object', deepPayload], ['deep payload array', deepArray], ['deep top-level array', deepEnvelope], ['unbalanced', unbalanced]] as const) {
    let r: ParseResult | undefined
    t.doesNotThrow(() => { r = parseClientFrame(text) }, `${name}: no exception`)
    t.ok(r !== undefined && typeof r.ok === 'boolean', `${name}: a result`)
    if (r !== undefined && !r.ok) t.ok(['BAD_JSON', 'BAD_MESSAGE', 'INVALID_PAYLOAD'].includes(r.code), `${name}: refused as ${r.code}`)
  }
  const top = parseClientFrame(deepEnvelope)
  t.equal(top.ok, false, 'a deep array is not an envelope')
  t.equal(parseClientFrame(unbalanced).ok, false, 'unbalanced JSON is refused')
  // the parser still works afterwards
  t.same(parseClientFrame('{"type":"ping"}'), { ok: true, msg: { type: 'ping' } })
})

t.test('serverFrame, for replies and for errors', async (t) => {
  // An error reply is serverFrame('error', {code, message}, id), as Connection.fail sends it.
  const errorFrame = (code: string, message: string, id?: string): string => serverFrame('error', { code, message }, id)
  t.same(JSON.parse(serverFrame('pong', { timestamp: '2024-01-01T00:00:00.000Z' }, 'r1')), { type: 'pong', id: 'r1', payload: { timestamp: '2024-01-01T00:00:00.000Z' } })
  t.same(JSON.parse(serverFrame('auth_expiring')), { type: 'auth_expiring' }, 'no id, no payload: neither key present')
  t.notMatch(serverFrame('auth_expiring'), /"id"|"payload"/)
  t.same(JSON.parse(serverFrame('welcome', { a: 1 })), { type: 'welcome', payload: { a: 1 } })
  t.notMatch(serverFrame('welcome', { a: 1 }), /"id"/)
  t.same(JSON.parse(serverFrame('x', undefined, 'only-id')), { type: 'x', id: 'only-id' })
  t.same(JSON.parse(serverFrame('x', null, 'n')), { type: 'x', id: 'n', payload: null })
  t.match(serverFrame('subscribed', { eventTypes: ['a'] }, 'q'), /^\{"type":"subscribed","id":"q","payload":/, 'type first, then id, then payload')

  t.same(JSON.parse(errorFrame('BAD_JSON', Errors.BAD_JSON.message)), { type: 'error', payload: { code: 'BAD_JSON', message: Errors.BAD_JSON.message } })
  t.same(JSON.parse(errorFrame('INVALID_PAYLOAD', 'payload must be an object', 'q1')), { type: 'error', id: 'q1', payload: { code: 'INVALID_PAYLOAD', message: 'payload must be an object' } })
  // strings are JSON-escaped, never spliced
  const tricky = 'a"b\\c\n</script>'
  t.same(JSON.parse(errorFrame('BAD_MESSAGE', tricky, tricky)), { type: 'error', id: tricky, payload: { code: 'BAD_MESSAGE', message: tricky } })

  // round trip: what parseClientFrame refuses becomes a well-formed error frame
  const r = parseClientFrame('{"type":"subscribe","id":"q9","payload":[]}')
  t.equal(r.ok, false)
  if (!r.ok) t.same(JSON.parse(errorFrame(r.code, r.message, r.id)), { type: 'error', id: 'q9', payload: { code: 'INVALID_PAYLOAD', message: r.message } })
})
