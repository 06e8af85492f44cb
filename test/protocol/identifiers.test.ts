// Ids with an unpaired surrogate ("\ud800" alone) are refused wherever an id
// comes in: UTF-8 cannot carry one, so on its way to Redis it became U+FFFD
// and "\ud800" named the channel, stream and keys of the user "\ufffd": an
// event published to one reached the other live and in its history, and the
// addressee got nothing. A pair (an emoji) is one character and stays an id.
import t from 'tap'
import { isId } from '../../src/protocol/identifiers.js'
import { connect, refusal } from '../helpers/client.js'
import { startNode } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'
import { userToken } from '../helpers/tokens.js'

t.test('the rule', async (t) => {
  for (const ok of ['alice', '😀', 'bob😀', '\ufffd', 'é'.repeat(256), '😀'.repeat(256)]) t.ok(isId(ok), `${JSON.stringify(ok)} is an id`)
  for (const bad of ['\ud800', 'bob\udc00', '\udfff😀', '😀\ud83d', 'a\ud83d\ud83d', '', 'a\tb', '😀'.repeat(257)]) t.notOk(isId(bad), `${JSON.stringify(bad)} is not`)
})

t.test('over Redis: an unpaired surrogate is refused at every edge, and no user gets another\'s events', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startNode({ REDIS_URL: redis.url })
  t.teardown(() => node.stop())

  // The user the surrogate used to alias, subscribed to everything it may see.
  const replacement = await connect(`${node.ws}/ws/events`, { token: userToken('\ufffd', 'r-1') })
  t.teardown(() => replacement.close())
  await replacement.subscribe(['*'])

  const single = await node.api('/api/events', { body: { type: 'secret.for.victim', userId: '\ud800', data: { n: 1 } } })
  t.equal(single.status, 400, 'POST /api/events with userId "\\ud800": 400')
  t.equal(single.body?.error?.code, 'VALIDATION')
  t.match(single.body?.error?.message, /unpaired surrogates/, `the refusal says why: ${single.body?.error?.message}`)

  const batch = await node.api('/api/events/batch', { body: { events: [{ type: 'secret.for.victim', userId: 'bob\udc00' }, { type: 'app.marker', userId: '\ufffd' }] } })
  t.equal(batch.status, 200, 'a batch is answered per event')
  t.equal(batch.body.failed, 1)
  t.equal(batch.body.results[0].error?.code, 'VALIDATION', 'the surrogate\'s event is refused in its place')
  t.ok(batch.body.results[1].offset !== undefined, 'the other is published')

  // The marker came after both refusals: had either gone out, it would be first.
  const first = await replacement.nextOfType('event')
  t.equal(first.payload.type, 'app.marker', 'the user "\\ufffd" got its own event first, nothing meant for another')
  const history = await node.api(`/api/streams/${encodeURIComponent('user:\ufffd')}/events`)
  t.same(history.body.events.map((e: { type: string }) => e.type), ['app.marker'], 'its history holds only its own event')

  for (const [what, tok] of [['sub "bob\\udc00"', userToken('bob\udc00', 'b-1')], ['sid "\\udfff"', userToken('bob', '\udfff')]] as const) {
    const r = await refusal(`${node.ws}/ws/events?token=${encodeURIComponent(tok)}`)
    t.equal(r.status, 401, `a token with ${what}: refused 401`)
    t.equal(r.body?.error?.code, 'TOKEN_INVALID')
  }
  const revoke = await node.api(`/api/users/${encodeURIComponent('x')}/revoke`, { method: 'POST' })
  t.equal(revoke.status, 200, 'a well-formed id in a path still works')

  // A character outside the BMP (a surrogate pair) is an id like any other.
  const emoji = await connect(`${node.ws}/ws/events`, { token: userToken('😀-user', 'e-1') })
  t.teardown(() => emoji.close())
  await emoji.subscribe(['*'])
  t.equal((await node.api('/api/events', { body: { type: 'app.hello', userId: '😀-user' } })).status, 202)
  t.equal((await emoji.nextOfType('event')).payload.userId, '😀-user', 'the emoji user gets its event')
  t.equal(replacement.frames.filter((f) => f.type === 'event').length, 1, 'and the user "\\ufffd" nothing more')
})
