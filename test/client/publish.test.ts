// The SDK's publish() against a node: the receipt, a group, a retried key,
// and refusals as HeraldError with their codes.
import t from 'tap'
import { HeraldError } from '../../src/client/index.js'
import { startApp } from '../helpers/app.js'
import { sdk } from '../helpers/sdk.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

t.test('publish() resolves with the receipt, reaches the group, lands once per key, rejects refusals with their code', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const agent = sdk(t, { url: `${node.ws}/ws/events`, getToken: () => userToken('sdk-agent', 'sdk-agent-s', { publish: ['agent.*', 'chat.*'], groups: ['ops'] }), eventTypes: ['agent.*'] })
  const peer = sdk(t, { url: `${node.ws}/ws/events`, getToken: () => userToken('sdk-peer', undefined, { groups: ['ops'] }), eventTypes: ['chat.*'] })
  await agent.client.connect()
  await peer.client.connect()

  const own = await agent.client.publish('agent.status', { ok: true })
  t.match(own, { id: String, stream: 'user:sdk-agent', offset: 1 })
  await waitFor('its own event back', () => agent.events.find((e) => e.id === own.id))
  t.same(agent.events.find((e) => e.id === own.id)!.source, { userId: 'sdk-agent', sessionId: 'sdk-agent-s', connectionId: agent.welcomes[0]!.connectionId })

  const toGroup = await agent.client.publish('chat.message', { text: 'hi' }, { group: 'ops', key: 'm-1' })
  t.equal(toGroup.stream, 'group:ops')
  const e = await waitFor('the group event at the peer', () => peer.events.find((x) => x.id === toGroup.id))
  t.equal(e!.group, 'ops')
  const again = await agent.client.publish('chat.message', { text: 'hi' }, { group: 'ops', key: 'm-1' })
  t.same(again, { ...toGroup, duplicate: true }, 'the same key: the first receipt')

  const refused = await agent.client.publish('security.alert').then(() => null, (err: unknown) => err)
  t.ok(refused instanceof HeraldError)
  t.equal((refused as HeraldError).code, 'RESERVED_TYPE')
  const outsider = await agent.client.publish('chat.message', {}, { group: 'elsewhere' }).then(() => null, (err: HeraldError) => err.code)
  t.equal(outsider, 'NOT_A_MEMBER')
})
