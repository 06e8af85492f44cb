// The webhook store's contract (src/backend/webhooks.ts) on memory, a
// standalone Redis and a Redis Cluster (test/helpers/backends.ts): several
// backends on one space stand for nodes, each claiming as its own consumer.
// What the dispatcher relies on is asserted here: endpoints and their
// version; a job claimed by one node is nobody else's until settled, taken
// over (a dead node's, or a lapsed lease) or handed back; retries wait until
// due; dead letters list and replay; disabling buries what is queued; the
// breaker opens, lets one probe through, and recovers; jobs enqueued through
// the broker (as a publish does) wake the nodes.
import t from 'tap'
import type { Backend } from '../../src/backend/backend.js'
import { breakerStep, closedBreaker, jobJson, webhookIdOf, webhookKeys, ATTEMPT_LOG, type AttemptRecord, type BreakerConfig, type ClaimedJob, type EndpointRecord, type Enqueue } from '../../src/backend/webhooks.js'
import { MAX_READ_BYTES } from '../../src/backend/page-bytes.js'
import { createChannels } from '../../src/cluster/channels.js'
import { draft } from '../../src/events/codec.js'
import { forEachBackend } from '../helpers/backends.js'
import { waitFor } from '../helpers/wait.js'

const BREAKER: BreakerConfig = { windowMs: 60_000, minAttempts: 4, failureRatio: 0.5, cooldownMs: 200, maxCooldownMs: 1000 }

let seq = 0
const endpoint = (over: Partial<EndpointRecord> = {}): EndpointRecord => {
  const now = Date.now()
  return { id: `ep${process.pid}_${++seq}`, url: 'https://example.com/hook', eventTypes: ['authentication.*'], secrets: [{ secret: 'whsec_' + Buffer.alloc(24, 1).toString('base64'), expiresAt: null }], enabled: true, createdAt: now, updatedAt: now, ...over }
}

const job = (endpointId: string, n: number): Enqueue => {
  const eventId = `ev${seq}-${n}`
  const webhookId = webhookIdOf(eventId, endpointId)
  return { endpointId, webhookId, job: jobJson({ webhookId, endpointId, eventId, type: 'authentication.login.success', firstAt: Date.now(), body: JSON.stringify({ id: eventId, n }) }) }
}

const attempt = (c: ClaimedJob, outcome = 'server_error'): AttemptRecord =>
  ({ webhookId: c.job.webhookId, eventId: c.job.eventId, attempt: c.attempts + 1, at: Date.now(), durationMs: 1, outcome, serverId: 'test' })

const bodies = (jobs: readonly ClaimedJob[]): number[] => jobs.map((j) => (JSON.parse(j.job.body) as { n: number }).n).sort((a, b) => a - b)

/** Two backends on one space: two nodes. */
async function nodes (space: { backend: () => Promise<Backend> }, _n: number): Promise<[Backend, Backend]> {
  return [await space.backend(), await space.backend()]
}

forEachBackend(t, (t, space) => {
  t.test('endpoints: create, update, upsert, a bound, a version that moves, remove', async (t) => {
    const sp = space(t)
    const [a, b] = await nodes(sp, 2)
    const v0 = await b.webhooks.version()
    const e = endpoint({ description: 'chat bot' })
    t.ok(await a.webhooks.save(e, 'create', 1000), 'created')
    t.notOk(await a.webhooks.save(e, 'create', 1000), 'created twice: refused')
    t.ok(await b.webhooks.version() > v0, 'the version moved, for every node')
    t.same(await b.webhooks.endpoint(e.id), e, 'another node reads it back as stored')
    t.notOk(await a.webhooks.save(endpoint(), 'create', (await a.webhooks.endpoints()).length), 'past the bound: refused')
    t.notOk(await a.webhooks.save(endpoint(), 'update', 1000), 'updating one that does not exist: refused')
    const changed = { ...e, url: 'https://example.com/other', updatedAt: e.updatedAt + 1 }
    const v1 = await b.webhooks.version()
    t.ok(await a.webhooks.save(changed, 'update', 1000))
    t.ok(await b.webhooks.version() > v1)
    t.same((await b.webhooks.endpoints()).find((x) => x.id === e.id), changed)
    const off = { ...changed, enabled: false, disabledReason: 'operator' }
    t.ok(await a.webhooks.save(off, 'upsert', 1000))
    t.same(await b.webhooks.endpoint(e.id), off, 'disabled, with why')
    t.ok(await a.webhooks.remove(e.id))
    t.notOk(await a.webhooks.remove(e.id), 'removed twice: false')
    t.equal(await b.webhooks.endpoint(e.id), null)
  })

  t.test('a claimed job is its node\'s alone; settled, it leaves the queue; jobs of a disabled endpoint are dropped', async (t) => {
    const sp = space(t)
    const [a, b] = await nodes(sp, 2)
    const e = endpoint()
    const off = endpoint({ enabled: false, disabledReason: 'operator' })
    await a.webhooks.save(e, 'create', 1000)
    await a.webhooks.save(off, 'create', 1000)
    t.equal(await a.webhooks.enqueue([job(e.id, 1), job(e.id, 2), job(e.id, 3), job(off.id, 9)], Date.now()), 3, 'three taken, the disabled endpoint\'s dropped')
    t.same((await b.webhooks.stats([e.id, off.id])).get(e.id)!.depth, 3)
    const mine = await a.webhooks.claim('node-a', [{ endpointId: e.id, count: 2 }, { endpointId: off.id, count: 5 }])
    t.same(bodies(mine), [1, 2], 'the first two, in order')
    const theirs = await b.webhooks.claim('node-b', [{ endpointId: e.id, count: 5 }])
    t.same(bodies(theirs), [3], 'another node gets only what nobody claimed')
    t.same(await b.webhooks.claim('node-b', [{ endpointId: e.id, count: 5 }]), [], 'then nothing')
    const changes = await a.webhooks.settle(mine.map((c) => ({ kind: 'delivered' as const, claimed: c, attempt: attempt(c, 'success') })), Date.now(), BREAKER)
    t.same(changes, [])
    const s = (await b.webhooks.stats([e.id])).get(e.id)!
    t.equal(s.depth, 1, 'one left undelivered (claimed by b)')
    t.ok(s.oldestAt !== null && s.oldestAt <= Date.now(), 'with its age')
    t.same((await a.webhooks.settle(mine.map((c) => ({ kind: 'retry' as const, claimed: c, dueAt: 0, attempt: attempt(c) })), Date.now(), BREAKER)), [], 'settling again changes nothing')
    t.equal(await a.webhooks.promote([e.id], Date.now()), 0, 'and schedules no retry')
    t.same((await a.webhooks.attempts(e.id, 10)).map((x) => x.outcome), ['success', 'success'], 'the attempts are logged, newest first')
  })

  t.test('a retry waits until due, then is ready again with its attempts counted; handed back, a job is ready at once', async (t) => {
    const sp = space(t)
    const [a, b] = await nodes(sp, 2)
    const e = endpoint()
    await a.webhooks.save(e, 'create', 1000)
    await a.webhooks.enqueue([job(e.id, 1), job(e.id, 2)], Date.now())
    const [one, two] = await a.webhooks.claim('node-a', [{ endpointId: e.id, count: 2 }])
    const due = Date.now() + 300
    await a.webhooks.settle([{ kind: 'retry', claimed: one!, dueAt: due, attempt: attempt(one!) }, { kind: 'release', claimed: two! }], Date.now(), BREAKER)
    const released = await b.webhooks.claim('node-b', [{ endpointId: e.id, count: 5 }])
    t.same(released.map((c) => [bodies([c])[0], c.attempts]), [[2, 0]], 'the handed back job is ready at once, its attempts unchanged')
    t.equal(await b.webhooks.promote([e.id], due - 100), 0, 'not due yet: stays')
    t.same(await b.webhooks.claim('node-b', [{ endpointId: e.id, count: 5 }]), [])
    t.equal((await b.webhooks.stats([e.id])).get(e.id)!.depth, 2, 'both still undelivered')
    t.equal(await b.webhooks.promote([e.id], due), 1, 'due: moved back')
    const again = await b.webhooks.claim('node-b', [{ endpointId: e.id, count: 5 }])
    t.same(again.map((c) => [bodies([c])[0], c.attempts, c.job.webhookId]), [[1, 1, one!.job.webhookId]], 'with one attempt made, the same webhook-id')
  })

  t.test('dead letters: listed newest first, replayed with attempts from 0; disabling buries the queue', async (t) => {
    const sp = space(t)
    const [a, b] = await nodes(sp, 2)
    const e = endpoint()
    await a.webhooks.save(e, 'create', 1000)
    await a.webhooks.enqueue([job(e.id, 1), job(e.id, 2), job(e.id, 3), job(e.id, 4)], Date.now())
    const [one, two, three] = await a.webhooks.claim('node-a', [{ endpointId: e.id, count: 3 }])
    await a.webhooks.settle([
      { kind: 'dead', claimed: { ...one!, attempts: 7 }, reason: 'exhausted', attempt: attempt(one!) },
      { kind: 'dead', claimed: two!, reason: 'gone', attempt: attempt(two!, 'gone') },
      { kind: 'retry', claimed: three!, dueAt: Date.now() + 60_000, attempt: attempt(three!) },
    ], Date.now(), BREAKER)
    const dead = (await b.webhooks.deadLetters(e.id, 0, 10)).deadLetters
    t.match(dead.map((d) => [d.reason, d.attempts, JSON.parse(d.body).n]).sort((x, y) => x[2] - y[2]), [['exhausted', 8, 1], ['gone', 1, 2]])
    t.equal((await b.webhooks.stats([e.id])).get(e.id)!.depth, 2, 'dead letters are not queued: the retry and the fourth are')

    t.equal(await b.webhooks.replay(e.id, [one!.job.webhookId], 1000, Date.now()), 1, 'one replayed by its webhook-id')
    const replayed = await b.webhooks.claim('node-b', [{ endpointId: e.id, count: 5 }])
    t.same(replayed.map((c) => [bodies([c])[0], c.attempts, c.job.webhookId]).sort(), [[1, 0, one!.job.webhookId], [4, 0, replayed.find((c) => bodies([c])[0] === 4)!.job.webhookId]], 'ready again, attempts from 0, the same webhook-id')
    t.same((await b.webhooks.deadLetters(e.id, 0, 10)).deadLetters.map((d) => d.reason), ['gone'])

    const v = await b.webhooks.version()
    t.ok(await a.webhooks.disable(e.id, 'gone', Date.now()), 'disabled')
    t.notOk(await a.webhooks.disable(e.id, 'gone', Date.now()), 'disabled already: false')
    t.ok(await b.webhooks.version() > v, 'the version moved')
    t.match(await b.webhooks.endpoint(e.id), { enabled: false, disabledReason: 'gone' })
    const buried = (await b.webhooks.deadLetters(e.id, 0, 10)).deadLetters
    t.same(buried.filter((d) => d.reason === 'disabled').map((d) => JSON.parse(d.body).n).sort(), [1, 3, 4], 'what was queued, claimed or waiting for a retry is a dead letter now')
    t.equal((await b.webhooks.stats([e.id])).get(e.id)!.depth, 0, 'nothing queued')
    t.same(await b.webhooks.settle(replayed.map((c) => ({ kind: 'delivered' as const, claimed: c, attempt: attempt(c, 'success') })), Date.now(), BREAKER), [], 'a late settlement of a buried job changes nothing')
    t.equal(await b.webhooks.enqueue([job(e.id, 5)], Date.now()), 0, 'a disabled endpoint takes no job')
    t.equal(await b.webhooks.replay(e.id, null, 1000, Date.now()), 4, 'all replayed while disabled')
    t.same(await b.webhooks.claim('node-b', [{ endpointId: e.id, count: 10 }]).then((x) => x.length), 4, 'they wait in the queue (a node reads it once enabled)')
  })

  t.test('a dead node\'s claims, and claims past their lease, are taken over', async (t) => {
    const sp = space(t)
    const [a, b] = await nodes(sp, 2)
    const e = endpoint()
    await a.webhooks.save(e, 'create', 1000)
    await a.webhooks.enqueue([job(e.id, 1), job(e.id, 2), job(e.id, 3)], Date.now())
    const dead = await a.webhooks.claim('node-dead', [{ endpointId: e.id, count: 2 }])
    const live = await a.webhooks.claim('node-live', [{ endpointId: e.id, count: 1 }])
    t.same(await b.webhooks.takeOver('node-b', [e.id], null, 60_000), [], 'nothing past a long lease')
    const taken = await b.webhooks.takeOver('node-b', [e.id], 'node-dead', 0)
    t.same(bodies(taken), bodies(dead), 'the dead node\'s claims, and only its')
    t.same(taken.map((c) => c.job.webhookId).sort(), dead.map((c) => c.job.webhookId).sort(), 'with their webhook-ids')
    await new Promise((resolve) => setTimeout(resolve, 150))
    const lapsed = await b.webhooks.takeOver('node-c', [e.id], null, 100)
    t.same(bodies(lapsed).sort(), [1, 2, 3], 'claims idle longer than the lease go to whoever sweeps')
    t.same(await a.webhooks.settle(live.map((c) => ({ kind: 'delivered' as const, claimed: c, attempt: attempt(c, 'success') })), Date.now(), BREAKER), [], 'the slow node still settles its own')
    t.equal((await b.webhooks.stats([e.id])).get(e.id)!.depth, 2)
  })

  t.test('the breaker opens on failures, lets one probe through after its cool-down, and closes on its success', async (t) => {
    const sp = space(t)
    const [a, b] = await nodes(sp, 2)
    const e = endpoint()
    await a.webhooks.save(e, 'create', 1000)
    await a.webhooks.enqueue([1, 2, 3, 4, 5, 6].map((n) => job(e.id, n)), Date.now())
    const claimed = await a.webhooks.claim('node-a', [{ endpointId: e.id, count: 6 }])
    const ok = await a.webhooks.settle([{ kind: 'delivered', claimed: claimed[0]!, attempt: attempt(claimed[0]!, 'success') }], Date.now(), BREAKER)
    t.same(ok, [])
    const changes = await a.webhooks.settle(claimed.slice(1, 4).map((c) => ({ kind: 'retry' as const, claimed: c, dueAt: Date.now() + 60_000, attempt: attempt(c) })), Date.now(), BREAKER)
    t.same(changes, [{ endpointId: e.id, change: 'opened' }], 'three of four failed: opened, reported once')
    const opened = (await b.webhooks.breakers()).get(e.id)!
    t.equal(opened.phase, 'open', 'every node sees it open')
    t.ok(opened.until > Date.now() + 100, 'for its cool-down')
    t.notOk(await b.webhooks.probe(e.id, Date.now(), 5000), 'no probe during the cool-down')
    t.same(await a.webhooks.settle([{ kind: 'retry', claimed: claimed[4]!, dueAt: 0, attempt: attempt(claimed[4]!) }], Date.now(), BREAKER), [], 'a late failure while open changes nothing')
    await waitFor('the cool-down to end', () => Date.now() >= opened.until, Boolean, { timeoutMs: 3000 })
    const probes = await Promise.all([a.webhooks.probe(e.id, Date.now(), 5000), b.webhooks.probe(e.id, Date.now(), 5000)])
    t.same(probes.filter(Boolean).length, 1, 'exactly one node may probe')
    t.equal((await a.webhooks.breakers()).get(e.id)!.phase, 'half-open')
    const failed = await a.webhooks.settle([{ kind: 'retry', claimed: claimed[5]!, dueAt: Date.now() + 60_000, attempt: attempt(claimed[5]!) }], Date.now(), BREAKER)
    t.same(failed, [{ endpointId: e.id, change: 'opened' }], 'the probe failed: open again')
    const again = (await b.webhooks.breakers()).get(e.id)!
    t.equal(again.cooldownMs, 400, 'for twice as long')
    await waitFor('the second cool-down', () => Date.now() >= again.until, Boolean, { timeoutMs: 3000 })
    t.ok(await b.webhooks.probe(e.id, Date.now(), 5000))
    await b.webhooks.promote([e.id], Date.now() + 120_000)
    const probe = await b.webhooks.claim('node-b', [{ endpointId: e.id, count: 1 }])
    t.same(await b.webhooks.settle([{ kind: 'delivered', claimed: probe[0]!, attempt: attempt(probe[0]!, 'success') }], Date.now(), BREAKER), [{ endpointId: e.id, change: 'recovered' }], 'the probe succeeded: recovered')
    t.equal((await a.webhooks.breakers()).get(e.id)!.phase, 'closed')

    // Enabled again after being disabled: its first success is a recovery too.
    await a.webhooks.disable(e.id, 'gone', Date.now())
    await a.webhooks.save({ ...e, enabled: true }, 'update', 1000)
    await a.webhooks.enqueue([job(e.id, 7)], Date.now())
    const [seven] = await a.webhooks.claim('node-a', [{ endpointId: e.id, count: 1 }])
    t.same(await a.webhooks.settle([{ kind: 'delivered', claimed: seven!, attempt: attempt(seven!, 'success') }], Date.now(), BREAKER), [{ endpointId: e.id, change: 'recovered' }], 'the first success after re-enabling is reported')
  })

  t.test('dead letters come in pages: by count, and by the bytes of their payloads; next says where the following page starts', async (t) => {
    const sp = space(t)
    const [a, b] = await nodes(sp, 2)
    const e = endpoint()
    await a.webhooks.save(e, 'create', 1000)
    // 40 jobs whose payloads are about 60 KB (a 64 KiB event's worth): 2.4 MB in all.
    const pad = 'x'.repeat(60_000)
    const heavy = Array.from({ length: 40 }, (_v, n) => {
      const j = job(e.id, n)
      const record = JSON.parse(j.job) as { body: string }
      return { ...j, job: JSON.stringify({ ...record, body: JSON.stringify({ n, pad }) }) }
    })
    await a.webhooks.enqueue(heavy, Date.now())
    const claimed = await a.webhooks.claim('node-a', [{ endpointId: e.id, count: 40 }])
    await a.webhooks.settle(claimed.map((c) => ({ kind: 'dead' as const, claimed: c, reason: 'exhausted' as const, attempt: attempt(c) })), Date.now(), { ...BREAKER, minAttempts: 1000 })
    const pages: Array<{ n: number, next: number | null }> = []
    const seen: number[] = []
    for (let from: number | null = 0, i = 0; from !== null && i < 10; i++) {
      const p = await b.webhooks.deadLetters(e.id, from, 1000)
      pages.push({ n: p.deadLetters.length, next: p.next })
      seen.push(...p.deadLetters.map((d) => (JSON.parse(d.body) as { n: number }).n))
      from = p.next
    }
    const size = Buffer.byteLength(heavy[0]!.job)
    const perPage = Math.ceil(MAX_READ_BYTES / size)
    t.same(pages, [{ n: perPage, next: perPage }, { n: perPage, next: 2 * perPage }, { n: 40 - 2 * perPage, next: null }], `pages of ${perPage} (jobs of ${size} bytes), not one of 40`)
    t.same([...seen].sort((x, y) => x - y), Array.from({ length: 40 }, (_v, n) => n), 'each dead letter once across the pages')
    const byCount = await b.webhooks.deadLetters(e.id, 0, 5)
    t.same([byCount.deadLetters.length, byCount.next], [5, 5], 'a limit below the bound is the limit, with a next')
    const last = await b.webhooks.deadLetters(e.id, 35, 5)
    t.same([last.deadLetters.length, last.next], [5, null], 'the last five: no next')
    t.same(await b.webhooks.deadLetters(e.id, 40, 5), { deadLetters: [], next: null }, 'past the end: nothing')
  })

  t.test('the attempt log keeps the latest; removing an endpoint removes everything of it', async (t) => {
    const sp = space(t)
    const [a] = await nodes(sp, 1)
    const e = endpoint()
    await a.webhooks.save(e, 'create', 1000)
    await a.webhooks.enqueue(Array.from({ length: ATTEMPT_LOG + 5 }, (_v, i) => job(e.id, i)), Date.now())
    const all = await a.webhooks.claim('node-a', [{ endpointId: e.id, count: 100 }])
    await a.webhooks.settle(all.map((c) => ({ kind: 'dead' as const, claimed: c, reason: 'exhausted' as const, attempt: attempt(c) })), Date.now(), { ...BREAKER, minAttempts: 1000 })
    t.equal((await a.webhooks.attempts(e.id, 1000)).length, ATTEMPT_LOG, `the latest ${ATTEMPT_LOG}`)
    t.equal((await a.webhooks.deadLetters(e.id, 0, 1000)).deadLetters.length, ATTEMPT_LOG + 5)
    await a.webhooks.remove(e.id)
    await a.webhooks.save(e, 'create', 1000)
    t.same([await a.webhooks.attempts(e.id, 10), await a.webhooks.deadLetters(e.id, 0, 10), (await a.webhooks.stats([e.id])).get(e.id)], [[], { deadLetters: [], next: null }, { depth: 0, oldestAt: null }], 'made again under its id: nothing of the old one')
  })

  t.test('jobs enqueued with a publish (through the broker) are queued and wake the nodes', async (t) => {
    const sp = space(t)
    const history = { size: 100, ttlMs: 60_000 }
    const [a, b] = [await sp.backend({ history }), await sp.backend({ history })]
    const e = endpoint()
    await a.webhooks.save(e, 'create', 1000)
    let woken = 0
    const wake = webhookKeys(sp.keyPrefix).wake
    b.broker.onMessage((channel) => { if (channel === wake) woken++ })
    await b.broker.subscribe(wake)
    const channel = createChannels(sp.keyPrefix).user(`wh-${process.pid}-${++seq}`)
    const d = draft({ kind: 'e', origin: '', publishedAt: Date.now(), type: 'authentication.login.success', userId: 'u', stream: 'user:u', json: JSON.stringify({ id: 'e1', type: 'authentication.login.success', stream: 'user:u' }) })
    const position = await a.broker.append({ channel, also: [], draft: d, webhooks: { eventId: 'e1', type: 'authentication.login.success', at: Date.now(), endpoints: [e.id] } })
    t.ok(position !== null)
    await a.broker.publish(createChannels(sp.keyPrefix).admin, 'x', { fanout: { eventId: 'e2', type: 'admin.x', at: Date.now(), endpoints: [e.id] }, body: '{"id":"e2"}' })
    await waitFor('a wake-up', () => woken, (n) => n > 0)
    const got = await b.webhooks.claim('node-b', [{ endpointId: e.id, count: 10 }])
    t.same(got.map((c) => [c.job.webhookId, JSON.parse(c.job.body)]), [
      [webhookIdOf('e1', e.id), { id: 'e1', type: 'authentication.login.success', stream: 'user:u', offset: position!.offset, epoch: position!.epoch }],
      [webhookIdOf('e2', e.id), { id: 'e2' }],
    ], 'the appended one with its position, as clients receive it; then the plain one')
  })
})

t.test('the breaker step (what the Lua script spells the same)', async (t) => {
  let b = closedBreaker(0)
  const step = (ok: boolean, now: number): string | null => { const r = breakerStep(b, ok, now, BREAKER); b = r.state; return r.change }
  t.same([step(false, 1), step(false, 2), step(true, 3)], [null, null, null], 'below the minimum of attempts: closed')
  t.equal(step(false, 4), 'opened', 'three of four failed')
  t.same([b.phase, b.until], ['open', 204])
  b = closedBreaker(0)
  t.same([step(false, 1), step(false, 2), step(false, 3), step(false, 60_001)], [null, null, null, null], 'a new window starts the count again')
})
