// Client publish and groups across three node processes on one private Redis,
// over both transports (ws and Socket.IO): the stamped source reaching the
// publisher's other connection, an admin and a webhook; forged identities,
// reserved types and missing claims refused; schema and size limits;
// idempotent retries; group isolation; membership changes on connected
// users; a visitor and a staff member conversing through two nodes.
import t from 'tap'
import { startCluster } from '../helpers/cluster.js'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import { startReceiver } from '../helpers/receiver.js'
import { sioConnect, type SioClient } from '../helpers/sio.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

const SCHEMAS = { 'agent.heartbeat': { type: 'object', required: ['status'], properties: { status: { enum: ['ok', 'degraded'] } } } }

const isEvent = (type: string, pred: (p: any) => boolean = () => true) => (f: Frame): boolean => f.type === 'event' && f.payload.type === type && pred(f.payload)

t.test('client publish and groups on three nodes', { timeout: 180_000 }, async (t) => {
  const rx = await startReceiver(t)
  t.teardown(() => rx.close())
  const { nodes } = await startCluster(t, {
    WEBHOOK_ALLOW_PRIVATE: '127.0.0.0/8',
    WEBHOOK_ALLOW_HTTP: 'true',
    MAX_MESSAGE_BYTES: '2048',
    MAX_PUBLISH_BYTES: '8192',
    PUBLISH_SCHEMAS: JSON.stringify(SCHEMAS),
  })
  const [n0, n1, n2] = nodes as [typeof nodes[0], typeof nodes[0], typeof nodes[0]]
  const hook = await n0.api('/api/webhooks', { body: { url: rx.url, eventTypes: ['agent.*', 'chat.*'] } })
  t.equal(hook.status, 201)
  const clients: Array<TestClient | SioClient> = []
  t.teardown(async () => { for (const c of clients) await c.close() })
  const ws = async (node: typeof n0, token: string): Promise<TestClient> => { const c = await connect(`${node.ws}/ws/events`, { token }); clients.push(c); return c }
  const io = async (node: typeof n0, token: string): Promise<SioClient> => { const { client } = await sioConnect(node.http, { auth: { token }, transports: ['websocket'] }); clients.push(client); return client }

  const agentToken = userToken('agent-7', 'agent-7-s', { publish: ['agent.*'] })

  t.test('a publish reaches the publisher\'s other connection, an admin and a webhook, with the stamped source; both transports', async (t) => {
    const a = await ws(n0, agentToken)
    const b = await io(n1, agentToken)
    await b.subscribe(['agent.*'])
    await a.subscribe(['agent.*'])
    const admin = await connect(`${n2.ws}/ws/admin`, { token: adminToken() })
    clients.push(admin)
    await admin.subscribe(['agent.*'])
    const aId = a.frames[0]!.payload.connectionId as string

    const r = await a.request('publish', { type: 'agent.status', data: { cpu: 3, agentId: 'agent-7' } })
    t.equal(r.type, 'published', JSON.stringify(r))
    t.match(r.payload, { id: String, stream: 'user:agent-7', offset: Number, epoch: String })
    const source = { userId: 'agent-7', sessionId: 'agent-7-s', connectionId: aId }
    const onB = await b.next((x) => x.event === 'event' && x.payload.id === r.payload.id, 5000)
    t.same(onB.payload.source, source, 'the other connection (Socket.IO, another node) sees who published it')
    t.equal(onB.payload.userId, 'agent-7')
    const onAdmin = await admin.next(isEvent('agent.status', (p) => p.id === r.payload.id))
    t.same(onAdmin.payload.source, source, 'an admin on a third node too')
    const [hooked] = await rx.count(1, (x) => x.body.includes(r.payload.id))
    t.same(JSON.parse(hooked!.body).source, source, 'and the webhook')

    const r2 = await b.request('publish', { type: 'agent.heartbeat', data: { status: 'ok' } })
    t.equal(r2.type, 'published', 'Socket.IO publishes too, answered on the acknowledgement')
    const onA = await a.next(isEvent('agent.heartbeat', (p) => p.id === r2.payload.id))
    t.equal(onA.payload.source.userId, 'agent-7')
    t.not(onA.payload.source.connectionId, aId, 'stamped with the Socket.IO connection')
  })

  t.test('forged identity, reserved types, a missing or narrower claim, a schema: refused with their codes', async (t) => {
    const a = await ws(n1, agentToken)
    const refusedWith = async (payload: unknown, code: string, what: string): Promise<void> => {
      const r = await a.request('publish', payload)
      t.same([r.type, r.payload.code], ['error', code], what)
    }
    await refusedWith({ type: 'agent.status', agentId: 'agent-8', data: {} }, 'IDENTITY_MISMATCH', 'another agent\'s id at the top level')
    await refusedWith({ type: 'agent.status', userId: 'agent-8' }, 'IDENTITY_MISMATCH', 'another user id at the top level')
    await refusedWith({ type: 'agent.status', data: { agentId: 'agent-8' } }, 'IDENTITY_MISMATCH', 'another agent\'s id in data')
    await refusedWith({ type: 'agent.status', data: { sessionId: 'not-mine' } }, 'IDENTITY_MISMATCH', 'another session in data')
    await refusedWith({ type: 'other.thing' }, 'PUBLISH_FORBIDDEN', 'a type outside the claim')
    await refusedWith({ type: 'agent.heartbeat', data: { status: 'on fire' } }, 'SCHEMA_MISMATCH', 'data against the type\'s schema')
    await refusedWith({ type: 'agent.heartbeat', data: {} }, 'SCHEMA_MISMATCH', 'a required field missing')
    await refusedWith({ type: 'agent.status', source: { userId: 'x' } }, 'INVALID_PAYLOAD', 'a client cannot send a source')

    const star = await io(n2, userToken('anything-goes', undefined, { publish: ['*'] }))
    for (const type of ['authentication.login.success', 'security.alert', 'session.revoked', 'admin.user.disconnected', 'system.maintenance']) {
      const r = await star.request('publish', { type })
      t.same([r.type, r.payload.code], ['error', 'RESERVED_TYPE'], `${type} refused with publish: ["*"]`)
    }
    t.equal((await star.request('publish', { type: 'custom.event' })).type, 'published', 'the same claim publishes an ordinary type')

    const none = await ws(n0, userToken('no-claim'))
    const r = await none.request('publish', { type: 'agent.status' })
    t.same([r.type, r.payload.code], ['error', 'PUBLISH_FORBIDDEN'], 'no publish claim, no publish')
    const sioNone = await io(n0, userToken('no-claim-2'))
    t.equal((await sioNone.request('publish', { type: 'agent.status' })).payload.code, 'PUBLISH_FORBIDDEN', 'on Socket.IO too')
    const bad = await a.request('publish', { type: 'Not A Type' })
    t.equal(bad.payload.code, 'INVALID_PAYLOAD', 'a malformed type')
  })

  t.test('size: a publish up to MAX_PUBLISH_BYTES, other frames up to MAX_MESSAGE_BYTES', async (t) => {
    const a = await ws(n2, agentToken)
    const batch = { type: 'agent.logs', data: { lines: Array.from({ length: 60 }, (_, i) => `line ${i} ${'x'.repeat(80)}`) } }
    t.ok(JSON.stringify({ type: 'publish', id: 'r', payload: batch }).length > 2048)
    t.equal((await a.request('publish', batch)).type, 'published', 'a log batch over MAX_MESSAGE_BYTES is a publish the node takes')
    const big = await ws(n2, agentToken)
    big.send({ type: 'subscribe', payload: { eventTypes: ['a'], pad: 'x'.repeat(3000) } })
    t.equal((await big.closed).code, 1009, 'any other frame over MAX_MESSAGE_BYTES closes 1009 as before')
    const huge = await ws(n2, agentToken)
    huge.send({ type: 'publish', payload: { type: 'agent.logs', data: { pad: 'x'.repeat(9000) } } })
    t.equal((await huge.closed).code, 1009, 'a publish over MAX_PUBLISH_BYTES closes 1009')
    const s = await io(n2, agentToken)
    t.equal((await s.request('publish', batch)).type, 'published', 'Socket.IO: the same batch')
    const sBig = await io(n2, agentToken)
    sBig.socket.emit('subscribe', { eventTypes: ['a'], pad: 'x'.repeat(3000) })
    t.same(await sBig.nextOf('close'), { code: 1009, reason: 'message too big' }, 'Socket.IO: another event over MAX_MESSAGE_BYTES is closed 1009')
    const health = await n2.api('/ws/health', { key: '' })
    t.equal(health.status, 200, 'the node carries on')
  })

  t.test('a retried publish with the same key lands once, whichever node the retry reaches', async (t) => {
    const watcher = await ws(n0, agentToken)
    await watcher.subscribe(['agent.*'])
    const first = await ws(n1, agentToken)
    const second = await io(n2, agentToken)
    const r1 = await first.request('publish', { type: 'agent.batch', key: 'batch-0001', data: { n: 1 } })
    t.equal(r1.type, 'published')
    const r2 = await second.request('publish', { type: 'agent.batch', key: 'batch-0001', data: { n: 1 } })
    t.same(r2, { type: 'published', payload: { ...r1.payload, duplicate: true } }, 'the retry gets the first receipt')
    const r3 = await first.request('publish', { type: 'agent.batch', key: 'batch-0002', data: { n: 2 } })
    await watcher.next(isEvent('agent.batch', (p) => p.id === r3.payload.id))
    t.equal(watcher.count(isEvent('agent.batch', (p) => p.data.n === 1)), 1, 'delivered once (shown once a later publish arrived)')
    // Webhook jobs are delivered concurrently, in no set order: the first
    // publish's delivery is awaited itself, then the later one's, by which
    // time a duplicate, queued with the first, would have come too.
    await rx.count(1, (x) => x.body.includes(r1.payload.id))
    const hooked = await rx.count(1, (x) => x.body.includes(r3.payload.id))
    t.ok(hooked.length === 1)
    t.equal(rx.received.filter((x) => x.body.includes(r1.payload.id)).length, 1, 'one webhook delivery')
  })

  t.test('groups: members subscribed to the type receive, no one else; membership through the API reaches connected users on every node', async (t) => {
    const alice = await ws(n0, userToken('alice', undefined, { groups: ['room-1'] }))
    const bob = await io(n1, userToken('bob', undefined, { publish: ['chat.*'] }))
    const carol = await ws(n2, userToken('carol', undefined, { publish: ['chat.*'] }))
    const admin = await connect(`${n1.ws}/ws/admin`, { token: adminToken('admin-groups') })
    clients.push(admin)
    await admin.subscribe(['chat.*'])
    t.equal((await n0.api('/api/groups/room-1/members/bob', { method: 'PUT' })).body.changed, true)
    // bob connected before the PUT: the change reaches his open connection.
    await alice.subscribe(['chat.*'])
    await bob.subscribe(['chat.*'])
    await carol.subscribe(['chat.*'])

    // Within a second of the PUT (bob's node may still be subscribing): a group event bob receives.
    const until = Date.now() + 1000
    let reached = false
    while (!reached && Date.now() < until + 1000) {
      const e = await n2.api('/api/events', { body: { type: 'chat.message', group: 'room-1', data: { text: 'hello room' } } })
      t.equal(e.status, 202)
      reached = await bob.next((x) => x.event === 'event' && x.payload.id === e.body.id, 200).then(() => true, () => false)
    }
    t.ok(reached && Date.now() < until + 200, 'the API membership held on bob\'s node within a second')
    const svc = await n2.api('/api/events', { body: { type: 'chat.message', group: 'room-1', data: { text: 'to the room' } } })
    t.equal(svc.body.stream, 'group:room-1', 'a group event is on the group\'s stream')
    const got = await alice.next(isEvent('chat.message', (p) => p.id === svc.body.id))
    t.equal(got.payload.group, 'room-1', 'alice (member by her token) receives it, with its group')
    await bob.next((x) => x.event === 'event' && x.payload.id === svc.body.id)

    const fromBob = await bob.request('publish', { type: 'chat.message', group: 'room-1', data: { text: 'hi from bob' } })
    t.equal(fromBob.type, 'published')
    t.equal(fromBob.payload.stream, 'group:room-1')
    const atAlice = await alice.next(isEvent('chat.message', (p) => p.id === fromBob.payload.id))
    t.equal(atAlice.payload.source.userId, 'bob', 'a member\'s publish reaches the group with its source')
    const atAdmin = await admin.next(isEvent('chat.message', (p) => p.id === fromBob.payload.id))
    t.same([atAdmin.payload.group, atAdmin.payload.stream], ['room-1', 'group:room-1'], 'and a subscribed admin, with its group and stream')

    const intrude = await carol.request('publish', { type: 'chat.message', group: 'room-1', data: { text: 'let me in' } })
    t.same([intrude.type, intrude.payload.code], ['error', 'NOT_A_MEMBER'], 'a non-member cannot publish into the group')
    const later = await n0.api('/api/events', { body: { type: 'chat.message', userId: 'carol', data: { text: 'just for carol' } } })
    await carol.next(isEvent('chat.message', (p) => p.id === later.body.id))
    t.equal(carol.count((f) => f.type === 'event' && f.payload.group === 'room-1'), 0, 'carol never received the group\'s events (shown by a later event she does receive)')

    const page = await n1.api('/api/streams/group:room-1/events')
    t.equal(page.status, 200)
    t.same(page.body.events.map((e: any) => e.id).slice(-2), [svc.body.id, fromBob.payload.id], 'the group stream is read back like any other')
    const members = await n1.api('/api/groups/room-1/members')
    t.same(members.body, { group: 'room-1', members: ['bob'], total: 1 }, 'members through the API')

    // Leaving while connected: after the DELETE, group events stop reaching bob within a second.
    t.equal((await n2.api('/api/groups/room-1/members/bob', { method: 'DELETE' })).body.changed, true)
    const left = Date.now()
    let stopped = false
    while (!stopped && Date.now() - left < 2000) {
      const g = await n0.api('/api/events', { body: { type: 'chat.message', group: 'room-1', data: { probe: true } } })
      const m = await n0.api('/api/events', { body: { type: 'chat.message', userId: 'bob', data: { marker: g.body.id } } })
      await bob.next((x) => x.event === 'event' && x.payload.id === m.body.id)
      stopped = bob.count((x) => x.event === 'event' && x.payload.id === g.body.id) === 0
    }
    t.ok(stopped && Date.now() - left < 1000, 'bob\'s connection stopped receiving the group within a second of the DELETE')
    const after = await bob.request('publish', { type: 'chat.message', group: 'room-1', data: {} })
    t.equal(after.payload.code, 'NOT_A_MEMBER', 'nor may he publish into it')
  })

  t.test('an anonymous visitor and a staff member converse through two nodes; the webhook sees the conversation', async (t) => {
    const minted = await n0.api('/api/visitors', { body: { group: 'conv-42', publish: ['chat.message', 'chat.typing'], ttlSeconds: 600 } })
    t.equal(minted.status, 201, JSON.stringify(minted.body))
    t.match(minted.body, { userId: /^visitor-/, group: 'conv-42', publish: ['chat.message', 'chat.typing'] })
    await n0.api('/api/groups/conv-42/members/staff-1', { method: 'PUT' })
    const visitor = await io(n1, minted.body.token)
    const staff = await ws(n2, userToken('staff-1', undefined, { publish: ['chat.*'] }))
    await visitor.subscribe(['chat.*'])
    await staff.subscribe(['chat.*'])
    const hi = await visitor.request('publish', { type: 'chat.message', group: 'conv-42', data: { text: 'Hello, I need help' } })
    t.equal(hi.type, 'published')
    const atStaff = await staff.next(isEvent('chat.message', (p) => p.id === hi.payload.id))
    t.same(atStaff.payload.source.userId, minted.body.userId, 'staff sees the visitor\'s fresh identity')
    const reply = await staff.request('publish', { type: 'chat.message', group: 'conv-42', data: { text: 'How can I help?' } })
    const atVisitor = await visitor.next((x) => x.event === 'event' && x.payload.id === reply.payload.id)
    t.equal(atVisitor.payload.data.text, 'How can I help?', 'the visitor gets the reply on another node')
    await rx.count(2, (x) => x.body.includes(hi.payload.id) || x.body.includes(reply.payload.id))
    t.pass('both messages went to the automation webhook')

    t.equal((await visitor.request('publish', { type: 'chat.message', group: 'conv-43', data: {} })).payload.code, 'NOT_A_MEMBER', 'the visitor is a member of its conversation only')
    t.equal((await visitor.request('publish', { type: 'chat.transfer', group: 'conv-42', data: {} })).payload.code, 'PUBLISH_FORBIDDEN', 'and publishes its message types only')
    const other = await n0.api('/api/events', { body: { type: 'chat.message', group: 'conv-43', data: {} } })
    const mine = await n0.api('/api/events', { body: { type: 'chat.message', group: 'conv-42', data: {} } })
    await visitor.next((x) => x.event === 'event' && x.payload.id === mine.body.id)
    t.equal(visitor.count((x) => x.event === 'event' && x.payload.id === other.body.id), 0, 'another conversation never reaches it')
  })
})

t.test('rate limits span nodes for publishes; a visitor\'s duplicate sockets follow USER_CONNECTION_POLICY', { timeout: 90_000 }, async (t) => {
  const { nodes } = await startCluster(t, { MAX_MESSAGES_PER_MINUTE: '6', MAX_CONNECTIONS_PER_USER: '1', USER_CONNECTION_POLICY: 'evict-oldest' }, 2)
  const [n0, n1] = nodes as [typeof nodes[0], typeof nodes[0]]
  const token = userToken('agent-r', undefined, { publish: ['agent.*'] })
  const a = await connect(`${n0.ws}/ws/events`, { token })
  t.teardown(() => a.close())
  const codes: string[] = []
  for (let i = 0; i < 6; i++) codes.push((await a.request('publish', { type: 'agent.tick', data: { i } })).type)
  t.same(codes, Array(6).fill('published'), 'six publishes within the budget')
  await a.close()
  // The same user on the other node: one budget for the cluster.
  const b = await connect(`${n1.ws}/ws/events`, { token })
  t.teardown(() => b.close())
  const r = await b.request('publish', { type: 'agent.tick', data: { i: 7 } })
  t.same([r.type, r.payload.code], ['error', 'RATE_LIMITED'], 'the seventh, on another node, is rate limited')

  const minted = await n0.api('/api/visitors', { body: { group: 'conv-1', publish: ['chat.message'] } })
  const first = await connect(`${n0.ws}/ws/events`, { token: minted.body.token })
  const second = await connect(`${n1.ws}/ws/events`, { token: minted.body.token })
  t.teardown(async () => { await first.close(); await second.close() })
  t.equal((await first.closed).code, 4003, 'the visitor\'s older socket is evicted by the newer one (evict-oldest)')
  t.equal(second.closeInfo, null, 'the newer one stays')
})
