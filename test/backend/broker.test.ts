// The broker's contract (src/backend/broker.ts), on memory, a standalone
// Redis and a Redis Cluster (test/helpers/backends.ts): two or three
// backends on one space stand for nodes. Whatever a node relies on from
// pub/sub is asserted here.
import t from 'tap'
import type { Backend } from '../../src/backend/backend.js'
import type { Broker } from '../../src/backend/broker.js'
import { forEachBackend, type Space } from '../helpers/backends.js'
import type { RedisServer } from '../helpers/redis.js'
import { waitFor, within } from '../helpers/wait.js'

/** Records what a broker receives, so tests await messages instead of sleeping. */
class Inbox {
  readonly got: Array<{ channel: string, message: string }> = []
  private waiters: Array<() => void> = []
  constructor (b: Broker) {
    b.onMessage((channel, message) => {
      this.got.push({ channel, message })
      const w = this.waiters
      this.waiters = []
      for (const f of w) f()
    })
  }

  has (message: string): boolean { return this.got.some((m) => m.message === message) }
  on (channel: string): string[] { return this.got.filter((m) => m.channel === channel).map((m) => m.message) }

  async until (what: string, cond: () => boolean, timeoutMs = 3000): Promise<void> {
    const deadline = Date.now() + timeoutMs
    while (!cond()) {
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.got.length} messages, last: ${JSON.stringify(this.got.slice(-3))}`)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.waiters.push(() => { clearTimeout(timer); resolve() })
      })
    }
  }

  async receive (message: string, timeoutMs = 3000): Promise<void> {
    await this.until(`message ${JSON.stringify(message)}`, () => this.has(message), timeoutMs)
  }
}

let seq = 0
const channel = (name: string): string => `ch:${name}:${++seq}`

/** Brokers of backends on one space: the nodes of one cluster. */
function brokersOn (sp: Space): { broker (): Promise<Broker>, close (b: Broker): Promise<void>, residue (): Promise<number>, dropSubscribers (): Promise<number>, redis?: RedisServer } {
  const backends = new Map<Broker, Backend>()
  return {
    async broker () {
      const be = await sp.backend()
      backends.set(be.broker, be)
      return be.broker
    },
    async close (b) { await backends.get(b)!.close() },
    residue: async () => await sp.residue(),
    dropSubscribers: async () => await sp.dropSubscribers(),
    get redis () { return sp.redis },
  }
}

forEachBackend(t, (t, space, name) => {
  t.test('a message published by A reaches B, subscribed, and not C, unsubscribed', async (t) => {
    const be = brokersOn(space(t))
    const [a, b, c] = [await be.broker(), await be.broker(), await be.broker()]
    const [ib, ic] = [new Inbox(b), new Inbox(c)]
    const ch = channel('x')
    const other = channel('c-only')
    await b.subscribe(ch)
    await c.subscribe(other)
    await a.publish(ch, 'hello')
    // Published after `hello` on the same broker: once C has it, C would have had `hello` too.
    await a.publish(other, 'sentinel')
    await ib.receive('hello')
    await ic.receive('sentinel')
    t.same(ib.got, [{ channel: ch, message: 'hello' }], 'B got exactly the message, on its channel')
    t.same(ic.got, [{ channel: other, message: 'sentinel' }], 'C got nothing from a channel it did not subscribe to')
  })

  t.test('the publisher receives its own message only if it subscribed', async (t) => {
    const be = brokersOn(space(t))
    const [a, b] = [await be.broker(), await be.broker()]
    const [ia, ib] = [new Inbox(a), new Inbox(b)]
    const ch = channel('both')
    await Promise.all([a.subscribe(ch), b.subscribe(ch)])
    await a.publish(ch, 'm1')
    await ia.receive('m1')
    await ib.receive('m1')
    t.equal(ia.on(ch).length, 1)
    t.equal(ib.on(ch).length, 1)
  })

  t.test('unsubscribe stops delivery', async (t) => {
    const be = brokersOn(space(t))
    const [a, b] = [await be.broker(), await be.broker()]
    const ib = new Inbox(b)
    const ch = channel('u')
    const keep = channel('keep')
    await b.subscribe(ch)
    await b.subscribe(keep)
    await a.publish(ch, 'before')
    await ib.receive('before')
    await b.unsubscribe(ch)
    await a.publish(ch, 'after')
    await a.publish(keep, 'sentinel')
    await ib.receive('sentinel')
    t.same(ib.on(ch), ['before'], 'nothing on the channel after unsubscribe')
    // Subscribing again resumes delivery.
    await b.subscribe(ch)
    await a.publish(ch, 'again')
    await ib.receive('again')
    t.same(ib.on(ch), ['before', 'again'])
  })

  t.test('500 messages arrive in publish order', async (t) => {
    const be = brokersOn(space(t))
    const [a, b] = [await be.broker(), await be.broker()]
    const ib = new Inbox(b)
    const ch = channel('order')
    await b.subscribe(ch)
    const sent = Array.from({ length: 500 }, (_v, i) => `m${i}`)
    // Issued back to back without awaiting each, as a busy node does.
    await Promise.all(sent.map((m) => a.publish(ch, m)))
    await ib.until('500 messages', () => ib.on(ch).length >= 500, 10_000)
    t.same(ib.on(ch), sent)
    t.equal(a.unwritten, 0, 'nothing left unwritten once they are taken (the count a drain waits on)')
  })

  t.test('subscribe resolves only once delivery works', async (t) => {
    const be = brokersOn(space(t))
    const [a, b] = [await be.broker(), await be.broker()]
    const ib = new Inbox(b)
    for (let i = 0; i < 25; i++) {
      const ch = channel('fresh')
      await b.subscribe(ch)
      await a.publish(ch, `first-${i}`)
    }
    // Each channel's only message was published right after its subscribe resolved.
    await ib.until('25 messages', () => ib.got.length >= 25)
    t.equal(ib.got.length, 25)
    t.same(ib.got.map((m) => m.message), Array.from({ length: 25 }, (_v, i) => `first-${i}`))
  })

  t.test('subscriptions asked in one turn: each resolves once delivery works, and the last asked of a channel stands', async (t) => {
    const be = brokersOn(space(t))
    const [a, b] = [await be.broker(), await be.broker()]
    const ib = new Inbox(b)
    // 300 channels in one turn (a reconnect storm's user channels), then a
    // channel dropped and taken again, and one taken and dropped, in the same turn.
    const many = Array.from({ length: 300 }, () => channel('storm'))
    const [again, gone] = [channel('again'), channel('gone')]
    await b.subscribe(again)
    await Promise.all([...many.map(async (ch) => await b.subscribe(ch)), b.unsubscribe(again), b.subscribe(again), b.subscribe(gone), b.unsubscribe(gone)])
    await Promise.all([...many.map(async (ch, i) => await a.publish(ch, `m-${i}`)), a.publish(gone, 'dropped'), a.publish(again, 'kept')])
    await ib.until('301 messages', () => ib.got.length >= 301)
    t.equal(new Set(ib.got.filter((m) => m.message.startsWith('m-')).map((m) => m.message)).size, 300, 'every channel of the turn receives')
    t.ok(ib.has('kept'), 'dropped then taken again in one turn: subscribed')
    await a.publish(again, 'fence')
    await ib.receive('fence')
    t.notOk(ib.has('dropped'), 'taken and dropped in one turn: not subscribed')
  })

  t.test('healthy is true when connected', async (t) => {
    const be = brokersOn(space(t))
    const a = await be.broker()
    t.equal(a.healthy, true)
  })

  t.test('close() leaves nothing behind on the backend', async (t) => {
    const be = brokersOn(space(t))
    const [a, b] = [await be.broker(), await be.broker()]
    await a.subscribe(channel('a1'))
    await b.subscribe(channel('b1'))
    const before = await be.residue()
    t.ok(before >= 2, `backend holds something for both brokers (${before})`)
    await within(3000, 'close', be.close(a))
    const afterA = await waitFor('A to be gone', () => be.residue(), (n) => n === before / 2, { timeoutMs: 3000 })
    t.equal(afterA, before / 2, 'only B remains')
    await within(3000, 'close', be.close(b))
    t.equal(await waitFor('B to be gone', () => be.residue(), (n) => n === 0, { timeoutMs: 3000 }), 0)
    t.equal(a.healthy, false, 'a closed broker is not healthy')
  })

  // A node catches up what its subscription missed when the broker says it
  // came back (src/events/gaps.ts): a state change (the whole subscription
  // dropped), or on a Cluster, where a shard's subscriber is replaced while
  // the client stays ready, onShardResubscribed.
  t.test('subscriber connections closed by the server: delivery comes back, and the broker says so', async (t) => {
    const be = brokersOn(space(t))
    const [a, b] = [await be.broker(), await be.broker()]
    const ib = new Inbox(b)
    const states: boolean[] = []
    let shards = 0
    b.onStateChange((h) => states.push(h))
    b.onShardResubscribed(() => { shards++ })
    const ch = channel('dropped')
    await b.subscribe(ch)
    const shardsBefore = shards
    const killed = await be.dropSubscribers()
    if (name === 'memory') t.equal(killed, 0, 'nothing to drop in memory')
    else t.ok(killed >= 1, `the subscriber's connections closed (${killed})`)
    await waitFor('delivery again', async () => { await a.publish(ch, 'back'); return ib.has('back') }, (v) => v, { timeoutMs: 10_000, intervalMs: 100 })
    if (name === 'redis') {
      await waitFor('healthy again', () => b.healthy, (h) => h, { timeoutMs: 5000 })
      t.same(states, [false, true], 'standalone: a state change, down then up')
      t.equal(shards, 0, 'and no shard of its own')
    } else if (name === 'cluster') {
      await waitFor('the broker to say so', () => shards, (n) => n > shardsBefore, { timeoutMs: 5000 })
      t.ok(shards > shardsBefore, `a Cluster: onShardResubscribed after the drop (${shards - shardsBefore} times)`)
      t.same(states, [], 'and no state change (the client stayed ready)')
    } else {
      t.same([states, shards], [[], 0], 'memory: nothing to say')
    }
  })

  if (name !== 'memory') {
    t.test('publishes a paused Redis has not taken count as unwritten until it takes them, in order', async (t) => {
      const sp = space(t)
      const be = brokersOn(sp)
      const [a, b] = [await be.broker(), await be.broker()]
      const ib = new Inbox(b)
      const ch = channel('paused')
      await b.subscribe(ch)
      t.equal(a.unwritten, 0, 'nothing unwritten while Redis answers')
      const resume = sp.pause!()
      // Each is answered held: the first after the wait for Redis, the others at once.
      for (const m of ['p1', 'p2', 'p3']) await within(3000, `the publish of ${m} to be answered`, a.publish(ch, m))
      t.equal(a.unwritten, 3, 'three messages unwritten (a drain waits on this count)')
      resume()
      await waitFor('Redis to take them', () => a.unwritten, (n) => n === 0, { timeoutMs: 10_000 })
      await ib.until('the three at the subscriber', () => ib.on(ch).length === 3, 10_000)
      t.same(ib.on(ch), ['p1', 'p2', 'p3'], 'delivered once each, in publish order')
    })
  }

  if (name === 'redis') {
    t.test('loses and regains health with the server, and resubscribes', async (t) => {
      const be = brokersOn(space(t))
      const [a, b] = [await be.broker(), await be.broker()]
      const ib = new Inbox(b)
      const states: boolean[] = []
      b.onStateChange((h) => states.push(h))
      const ch = channel('survive')
      await b.subscribe(ch)
      await be.redis!.kill()
      await waitFor('B to notice the outage', () => b.healthy, (h) => !h, { timeoutMs: 3000 })
      t.same(states, [false], 'state listeners hear about it')
      await be.redis!.restart()
      await waitFor('both to reconnect', () => a.healthy && b.healthy, (h) => h, { timeoutMs: 6000 })
      t.same(states, [false, true])
      // Resubscription is sent on reconnect; a message published after it arrives.
      await waitFor('delivery after restart', async () => { await a.publish(ch, 'back'); return ib.has('back') }, (v) => v, { timeoutMs: 3000, intervalMs: 100 })
      t.ok(ib.has('back'))
    })

    t.test('close() finishes promptly while the server is down', async (t) => {
      const be = brokersOn(space(t))
      const a = await be.broker()
      await a.subscribe(channel('down'))
      await be.redis!.kill()
      await waitFor('the outage to be noticed', () => a.healthy, (h) => !h, { timeoutMs: 3000 })
      // A publish made during the outage is buffered (it settles at once) and must not keep close() waiting.
      const pending = a.publish(channel('down'), 'queued').then(() => 'buffered', (err: Error) => err)
      t.equal(await within(2000, 'the buffered publish to settle', pending), 'buffered')
      await within(2000, 'close during an outage', be.close(a))
      t.rejects(a.publish(channel('down'), 'after close'), 'publishing on a closed broker is an error')
    })
  }
})
