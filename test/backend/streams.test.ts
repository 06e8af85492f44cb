// History's contract (src/backend/streams.ts: the append in the broker, reads
// in `streams`), on memory, a standalone Redis and a Redis Cluster
// (test/helpers/backends.ts): several backends on one space stand for nodes.
// What resume and the catch-up API rely on is asserted here: offsets +1 per
// message of each stream, in order on pub/sub whoever publishes, never seen
// before they can be read, an epoch that changes exactly when history is
// lost, trimming by size and age, reads in pages. On the standalone Redis,
// appends held through a paused and a restarted Redis.
import { Redis } from 'ioredis'
import t from 'tap'
import type { Backend } from '../../src/backend/backend.js'
import type { Broker } from '../../src/backend/broker.js'
import { MAX_READ_BYTES } from '../../src/backend/page-bytes.js'
import type { HistoryConfig, Position } from '../../src/backend/streams.js'
import { createChannels } from '../../src/cluster/channels.js'
import { decode, draft, place, type Draft } from '../../src/events/codec.js'
import { forEachBackend, type Space } from '../helpers/backends.js'
import { waitFor, within } from '../helpers/wait.js'

const H: HistoryConfig = { size: 1000, ttlMs: 60_000 }

/** What a broker receives, in order, so tests await messages instead of sleeping. */
class Inbox {
  readonly got: Array<{ channel: string, message: string }> = []
  constructor (b: Broker, onEach?: (channel: string, message: string) => void) {
    b.onMessage((channel, message) => { this.got.push({ channel, message }); onEach?.(channel, message) })
  }

  on (channel: string): string[] { return this.got.filter((m) => m.channel === channel).map((m) => m.message) }

  async count (channel: string, n: number, timeoutMs = 10_000): Promise<string[]> {
    await waitFor(`${n} messages on ${channel}`, () => this.on(channel).length, (k) => k >= n, { timeoutMs, intervalMs: 10 })
    return this.on(channel)
  }
}

let seq = 0
/** A user's channel, as nodes name them: hash-tagged, so its keys share its slot. */
const userChannel = (sp: Space): string => createChannels(sp.keyPrefix).user(`u${process.pid}-${++seq}`)

/** An event's draft, as the publisher makes it; `label` is its id. */
const event = (label: string, at = Date.now()): Draft => draft({
  kind: 'e', origin: '', publishedAt: at, type: 'test.stream', userId: 'u', stream: 'user:u',
  json: JSON.stringify({ id: label, type: 'test.stream', data: { label }, stream: 'user:u' }),
})

const offsets = (messages: readonly string[]): number[] => messages.map((m) => decode(m)!.offset!)
const labels = (messages: readonly string[]): string[] => messages.map((m) => (JSON.parse(decode(m)!.json) as { id: string }).id)

async function appendAll (b: Backend, channel: string, names: string[], also: string[] = []): Promise<Position[]> {
  const out: Position[] = []
  for (const n of names) out.push((await b.broker.append({ channel, also, draft: event(n) }))!)
  return out
}

async function readAll (b: Backend, channel: string, after = 0): Promise<string[]> {
  const out: string[] = []
  for (let from: number | null = after, pages = 0; from !== null && pages < 100; pages++) {
    const page = await b.streams!.read(channel, from, 100)
    out.push(...page.messages.map((m) => m.message))
    from = page.next
  }
  return out
}

const range = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_v, i) => from + i)

forEachBackend(t, (t, space, kind) => {
  t.test('offsets count +1 per message of each stream, and what goes out on pub/sub is what the stream keeps', async (t) => {
    const sp = space(t)
    const [a, b] = [await sp.backend({ history: H }), await sp.backend({ history: H })]
    const inbox = new Inbox(b.broker)
    const [x, y] = [userChannel(sp), userChannel(sp)]
    await b.broker.subscribe(x)
    await b.broker.subscribe(y)
    const got: Array<[string, Position]> = []
    for (const [ch, label] of [[x, 'x1'], [y, 'y1'], [x, 'x2'], [x, 'x3'], [y, 'y2']] as const) {
      const d = event(label)
      const p = await a.broker.append({ channel: ch, also: [], draft: d })
      t.ok(p !== null, `${label}: the append answered with its position`)
      got.push([label, p!])
      t.equal((await inbox.count(ch, got.filter(([l]) => l[0] === label[0]).length)).at(-1), place(d, p!), `${label}: the message on pub/sub is the draft at its position`)
    }
    const ofX = got.filter(([l]) => l.startsWith('x')).map(([, p]) => p)
    const ofY = got.filter(([l]) => l.startsWith('y')).map(([, p]) => p)
    t.same(ofX.map((p) => p.offset), [1, 2, 3], 'x: 1, 2, 3')
    t.same(ofY.map((p) => p.offset), [1, 2], 'y counts on its own')
    t.equal(new Set(ofX.map((p) => p.epoch)).size, 1, 'one epoch for x')
    t.not(ofX[0]!.epoch, ofY[0]!.epoch, 'each stream has its own epoch')
    t.match(ofX[0]!.epoch, /^[A-Za-z0-9_-]{8}$/, 'an epoch is 8 base64url characters')

    const kept = await b.streams!.read(x, 0, 100)
    t.same(kept.messages.map((m) => m.offset), [1, 2, 3])
    t.same(kept.messages.map((m) => m.message), inbox.on(x), 'another backend reads back exactly what went out')
    t.same({ epoch: kept.epoch, top: kept.top, next: kept.next }, { epoch: ofX[0]!.epoch, top: 3, next: null })
    t.same(await b.streams!.position(x), { offset: 3, epoch: ofX[0]!.epoch }, 'the position is the top')
    const env = decode(inbox.on(x)[0]!)!
    t.match(env, { kind: 'e', stream: 'user:u', offset: 1, epoch: ofX[0]!.epoch }, 'the header carries the position')
    t.match(JSON.parse(env.json), { id: 'x1', stream: 'user:u', offset: 1, epoch: ofX[0]!.epoch }, 'and so does the client payload')
  })

  t.test('live-only copies get the positioned message and append nothing to their own stream', async (t) => {
    const sp = space(t)
    const [a, b] = [await sp.backend({ history: H }), await sp.backend({ history: H })]
    const inbox = new Inbox(b.broker)
    const user = userChannel(sp)
    const admin = createChannels(sp.keyPrefix).admin
    await b.broker.subscribe(user)
    await b.broker.subscribe(admin)
    const [p1, p2] = await appendAll(a, user, ['one', 'two'], [admin])
    const onAdmin = await inbox.count(admin, 2)
    t.same(onAdmin, await inbox.count(user, 2), 'the admin channel got the same messages as the user\'s')
    t.same(offsets(onAdmin), [p1!.offset, p2!.offset], 'positioned as in the user\'s stream')
    const adminStream = await b.streams!.read(admin, 0, 100)
    t.same([adminStream.top, adminStream.messages.length], [0, 0], 'the admin stream has none of them')
  })

  t.test('a stream without a meta gets an epoch at top 0 when read, and the next append continues it', async (t) => {
    const sp = space(t)
    const a = await sp.backend({ history: H })
    const ch = userChannel(sp)
    const first = await a.streams!.position(ch)
    t.equal(first.offset, 0, 'top 0')
    t.same(await a.streams!.position(ch), first, 'asking again: the same epoch')
    const page = await a.streams!.read(ch, 0, 10)
    t.same([page.epoch, page.top, page.messages.length, page.next], [first.epoch, 0, 0, null], 'reading it: empty, in that epoch')
    const [p] = await appendAll(a, ch, ['first'])
    t.same(p, { offset: 1, epoch: first.epoch }, 'the first append is offset 1 of the epoch the reader was given')
  })

  t.test('the epoch stays until the meta is lost; then the old messages are gone with it', async (t) => {
    const sp = space(t)
    const [a, b] = [await sp.backend({ history: H }), await sp.backend({ history: H })]
    const ch = userChannel(sp)
    const before = await appendAll(a, ch, ['a1', 'a2'])
    t.same(await appendAll(b, ch, ['b3']), [{ offset: 3, epoch: before[0]!.epoch }], 'another backend continues the same epoch')

    await sp.loseData()
    const lost = await a.streams!.position(ch)
    t.not(lost.epoch, before[0]!.epoch, 'everything lost (FLUSHALL, a restart without persistence): a new epoch')
    t.equal(lost.offset, 0)
    t.same(await readAll(a, ch), [], 'and no messages')
    t.same(await appendAll(a, ch, ['c1']), [{ offset: 1, epoch: lost.epoch }], 'counting from 1 in it')

    const other = userChannel(sp)
    const old = await appendAll(a, other, ['o1', 'o2', 'o3'])
    await sp.loseMeta(other)
    const [renewed] = await appendAll(b, other, ['n1'])
    t.not(renewed!.epoch, old[0]!.epoch, 'the meta alone lost (evicted): the next append starts a new epoch')
    t.equal(renewed!.offset, 1)
    const kept = await readAll(a, other)
    t.same(labels(kept), ['n1'], 'the messages of the lost epoch are dropped: offset 1 names one message only')
    t.same(offsets(kept), [1])
  })

  t.test('reads and positions asked in one turn are each answered as if alone; on Redis, one script call for them all', async (t) => {
    const sp = space(t)
    const [a, b] = [await sp.backend({ history: H }), await sp.backend({ history: H })]
    const [x, y, fresh] = [userChannel(sp), userChannel(sp), userChannel(sp)]
    const ofX = await appendAll(a, x, ['x1', 'x2', 'x3'])
    const ofY = await appendAll(a, y, ['y1'])
    const stats = kind === 'redis' ? new Redis(sp.redis!.url) : null
    t.teardown(() => stats?.disconnect())
    const scriptCalls = async (): Promise<number> => {
      const info = await stats!.info('commandstats')
      return [...info.matchAll(/^cmdstat_(?:evalsha|eval):calls=(\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0)
    }
    await b.streams!.position(userChannel(sp)) // the script loaded: a first EVALSHA may be refused and sent again as EVAL
    const before = stats === null ? 0 : await scriptCalls()
    // All asked in the same turn: the same read twice, a position twice, a stream never written.
    const [rx, rx2, rxAfter, px, py, py2, pFresh, ry] = await Promise.all([
      b.streams!.read(x, 0, 10), b.streams!.read(x, 0, 10), b.streams!.read(x, 2, 10),
      b.streams!.position(x), b.streams!.position(y), b.streams!.position(y), b.streams!.position(fresh), b.streams!.read(y, 0, 1),
    ])
    if (stats !== null) t.equal(await scriptCalls() - before, 1, 'one script call on Redis for the turn')
    t.same(offsets(rx.messages.map((m) => m.message)), [1, 2, 3], 'x read from the start')
    t.same(rx2, rx, 'the same read asked twice: the same answer')
    t.same([offsets(rxAfter.messages.map((m) => m.message)), rxAfter.top, rxAfter.epoch], [[3], 3, ofX[0]!.epoch], 'x read after 2')
    t.same([px, py, py2], [{ offset: 3, epoch: ofX[0]!.epoch }, { offset: 1, epoch: ofY[0]!.epoch }, { offset: 1, epoch: ofY[0]!.epoch }], 'the positions are the tops')
    t.equal(pFresh.offset, 0, 'a stream never written: top 0')
    t.same(await b.streams!.position(fresh), pFresh, 'in an epoch of its own, kept')
    t.same([ry.top, ry.next, labels(ry.messages.map((m) => m.message))], [1, null, ['y1']], 'y read')
  })

  t.test('each stream keeps HISTORY_SIZE messages, the latest', async (t) => {
    const sp = space(t)
    const a = await sp.backend({ history: { size: 5, ttlMs: 60_000 } })
    const ch = userChannel(sp)
    await appendAll(a, ch, range(1, 8).map((i) => `m${i}`))
    const page = await a.streams!.read(ch, 0, 100)
    t.same(page.messages.map((m) => m.offset), [4, 5, 6, 7, 8], 'the 5 latest')
    t.equal(page.top, 8, 'the top counts every message')
    t.same(labels(page.messages.map((m) => m.message)), ['m4', 'm5', 'm6', 'm7', 'm8'])
  })

  t.test('reads come in pages of at most the limit asked, at most 1000', async (t) => {
    const sp = space(t)
    const a = await sp.backend({ history: H })
    const ch = userChannel(sp)
    await appendAll(a, ch, range(1, 25).map((i) => `m${i}`))
    const pages: Array<[number[], number | null]> = []
    for (let from: number | null = 0; from !== null;) {
      const p = await a.streams!.read(ch, from, 10)
      pages.push([p.messages.map((m) => m.offset), p.next])
      from = p.next
    }
    t.same(pages, [[range(1, 10), 10], [range(11, 20), 20], [range(21, 25), null]])
    t.same((await a.streams!.read(ch, 7, 3)).messages.map((m) => m.offset), [8, 9, 10], 'from any offset')
    t.same((await a.streams!.read(ch, 25, 10)).messages, [], 'nothing after the top')
    t.same((await a.streams!.read(ch, 99, 10)).messages, [], 'nor after an offset past it')
    t.same((await a.streams!.read(ch, 20, 5)).next, null, 'a page ending at the top has no next')
    for (const [after, limit] of [[-1, 10], [0, 0], [0, 1001], [1.5, 10]]) {
      await t.rejects(a.streams!.read(ch, after!, limit!), RangeError, `after ${after}, limit ${limit}: refused`)
    }
  })

  t.test('a page ends with the message that reaches MAX_READ_BYTES, and the next page goes on from there', { timeout: 30_000 }, async (t) => {
    const sp = space(t)
    const a = await sp.backend({ history: H })
    const ch = userChannel(sp)
    // 40 messages of about 60 KB (a 64 KiB event's worth): 2.4 MB in all.
    const pad = 'x'.repeat(60_000)
    const heavy = (label: string): Draft => draft({
      kind: 'e', origin: '', publishedAt: Date.now(), type: 'test.stream', userId: 'u', stream: 'user:u',
      json: JSON.stringify({ id: label, type: 'test.stream', data: { pad }, stream: 'user:u' }),
    })
    for (let i = 1; i <= 40; i++) await a.broker.append({ channel: ch, also: [], draft: heavy(`h${i}`) })
    const pages: Array<{ offsets: number[], next: number | null, bytes: number }> = []
    for (let from: number | null = 0, n = 0; from !== null && n < 10; n++) {
      const p = await a.streams!.read(ch, from, 1000)
      pages.push({ offsets: p.messages.map((m) => m.offset), next: p.next, bytes: p.messages.reduce((sum, m) => sum + Buffer.byteLength(m.message), 0) })
      from = p.next
    }
    const size = Buffer.byteLength((await a.streams!.read(ch, 0, 1)).messages[0]!.message)
    const perPage = Math.ceil(MAX_READ_BYTES / size)
    t.same(pages.map((p) => p.offsets.length), [perPage, perPage, 40 - 2 * perPage], `pages of ${perPage} messages (${size} bytes each), not one of 40`)
    t.same(pages.flatMap((p) => p.offsets), range(1, 40), 'every message once, in order, across the pages')
    t.same(pages.map((p) => p.next), [perPage, 2 * perPage, null], 'each page says where the next begins; the last reaches the top')
    for (const p of pages) t.ok(p.bytes < MAX_READ_BYTES + size, `a page of ${p.bytes} bytes: at most one message past the bound`)
    t.same((await a.streams!.read(ch, 0, 5)).messages.map((m) => m.offset), range(1, 5), 'a limit below the bound is the limit')
  })

  t.test('a stream lives HISTORY_TTL after its last message; older messages are not returned meanwhile; its epoch and top outlive it', { timeout: 30_000 }, async (t) => {
    const sp = space(t)
    const ttlMs = 3000
    const a = await sp.backend({ history: { size: 100, ttlMs } })
    const ch = userChannel(sp)
    const t0 = Date.now()
    const [first] = await appendAll(a, ch, ['old'])
    // The clock has to move: the second message comes half a TTL later.
    await new Promise((resolve) => setTimeout(resolve, ttlMs / 2))
    const t1 = Date.now()
    await appendAll(a, ch, ['young'])
    t.same(labels(await readAll(a, ch)), ['old', 'young'], 'both retained while younger than the TTL')

    await waitFor('the first message to be older than the TTL', () => Date.now() - t0, (age) => age > ttlMs + 50, { timeoutMs: ttlMs * 2 })
    const page = await a.streams!.read(ch, 0, 100)
    const readAt = Date.now()
    t.ok(readAt - t1 < ttlMs, `the second is still younger than the TTL when read (${readAt - t1} ms)`)
    t.same(labels(page.messages.map((m) => m.message)), ['young'], 'the message older than the TTL is not returned, though its stream lives on')
    t.equal(page.top, 2)
    t.ok(await sp.holdsStream(ch), 'the stream itself lives HISTORY_TTL after its last message')

    await waitFor('the stream to expire', () => sp.holdsStream(ch), (held) => !held, { timeoutMs: ttlMs * 2, intervalMs: 50 })
    t.ok(Date.now() - t1 >= ttlMs - 100, `it went HISTORY_TTL after its last message (${Date.now() - t1} ms)`)
    t.same(await a.streams!.position(ch), { offset: 2, epoch: first!.epoch }, 'its meta outlives it: same epoch, same top')
    const [next] = await appendAll(a, ch, ['later'])
    t.same(next, { offset: 3, epoch: first!.epoch }, 'a later message continues the count in the same epoch')
    t.same(labels(await readAll(a, ch)), ['later'])
  })

  t.test('two publishers on one stream: offsets reach subscribers in order, none skipped, none twice', { timeout: 60_000 }, async (t) => {
    const sp = space(t)
    const [p1, p2, sub] = [await sp.backend({ history: H }), await sp.backend({ history: H }), await sp.backend({ history: H })]
    const inbox = new Inbox(sub.broker)
    const ch = userChannel(sp)
    await sub.broker.subscribe(ch)
    const n = 150
    const sent = new Map<string, number>()
    // Issued back to back from both, as two busy nodes do.
    await Promise.all([p1, p2].flatMap((p, who) => range(1, n).map(async (i) => {
      const label = `p${who + 1}-${i}`
      const pos = await p.broker.append({ channel: ch, also: [], draft: event(label) })
      sent.set(label, pos!.offset)
    })))
    const got = await inbox.count(ch, 2 * n)
    t.same(offsets(got), range(1, 2 * n), 'in offset order on pub/sub, consecutive')
    const carried = Object.fromEntries(got.map((m) => [labels([m])[0]!, offsets([m])[0]!]))
    t.same(carried, Object.fromEntries(sent), 'each publisher was told the offset its message carries')
    for (const who of ['p1', 'p2']) {
      const own = labels(got).filter((l) => l.startsWith(`${who}-`))
      t.same(own, range(1, n).map((i) => `${who}-${i}`), `${who}'s messages in the order it issued them`)
    }
    t.same(await readAll(sub, ch), got, 'the stream holds the same, in the same order')
  })

  t.test('appends to many streams issued at once each get their own count, and plain publishes keep their place among them', async (t) => {
    const sp = space(t)
    const [a, b] = [await sp.backend({ history: H }), await sp.backend({ history: H })]
    const inbox = new Inbox(b.broker)
    const chans = range(1, 20).map(() => userChannel(sp))
    for (const ch of chans) await b.broker.subscribe(ch)
    // All issued in one turn: the Redis broker sends them as batches of one script call.
    const issued: Array<Promise<Position | null>> = []
    const plain: Array<Promise<void>> = []
    for (let i = 1; i <= 10; i++) {
      for (const [j, ch] of chans.entries()) {
        issued.push(a.broker.append({ channel: ch, also: [], draft: event(`s${j}-${i}`) }))
        if (i === 5) plain.push(a.broker.publish(ch, `plain-${j}`))
      }
    }
    const positions = await Promise.all(issued)
    await Promise.all(plain)
    for (const [j, ch] of chans.entries()) {
      const got = await inbox.count(ch, 11)
      t.same(got.map((m) => m.startsWith('plain-') ? 'plain' : labels([m])[0]), [...range(1, 5).map((i) => `s${j}-${i}`), 'plain', ...range(6, 10).map((i) => `s${j}-${i}`)], `stream ${j}: in the order issued, the plain publish in its place`)
      t.same(offsets(got.filter((m) => !m.startsWith('plain-'))), range(1, 10), `stream ${j}: 1 to 10`)
      t.same(positions.filter((_p, k) => k % chans.length === j).map((p) => p!.offset), range(1, 10), `stream ${j}: each append told its own offset`)
    }
  })

  t.test('a batch whose events hit the same streams many times: consecutive offsets per stream, each subscriber gets each event once, in order', async (t) => {
    const sp = space(t)
    const [a, b] = [await sp.backend({ history: H }), await sp.backend({ history: H })]
    const inbox = new Inbox(b.broker)
    const [x, y, z] = [userChannel(sp), userChannel(sp), userChannel(sp)]
    const admin = createChannels(sp.keyPrefix).admin
    for (const ch of [x, y, z, admin]) await b.broker.subscribe(ch)
    await appendAll(a, y, ['y0'], [admin])
    // 200 events over three streams, interleaved unevenly, each with the admin copy: on Redis, script calls of several appends per stream.
    const plan = range(1, 200).map((i) => ({ ch: i % 5 === 0 ? z : i % 2 === 0 ? y : x, label: `e${i}` }))
    const positions = await a.broker.appendMany(plan.map((p) => ({ channel: p.ch, also: [admin], draft: event(p.label) })))
    t.ok(positions.every((p) => p !== null && !(p instanceof Error)), 'every append answered with its position')
    for (const [ch, first] of [[x, 1], [y, 2], [z, 1]] as const) {
      const mine = plan.flatMap((p, k) => p.ch === ch ? [{ label: p.label, pos: positions[k] as Position }] : [])
      t.same(mine.map((m) => m.pos.offset), range(first, first + mine.length - 1), 'consecutive offsets, in batch order')
      t.equal(new Set(mine.map((m) => m.pos.epoch)).size, 1, 'in one epoch')
      const got = await inbox.count(ch, mine.length + first - 1)
      t.same(labels(got.slice(first - 1)), mine.map((m) => m.label), 'the subscriber got each once, in order')
      t.same(offsets(got), range(1, mine.length + first - 1), 'positioned as told')
      t.same(await readAll(b, ch), got, 'the stream holds what went out')
      t.same(await b.streams!.position(ch), { offset: mine.length + first - 1, epoch: mine[0]!.pos.epoch }, 'the top is the last one')
    }
    const onAdmin = await inbox.count(admin, 201)
    t.same(labels(onAdmin), ['y0', ...plan.map((p) => p.label)], 'the admin channel got each once, in batch order')
    t.equal(onAdmin.length, 201, 'and nothing twice')
  })

  t.test('a batch longer than HISTORY_SIZE on one stream: the latest HISTORY_SIZE are read back', async (t) => {
    const sp = space(t)
    const a = await sp.backend({ history: { size: 5, ttlMs: 60_000 } })
    const ch = userChannel(sp)
    for (const round of [1, 2, 3]) {
      const positions = await a.broker.appendMany(range(1, 40).map((i) => ({ channel: ch, also: [], draft: event(`r${round}-${i}`) })))
      t.same(positions.map((p) => (p as Position).offset), range(40 * round - 39, 40 * round), `round ${round}: 40 consecutive offsets`)
      const page = await a.streams!.read(ch, 0, 100)
      t.same(page.messages.map((m) => m.offset), range(40 * round - 4, 40 * round), 'the 5 latest, none older')
      t.same(labels(page.messages.map((m) => m.message)), range(36, 40).map((i) => `r${round}-${i}`))
      t.same((await a.streams!.read(ch, 40 * round - 2, 100)).messages.map((m) => m.offset), [40 * round - 1, 40 * round], 'from within them')
    }
  })

  t.test('a subscriber never receives offset N before N can be read back', { timeout: 60_000 }, async (t) => {
    const sp = space(t)
    const [pub, sub] = [await sp.backend({ history: H }), await sp.backend({ history: H })]
    const ch = userChannel(sp)
    const checks: Array<Promise<string>> = []
    // The read is issued the moment the message arrives.
    const inbox = new Inbox(sub.broker, (channel, message) => {
      if (channel !== ch) return
      const offset = decode(message)!.offset!
      checks.push(sub.streams!.read(ch, offset - 1, 1).then((p) => p.messages[0]?.offset === offset && p.messages[0].message === message ? 'readable' : `offset ${offset} not readable: ${JSON.stringify(p)}`))
    })
    await sub.broker.subscribe(ch)
    const n = 300
    await Promise.all(range(1, n).map(async (i) => await pub.broker.append({ channel: ch, also: [], draft: event(`m${i}`) })))
    await inbox.count(ch, n)
    const results = await Promise.all(checks)
    t.same(results.filter((r) => r !== 'readable'), [], `all ${n} were readable when they arrived`)
  })

  t.test('with history off there is nothing to append to or read', async (t) => {
    const sp = space(t)
    const a = await sp.backend()
    t.equal(a.streams, null, 'no streams capability')
    t.equal(a.broker.history, null)
    await t.rejects(a.broker.append({ channel: userChannel(sp), also: [], draft: event('x') }), /history is off/)
  })

  if (kind === 'redis') {
    t.test('a stream holding offsets its meta has not reached starts a new epoch instead of failing every append', async (t) => {
      const sp = space(t)
      const a = await sp.backend({ history: H })
      const ch = userChannel(sp)
      const [p] = await appendAll(a, ch, ['a', 'b', 'c'])
      // The meta rewritten apart from its stream (restored from an older snapshot, say): its top is behind the stream's.
      await sp.redis!.client().hset(`${ch}:m`, 's', '1')
      const [q] = await appendAll(a, ch, ['d'])
      t.not(q!.epoch, p!.epoch, 'a new epoch')
      t.equal(q!.offset, 1)
      t.same(labels(await readAll(a, ch)), ['d'], 'holding only what was appended in it')
    })

    t.test('a stream whose meta is behind, hit several times in one batch: one new epoch, its appends 1, 2, 3', async (t) => {
      const sp = space(t)
      const a = await sp.backend({ history: H })
      const [ch, other] = [userChannel(sp), userChannel(sp)]
      const [p] = await appendAll(a, ch, ['a', 'b', 'c'])
      await sp.redis!.client().hset(`${ch}:m`, 's', '1')
      const got = await a.broker.appendMany(['d', 'o1', 'e', 'f', 'o2'].map((l) => ({ channel: l.startsWith('o') ? other : ch, also: [], draft: event(l) }))) as Position[]
      const mine = [got[0]!, got[2]!, got[3]!]
      t.same(mine.map((q) => q.offset), [1, 2, 3], 'offsets from 1 in the new epoch')
      t.equal(new Set(mine.map((q) => q.epoch)).size, 1, 'one new epoch for them all')
      t.not(mine[0]!.epoch, p!.epoch, 'not the old one')
      t.same([got[1]!.offset, got[4]!.offset], [1, 2], 'the other stream unaffected')
      t.same(labels(await readAll(a, ch)), ['d', 'e', 'f'], 'holding only what was appended in it')
      t.same(await a.streams!.position(ch), { offset: 3, epoch: mine[0]!.epoch }, 'its top')
    })

    t.test('appends held through a paused Redis get their positions in publish order when it resumes', { timeout: 30_000 }, async (t) => {
      const sp = space(t)
      const [a, b] = [await sp.backend({ history: H, replayDelayMs: 200 }), await sp.backend({ history: H })]
      const inbox = new Inbox(b.broker)
      const ch = userChannel(sp)
      await b.broker.subscribe(ch)
      const [p1] = await appendAll(a, ch, ['before-1', 'before-2'])
      sp.redis!.pause()
      t.teardown(() => sp.redis!.resume())
      const held = range(1, 5).map((i) => a.broker.append({ channel: ch, also: [], draft: event(`held-${i}`) }))
      t.same(await within(3000, 'the held appends to be answered', Promise.all(held)), [null, null, null, null, null], 'answered as held (no position yet) within the publish deadline')
      sp.redis!.resume()
      const got = await inbox.count(ch, 7)
      t.same(labels(got), ['before-1', 'before-2', 'held-1', 'held-2', 'held-3', 'held-4', 'held-5'], 'in publish order')
      t.same(offsets(got), range(1, 7), 'their offsets continue the stream')
      t.ok(got.every((m) => decode(m)!.epoch === p1!.epoch), 'in the same epoch')
      t.same(await readAll(b, ch), got, 'and the stream holds them')
    })

    t.test('appends held through a Redis restarted empty get a new epoch, in publish order', { timeout: 30_000 }, async (t) => {
      const sp = space(t)
      const [a, b] = [await sp.backend({ history: H, replayDelayMs: 500 }), await sp.backend({ history: H })]
      const inbox = new Inbox(b.broker)
      const ch = userChannel(sp)
      await b.broker.subscribe(ch)
      const [p1] = await appendAll(a, ch, ['before-1', 'before-2'])
      await inbox.count(ch, 2)
      await sp.redis!.kill()
      await waitFor('the outage noticed', () => a.broker.healthy, (h) => !h, { timeoutMs: 3000 })
      const held = await Promise.all(range(1, 5).map(async (i) => await a.broker.append({ channel: ch, also: [], draft: event(`held-${i}`) })))
      t.same(held, [null, null, null, null, null], 'held while Redis is away')
      await sp.redis!.restart()
      const got = (await inbox.count(ch, 7, 15_000)).slice(2)
      t.same(labels(got), ['held-1', 'held-2', 'held-3', 'held-4', 'held-5'], 'replayed in publish order')
      t.same(offsets(got), range(1, 5), 'counting from 1')
      const epochs = new Set(got.map((m) => decode(m)!.epoch))
      t.equal(epochs.size, 1)
      t.not([...epochs][0], p1!.epoch, 'in a new epoch: the history they would have followed is gone')
      t.same(await readAll(b, ch), got, 'the stream holds them, and nothing of before')
    })
  }
})
