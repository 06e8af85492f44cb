import t from 'tap'
import { atMost, inTime } from '../../src/backend/deadline.js'

// The two bounds every backend wait goes through: what they give, when, and
// that they leave no timer behind (one left would hold a stopping node up).

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length
const never = new Promise<never>(() => {})

t.test('inTime gives what the work resolves with, and leaves no timer', async (t) => {
  const before = timers()
  t.equal(await inTime(Promise.resolve(7), 60_000, () => new Error('late')), 7)
  t.equal(timers(), before, 'the deadline timer is cleared')
})

t.test("inTime passes the work's own failure on, and leaves no timer", async (t) => {
  const before = timers()
  await t.rejects(inTime(Promise.reject(new Error('refused')), 60_000, () => new Error('late')), { message: 'refused' })
  t.equal(timers(), before)
})

t.test('inTime rejects with what late() makes once the time is up', async (t) => {
  const before = timers()
  const started = Date.now()
  await t.rejects(inTime(never, 50, () => new Error('the backend did not answer')), { message: 'the backend did not answer' })
  t.ok(Date.now() - started >= 45, 'not before the deadline')
  t.equal(timers(), before)
})

t.test('a failure of the work after the deadline reaches no one (no unhandled rejection)', async (t) => {
  const unhandled: unknown[] = []
  const onUnhandled = (reason: unknown): void => { unhandled.push(reason) }
  process.on('unhandledRejection', onUnhandled)
  t.teardown(() => { process.off('unhandledRejection', onUnhandled) })
  let fail!: (err: Error) => void
  const work = new Promise<never>((_resolve, reject) => { fail = reject })
  await t.rejects(inTime(work, 20, () => new Error('late')), { message: 'late' })
  fail(new Error('too late to matter'))
  // Node reports unhandled rejections after the microtasks of the turn they happen in.
  await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setImmediate(resolve))
  t.same(unhandled, [])
})

t.test('atMost waits for the work, or the time, whichever comes first, and never throws', async (t) => {
  const before = timers()
  let done = false
  await atMost(new Promise((resolve) => setTimeout(() => { done = true; resolve(1) }, 10)), 60_000)
  t.ok(done, 'the work settled first: waited for it')
  t.equal(timers(), before, 'and the bound is cleared')
  await atMost(Promise.reject(new Error('refused')), 60_000)
  t.pass('a failure of the work is swallowed')
  const started = Date.now()
  await atMost(never, 50)
  t.ok(Date.now() - started >= 45, 'work that never settles: the time')
  t.equal(timers(), before)
})
