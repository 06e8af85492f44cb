// The node registry's contract (src/backend/nodes.ts) on memory, a
// standalone Redis and a Redis Cluster: what the heartbeat loop
// (src/cluster/registry.ts) and the reclaim sweep (src/cluster/reclaim.ts)
// rely on. Backends on one space stand for nodes of one cluster.
import t from 'tap'
import type { NodeInfo } from '../../src/backend/nodes.js'
import { forEachBackend } from '../helpers/backends.js'
import { waitFor } from '../helpers/wait.js'

function info (id: string): NodeInfo {
  return {
    id,
    address: '127.0.0.1:1',
    version: 'test',
    startedAt: Date.now(),
    heartbeatAt: Date.now(),
    draining: false,
    connections: { events: 1, admin: 0, health: 0 },
    users: 1,
    eventsPublished: 0,
    eventsDelivered: 0,
    memoryRss: 0,
  }
}

const ids = (nodes: NodeInfo[]): string[] => nodes.map((n) => n.id).sort()

forEachBackend(t, (t, space) => {
  t.test('heartbeat, nodes and leave', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).nodes, (await sp.backend()).nodes]
    await a.heartbeat(info('node-a'), 10_000)
    await b.heartbeat(info('node-b'), 10_000)
    t.same(ids(await a.nodes()), ['node-a', 'node-b'], 'A sees both nodes')
    t.same(ids(await b.nodes()), ['node-a', 'node-b'], 'B sees both nodes')
    const seenB = (await a.nodes()).find((n) => n.id === 'node-b')!
    t.same(seenB.connections, { events: 1, admin: 0, health: 0 }, 'the entry carries what the node reported')

    // A newer heartbeat replaces the entry.
    const updated = info('node-b')
    updated.connections.events = 7
    await b.heartbeat(updated, 10_000)
    t.equal((await a.nodes()).find((n) => n.id === 'node-b')!.connections.events, 7)

    await b.leave('node-b')
    t.same(ids(await a.nodes()), ['node-a'], 'leave removes the node at once')
    t.same(await a.deadNodes(), [], 'and it is not left behind as dead')
  })

  t.test('an entry whose ttl lapses disappears; others stay', async (t) => {
    const sp = space(t)
    const [a, b] = [(await sp.backend()).nodes, (await sp.backend()).nodes]
    await a.heartbeat(info('long'), 30_000)
    const beatAt = Date.now()
    await b.heartbeat(info('short'), 400)
    t.same(ids(await a.nodes()), ['long', 'short'], 'listed while its ttl runs')
    await waitFor('the short-lived entry to lapse', async () => ids(await a.nodes()), (v) => !v.includes('short'), { timeoutMs: 3000 })
    t.ok(Date.now() - beatAt >= 350, 'not dropped before its ttl')
    t.same(ids(await a.nodes()), ['long'])

    // A node that keeps beating stays listed past its ttl.
    await b.heartbeat(info('beating'), 400)
    const started = Date.now()
    let checks = 0
    let missing = 0
    while (Date.now() - started < 1000) {
      await b.heartbeat(info('beating'), 400)
      if (!ids(await a.nodes()).includes('beating')) missing++
      checks++
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    t.equal(missing, 0, `listed at each of ${checks} checks over 2.5 ttls`)
    t.same(ids(await a.nodes()), ['beating', 'long'])
  })

  t.test('a heartbeat tells whether the entry was still there', async (t) => {
    const sp = space(t)
    const a = (await sp.backend()).nodes
    t.equal(await a.heartbeat(info('n'), 10_000), false, 'the first beat finds no entry')
    t.equal(await a.heartbeat(info('n'), 300), true, 'the next one does')
    await waitFor('the entry to lapse', async () => ids(await a.nodes()), (v) => !v.includes('n'), { timeoutMs: 3000 })
    t.equal(await a.heartbeat(info('n'), 10_000), false, 'after it lapsed (taken for dead): gone')
    t.equal(await a.heartbeat(info('n'), 10_000), true)
    await sp.loseData()
    t.equal(await a.heartbeat(info('n'), 10_000), false, 'after the store lost its data: gone')
  })

  t.test('a lapsed node is dead until one node claims it and it leaves; a live one never is', async (t) => {
    const sp = space(t)
    const nodes = await Promise.all([sp.backend(), sp.backend(), sp.backend()].map(async (b) => (await b).nodes))
    const [a, b, c] = nodes as [typeof nodes[0], typeof nodes[0], typeof nodes[0]]
    await a.heartbeat(info('alive'), 30_000)
    await c.heartbeat(info('dying'), 300)
    t.same(await b.deadNodes(), [], 'nobody is dead while every ttl runs')
    t.same(await waitFor('the lapsed node to be dead', async () => await b.deadNodes(), (d) => d.length > 0, { timeoutMs: 3000 }), ['dying'], 'the lapsed node, and only it')
    t.same(await a.deadNodes(), ['dying'], 'every node sees it')

    // Every live node sweeps; one claim wins per name.
    const won = await Promise.all([a, b, a, b].map(async (n) => await n.claim('reclaim:dying', 1000)))
    t.equal(won.filter(Boolean).length, 1, `exactly one of four concurrent claims wins (${won.join(', ')})`)
    t.equal(await a.claim('reclaim:other', 1000), true, 'a claim on another name is its own')
    await b.leave('dying')
    t.same(await a.deadNodes(), [], 'once it left, it is not dead any more')
    t.same(ids(await a.nodes()), ['alive'])

    // The claim lapses with its ttl.
    await waitFor('the claim to lapse', async () => await b.claim('reclaim:dying', 1000), Boolean, { timeoutMs: 3000, intervalMs: 100 })
    t.pass('claimable again after its ttl')
  })
})
