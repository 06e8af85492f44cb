// The event's JSON is written once, with its data as validateEvent() serialised
// it (src/events/publisher.ts openEventJson): it must be the very text
// JSON.stringify gives the event, whichever optional fields it has.
import t from 'tap'
import { openEventJson, receipt, receiptJson } from '../../src/events/publisher.js'
import { validateEvent } from '../../src/events/validate.js'
import type { HeraldEvent } from '../../src/events/model.js'

const events: HeraldEvent[] = [
  { id: '01J0000000000000000000000A', type: 'a.b', timestamp: '2026-01-01T00:00:00.000Z', data: {} },
  { id: '01J0000000000000000000000B', type: 'authentication.login.success', timestamp: '2026-01-01T00:00:00.001Z', data: { ip: '203.0.113.7', nested: { list: [1, 'two', null, { three: true }] }, quote: 'he said "hi"\n\u2028', emoji: '✓😀' }, userId: 'user-1', sessionId: 'sess-1' },
  { id: '01J0000000000000000000000C', type: 'chat.message', timestamp: '2026-01-01T00:00:00.002Z', data: { text: 'x' }, group: 'room-1' },
  { id: '01J0000000000000000000000D', type: 'chat.message', timestamp: '2026-01-01T00:00:00.003Z', data: { text: 'y' }, userId: 'u', source: { userId: 'u', sessionId: 's', connectionId: 'c' } },
  { id: '01J0000000000000000000000E', type: 'chat.message', timestamp: '2026-01-01T00:00:00.004Z', data: { a: undefined, b: 1 } as Record<string, unknown>, userId: 'u', source: { userId: 'u', connectionId: 'c' } as HeraldEvent['source'] },
]

t.test('openEventJson + "}" is JSON.stringify(event), with the stream appended as the spread did', async (t) => {
  for (const e of events) {
    const { dataJson } = validateEvent({ type: e.type, data: e.data, ...(e.userId !== undefined ? { userId: e.userId } : {}), ...(e.group !== undefined ? { group: e.group } : {}) })
    t.equal(`${openEventJson(e, dataJson)}}`, JSON.stringify(e), e.id)
    t.equal(`${openEventJson(e, dataJson)},"stream":"user:u"}`, JSON.stringify({ ...e, stream: 'user:u' }), `${e.id} with its stream`)
  }
})

t.test('an event without data carries {}', async (t) => {
  t.equal(validateEvent({ type: 'a.b', userId: 'u' }).dataJson, '{}')
})

t.test('receiptJson is JSON.stringify(receipt(…))', async (t) => {
  for (const m of [{ id: 'a' }, { id: 'a', stream: 'user:u' }, { id: 'a', stream: 'group:g"x', offset: 12, epoch: 'AbC-_12x' }]) {
    t.equal(receiptJson(m), JSON.stringify(receipt(m)), JSON.stringify(m))
  }
})
