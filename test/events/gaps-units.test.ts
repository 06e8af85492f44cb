// The read-back's rules (src/events/gaps.ts), message by message: Gaps over
// the memory backend's stream store, fed what a node would hear, handing on
// to a recorder. The end-to-end cases (real nodes, a real Redis) are in
// gaps.test.ts.
import t, { type Test } from 'tap'
import { createMemoryBackend, type Backend } from '../../src/backend/backend.js'
import type { StreamRead, StreamStore } from '../../src/backend/streams.js'
import { createChannels } from '../../src/cluster/channels.js'
import { decode, draft, type Envelope } from '../../src/events/codec.js'
import { Gaps, MAX_READS } from '../../src/events/gaps.js'
import { waitFor } from '../helpers/wait.js'

const ch = createChannels('gaps:')

/** Appends one message to user u<i>'s stream; returns it as heard on pub/sub. */
async function appendToUser (backend: Backend, i: number, label: string): Promise<Envelope> {
  const d = draft({ kind: 'e', origin: '', publishedAt: Date.now(), type: 'gap.unit', userId: `u${i}`, stream: `user:u${i}`, json: JSON.stringify({ id: label, type: 'gap.unit', stream: `user:u${i}` }) })
  const p = (await backend.broker.append({ channel: ch.user(`u${i}`), also: [], draft: d }))!
  return decode((await backend.streams!.read(ch.user(`u${i}`), p.offset - 1, 1)).messages[0]!.message)!
}
const channel = ch.user('u')
const history = { size: 1000, ttlMs: 60_000 }

async function setup (opts: { streams?: (s: StreamStore) => StreamStore, holds?: (c: string) => boolean } = {}) {
  const backend = createMemoryBackend({ keyPrefix: 'gaps:', history })
  await backend.connect()
  const passed: Envelope[] = []
  const logs: Array<Record<string, unknown>> = []
  const streams = opts.streams?.(backend.streams!) ?? backend.streams!
  const gaps = new Gaps(streams, ch.admin, 'admin', opts.holds ?? (() => true), (_c, env) => { passed.push(env) }, (f) => { logs.push(f) })
  /** Appends one message to the user's stream; returns it as heard on pub/sub. */
  const append = async (label: string): Promise<Envelope> => {
    const d = draft({ kind: 'e', origin: '', publishedAt: Date.now(), type: 'gap.unit', userId: 'u', stream: 'user:u', json: JSON.stringify({ id: label, type: 'gap.unit', stream: 'user:u' }) })
    const p = (await backend.broker.append({ channel, also: [], draft: d }))!
    const page = await backend.streams!.read(channel, p.offset - 1, 1)
    return decode(page.messages[0]!.message)!
  }
  const labels = (): string[] => passed.filter((e) => e.kind !== 'c').map((e) => (JSON.parse(e.json) as { id: string }).id)
  return { backend, gaps, passed, logs, append, labels }
}

t.test('a gap on arrival is read back first; later arrivals wait behind the read, in order', async (t) => {
  const { backend, gaps, append, labels, logs } = await setup()
  t.teardown(() => backend.close())
  const [e1, , , e4, e5] = [await append('e1'), await append('e2'), await append('e3'), await append('e4'), await append('e5')]
  gaps.take(channel, e1)
  gaps.take(channel, e4)
  gaps.take(channel, e5)
  t.same(labels(), ['e1'], 'e4 and e5 wait for the read')
  await waitFor('the read back', () => labels().length, (n) => n === 5)
  t.same(labels(), ['e1', 'e2', 'e3', 'e4', 'e5'])
  t.same(gaps.stats, { missed: 2, recovered: 2, late: 0 })
  t.same(logs, [{ missed: 2, recovered: 2 }])
})

t.test('after a catch-up, the late pub/sub copies of what it read back are dropped', async (t) => {
  const { backend, gaps, append, labels } = await setup()
  t.teardown(() => backend.close())
  const e1 = await append('e1')
  gaps.take(channel, e1)
  const [e2, e3] = [await append('e2'), await append('e3')]
  await gaps.catchUp()
  await waitFor('the read back', () => labels().length, (n) => n === 3)
  gaps.take(channel, e2)
  gaps.take(channel, e3)
  const e4 = await append('e4')
  gaps.take(channel, e4)
  t.same(labels(), ['e1', 'e2', 'e3', 'e4'], 'each once')
  t.equal(gaps.stats.late, 2)
})

t.test('Redis back empty: the new epoch\'s messages before the first heard are read back', async (t) => {
  // Two stores stand for Redis before and after it restarted empty: the same channel, another epoch.
  const before = await setup()
  t.teardown(() => before.backend.close())
  const after = createMemoryBackend({ keyPrefix: 'gaps:', history })
  t.teardown(() => after.close())
  const passed: Envelope[] = []
  const gaps = new Gaps(after.streams!, ch.admin, 'admin', () => true, (_c, env) => { passed.push(env) }, () => {})
  const heard = async (b: typeof after, label: string): Promise<Envelope> => {
    const d = draft({ kind: 'e', origin: '', publishedAt: Date.now(), type: 'gap.unit', userId: 'u', stream: 'user:u', json: JSON.stringify({ id: label, type: 'gap.unit', stream: 'user:u' }) })
    const p = (await b.broker.append({ channel, also: [], draft: d }))!
    return decode((await b.streams!.read(channel, p.offset - 1, 1)).messages[0]!.message)!
  }
  const old = await heard(before.backend, 'old')
  gaps.take(channel, old)
  await heard(after, 'n1')
  await heard(after, 'n2')
  const n3 = await heard(after, 'n3')
  t.not(n3.epoch, old.epoch, 'another epoch')
  gaps.take(channel, n3)
  await waitFor('the read back', () => passed.length, (n) => n === 4)
  t.same(passed.map((e) => (JSON.parse(e.json) as { id: string }).id), ['old', 'n1', 'n2', 'n3'])
})

t.test('a channel dropped while its read is under way hands nothing of it on, and is tracked afresh', async (t) => {
  let release!: () => void
  const gate = new Promise<void>((resolve) => { release = resolve })
  const slowly = (s: StreamStore): StreamStore => ({ history: s.history, position: async (c) => await s.position(c), read: async (c, a, l): Promise<StreamRead> => { await gate; return await s.read(c, a, l) } })
  const { backend, gaps, append, labels } = await setup({ streams: slowly })
  t.teardown(() => backend.close())
  const [e1, , e3] = [await append('e1'), await append('e2'), await append('e3')]
  gaps.take(channel, e1)
  gaps.take(channel, e3)
  gaps.forget(channel)
  const e4 = await append('e4')
  gaps.take(channel, e4)
  release()
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(labels(), ['e1', 'e4'], 'e2 and e3 went with the channel; e4 starts its tracking')
})

t.test('a read that does not answer is given up after 2 s: what waited goes on', async (t) => {
  const never = (s: StreamStore): StreamStore => ({ history: s.history, position: async (c) => await s.position(c), read: async () => await new Promise<StreamRead>(() => {}) })
  const { backend, gaps, append, labels, passed } = await setup({ streams: never })
  t.teardown(() => backend.close())
  const [e1, , e3] = [await append('e1'), await append('e2'), await append('e3')]
  gaps.take(channel, e1)
  gaps.take(channel, e3)
  const control: Envelope = { kind: 'c', origin: '', publishedAt: Date.now(), type: 'revoke', userId: 'u', stream: '', offset: null, epoch: '', json: '{}' }
  gaps.take(channel, control)
  t.same(passed.map((e) => e.kind), ['e', 'c'], 'a control message does not wait behind the read')
  await waitFor('the read given up', () => labels().length, (n) => n === 2, { timeoutMs: 5000 })
  t.same(labels(), ['e1', 'e3'])
  t.same(gaps.stats, { missed: 1, recovered: 0, late: 0 })
})

t.test('channels the hub does not hold are not tracked', async (t) => {
  const { backend, gaps, append, labels } = await setup({ holds: () => false })
  t.teardown(() => backend.close())
  const [e1, , e3] = [await append('e1'), await append('e2'), await append('e3')]
  gaps.take(channel, e1)
  gaps.take(channel, e3)
  t.same(labels(), ['e1', 'e3'], 'handed on as heard, nothing read')
  t.equal(gaps.stats.missed, 0)
})

t.test('on the admins\' channel, live copies of a user\'s events are not tracked', async (t) => {
  const { backend, gaps, append, labels } = await setup()
  t.teardown(() => backend.close())
  const [e1, , e3] = [await append('e1'), await append('e2'), await append('e3')]
  gaps.take(ch.admin, e1)
  gaps.take(ch.admin, e3)
  t.same(labels(), ['e1', 'e3'], 'handed on as heard, nothing read')
  t.equal(gaps.stats.missed, 0)
})

t.test('a catch-up answer older than what was heard meanwhile moves nothing back', async (t) => {
  let answer!: () => void
  const held = new Promise<void>((resolve) => { answer = resolve })
  const late = (s: StreamStore): StreamStore => ({ history: s.history, read: async (c, a, l) => await s.read(c, a, l), position: async (c) => { const p = await s.position(c); await held; return p } })
  const { backend, gaps, append, labels } = await setup({ streams: late })
  t.teardown(() => backend.close())
  gaps.take(channel, await append('e1'))
  const e2 = await append('e2')
  const caught = gaps.catchUp()
  // The top (2) is read; e2 and e3 are heard before the answer is.
  gaps.take(channel, e2)
  const e3 = await append('e3')
  gaps.take(channel, e3)
  answer()
  await caught
  gaps.take(channel, await append('e4'))
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(labels(), ['e1', 'e2', 'e3', 'e4'], 'each once: no read of what was heard')
  t.equal(gaps.stats.missed, 0)
})

t.test('a message that is not the stream\'s (another epoch, an offset past the top) reads nothing twice', async (t) => {
  const { backend, gaps, append, labels, passed } = await setup()
  t.teardown(() => backend.close())
  const e1 = await append('e1')
  gaps.take(channel, e1)
  const e2 = await append('e2')
  gaps.take(channel, e2)
  // Someone with access to Redis puts messages on the channel.
  gaps.take(channel, { ...e2, epoch: 'forged', offset: 500, json: '{"id":"forged-epoch"}' })
  await waitFor('the forged one handed on', () => labels().length, (n) => n === 3)
  gaps.take(channel, { ...e2, offset: 9_000_000, json: '{"id":"forged-offset"}' })
  await waitFor('the forged one handed on', () => labels().length, (n) => n === 4)
  // One that looks like the first of a new epoch needs no read, and is taken for one.
  gaps.take(channel, { ...e2, epoch: 'forged-2', offset: 1, json: '{"id":"forged-first"}' })
  const e3 = await append('e3')
  gaps.take(channel, e3)
  const e4 = await append('e4')
  gaps.take(channel, e4)
  await new Promise((resolve) => setTimeout(resolve, 50))
  t.same(labels(), ['e1', 'e2', 'forged-epoch', 'forged-offset', 'forged-first', 'e3', 'e4'], 'the real messages once each, in order; nothing read back again')
  t.equal(passed.length, 7)
})

t.test('a read back that throws on what the stream holds ends nothing: what waited goes on, a line says why', async (t) => {
  const broken = (s: StreamStore): StreamStore => ({ history: s.history, position: async (c) => await s.position(c), read: async (c, a, l) => ({ ...(await s.read(c, a, l)), messages: [{ offset: a + 1, message: undefined as unknown as string }] }) })
  const { backend, gaps, append, labels, logs } = await setup({ streams: broken })
  t.teardown(() => backend.close())
  const [e1, , e3] = [await append('e1'), await append('e2'), await append('e3')]
  gaps.take(channel, e1)
  gaps.take(channel, e3)
  await waitFor('the read given up', () => labels().length, (n) => n === 2)
  t.same(labels(), ['e1', 'e3'])
  t.match(logs, [{ err: { message: /./ } }])
  gaps.take(channel, await append('e4'))
  t.same(labels(), ['e1', 'e3', 'e4'], 'the channel is not held')
})

t.test('a catch-up over many channels reads a bounded number at once, and gets through them all', async (t) => {
  let inFlight = 0
  let most = 0
  const counted = (s: StreamStore): StreamStore => ({
    history: s.history,
    position: async (c) => await s.position(c),
    read: async (c, after, limit) => {
      inFlight++
      most = Math.max(most, inFlight)
      try {
        // Answers a little later, as Redis would: reads overlap if nothing bounds them.
        await new Promise((resolve) => setTimeout(resolve, 2))
        return await s.read(c, after, limit)
      } finally { inFlight-- }
    },
  })
  const { backend, gaps, passed } = await setup({ streams: counted })
  t.teardown(() => backend.close())
  const CHANNELS = MAX_READS * 4
  const appendTo = async (i: number, label: string): Promise<Envelope> => await appendToUser(backend, i, label)
  // Each channel heard once, then two messages it missed (the subscriber was down).
  for (let i = 0; i < CHANNELS; i++) gaps.take(ch.user(`u${i}`), await appendTo(i, `u${i}-1`))
  for (let i = 0; i < CHANNELS; i++) for (const n of [2, 3]) await appendTo(i, `u${i}-${n}`)
  await gaps.catchUp()
  await waitFor('every channel caught up', () => passed.length, (n) => n === CHANNELS * 3, { timeoutMs: 10_000 })
  t.ok(most <= MAX_READS, `at most ${MAX_READS} reads at once (${most})`)
  t.ok(most >= Math.min(MAX_READS, 2), `reads did overlap (${most})`)
  t.same(gaps.stats, { missed: CHANNELS * 2, recovered: CHANNELS * 2, late: 0 })
  // Per channel, in order.
  for (let i = 0; i < CHANNELS; i++) {
    t.same(passed.filter((e) => e.userId === `u${i}`).map((e) => (JSON.parse(e.json) as { id: string }).id), [`u${i}-1`, `u${i}-2`, `u${i}-3`])
  }
})

/** A store whose reads wait until the test lets them go: Redis slow to answer. */
function heldReads (): { wrap: (s: StreamStore) => StreamStore, started: () => number, release: () => void } {
  let started = 0
  let held: Array<() => void> = []
  let open = false
  return {
    wrap: (s) => ({
      history: s.history,
      position: async (c) => await s.position(c),
      read: async (c, after, limit) => {
        started++
        if (!open) await new Promise<void>((resolve) => held.push(resolve))
        return await s.read(c, after, limit)
      },
    }),
    started: () => started,
    release () { open = true; for (const r of held) r(); held = [] },
  }
}

/** MAX_READS + 1 channels each heard once, then a message showing a gap on each: MAX_READS reads start, the last waits its turn. */
async function saturated (t: Test) {
  const reads = heldReads()
  const x = await setup({ streams: reads.wrap })
  t.teardown(() => x.backend.close())
  const last = MAX_READS
  for (let i = 0; i <= last; i++) x.gaps.take(ch.user(`u${i}`), await appendToUser(x.backend, i, `u${i}-1`))
  for (let i = 0; i <= last; i++) {
    await appendToUser(x.backend, i, `u${i}-2`)
    x.gaps.take(ch.user(`u${i}`), await appendToUser(x.backend, i, `u${i}-3`))
  }
  await waitFor('the reads under way', () => reads.started(), (n) => n === MAX_READS)
  const of = (i: number): string[] => x.passed.filter((e) => e.userId === `u${i}`).map((e) => (JSON.parse(e.json) as { id: string }).id)
  return { ...x, reads, last, of }
}

t.test('a channel dropped while its read waits its turn reads nothing', async (t) => {
  const { gaps, backend, reads, last, of, passed } = await saturated(t)
  t.equal(reads.started(), MAX_READS, 'the last channel\'s read waits for a turn')
  gaps.take(ch.user('u0'), await appendToUser(backend, 0, 'u0-4'))
  t.equal(gaps.held, 1, 'a message arriving behind a read is held, and counted')
  gaps.forget(ch.user(`u${last}`))
  reads.release()
  // The others' three messages each, u0's fourth, and the dropped channel's first.
  await waitFor('the others read back', () => passed.length, (n) => n === MAX_READS * 3 + 2)
  t.equal(gaps.held, 0, 'nothing held once the reads answered')
  t.same(of(0), ['u0-1', 'u0-2', 'u0-3', 'u0-4'], 'in order')
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(reads.started(), MAX_READS, 'its turn came and it read nothing')
  t.same(of(last), [`u${last}-1`], 'and handed on nothing of it')
})

t.test('a read waiting its turn is given up 2 s after the gap showed; the turns stay held until the slow reads answer', async (t) => {
  const { gaps, backend, reads, last, of } = await saturated(t)
  // Given up with the others after 2 s: what waited goes on, the gap stays a gap.
  await waitFor('the waiting channel handed on', () => of(last).length, (n) => n === 2, { timeoutMs: 5000 })
  t.same(of(last), [`u${last}-1`, `u${last}-3`], 'its own message went on without the read')
  t.same(of(0), ['u0-1', 'u0-3'], 'so did those whose reads Redis has not answered')
  // Redis still has not answered the first reads: a new gap waits for a turn, however long.
  const next = MAX_READS + 1
  gaps.take(ch.user(`u${next}`), await appendToUser(backend, next, `u${next}-1`))
  await appendToUser(backend, next, `u${next}-2`)
  gaps.take(ch.user(`u${next}`), await appendToUser(backend, next, `u${next}-3`))
  await new Promise((resolve) => setImmediate(resolve))
  t.equal(reads.started(), MAX_READS, 'no read beyond the bound while the first are unanswered')
  reads.release()
  await waitFor('the new gap read back once a turn is free', () => of(next).length, (n) => n === 3)
  t.same(of(next), [`u${next}-1`, `u${next}-2`, `u${next}-3`])
  t.equal(reads.started(), MAX_READS + 1, 'the channel given up while waiting never read')
  t.equal(gaps.stats.missed - gaps.stats.recovered, MAX_READS + 1, 'each given-up gap counted lost once')
})

t.test('catch-ups asked for while one runs run once more after it, not once each', async (t) => {
  let positions = 0
  const counting = (s: StreamStore): StreamStore => ({ history: s.history, read: async (c, a, l) => await s.read(c, a, l), position: async (c) => { positions++; return await s.position(c) } })
  const { backend, gaps, passed } = await setup({ streams: counting })
  t.teardown(() => backend.close())
  for (let i = 0; i < 3; i++) gaps.take(ch.user(`u${i}`), await appendToUser(backend, i, `u${i}-1`))
  await appendToUser(backend, 0, 'u0-2')
  // The rerun waits on an unref'd timer (a node's sockets keep it alive): so does this test.
  const alive = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(alive))
  const runs = Array.from({ length: 5 }, () => gaps.catchUp())
  await Promise.all(runs)
  t.equal(positions, 6, 'two rounds over the three channels')
  await waitFor('the missed message read back', () => passed.length, (n) => n === 4)
  t.equal(gaps.stats.missed, 1, 'read once')
})
