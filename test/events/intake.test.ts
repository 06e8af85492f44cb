// The latency policy of src/events/intake.ts: how much delivery work one
// event-loop turn does before what is left waits for the next. Driven on a
// clock that advances 1 ms per delivery, so the slice's length is counted in
// deliveries, exactly, whatever the machine's load.
import t, { type Test } from 'tap'
import type { Envelope } from '../../src/events/codec.js'
import { CALM_INPUT_BYTES, Intake, MAX_SLICE_MS, SLICE_MS } from '../../src/events/intake.js'

const env = { json: '{}' } as unknown as Envelope
const turn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

/**
 * Deliveries per turn: the first entry those of the turn the `count`
 * messages are offered in, up to its check phase; each next one a check
 * phase (the backlog's slice), until nothing waits. The turn's writes would
 * come after its check phase (turn-writes.ts), so an entry and the one
 * after it share a turn only for the first.
 */
async function slices (t: Test, writeMs: number, message: Envelope = env, count = 300): Promise<number[]> {
  let clock = 1_000_000
  const real = performance.now
  performance.now = () => clock
  t.teardown(() => { performance.now = real })
  let delivered = 0
  const intake = new Intake(() => { delivered++; clock += 1 }, () => {}, () => writeMs)
  for (let i = 0; i < count; i++) intake.offer('c', message)
  const per = [delivered]
  for (let i = 0; i < 50 && intake.waiting > 0; i++) {
    const before = delivered
    await turn()
    per.push(delivered - before)
  }
  performance.now = real
  return per
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0)

t.test('with a modest input, a slice lasts as long as the last turn\'s writes took, within SLICE_MS..MAX_SLICE_MS', async (t) => {
  t.equal((await slices(t, 0))[0], SLICE_MS, 'no writes: SLICE_MS of deliveries, then the turn yields')
  t.equal((await slices(t, 5))[0], SLICE_MS, 'short writes: still SLICE_MS')
  t.equal((await slices(t, 45))[0], 45, 'writes of 45 ms: 45 ms of deliveries, half the turn each')
  t.equal((await slices(t, 10_000))[0], MAX_SLICE_MS, 'however long the writes, at most MAX_SLICE_MS: a turn stays bounded')
  const behind = await slices(t, 45)
  t.equal(behind[1], 0, 'the slice used up, its turn delivers nothing more before its writes')
  t.equal(behind[2], 45, 'once messages wait behind a modest input, the backlog\'s slices follow the writes too: a short slice against long writes would deliver a fraction of each turn and fall further behind')
  t.equal(sum(behind), 300, 'what waited is delivered in the next turns, none shed')
  const capped = await slices(t, 10_000)
  t.same(capped.slice(0, 3), [MAX_SLICE_MS, 0, MAX_SLICE_MS], 'and at most MAX_SLICE_MS a turn, the first turn\'s check phase included')
})

t.test('after a turn with a flood of input, slices are SLICE_MS: a flooded node turns over fast, to keep reading Redis', async (t) => {
  let clock = 1_000_000
  const real = performance.now
  performance.now = () => clock
  t.teardown(() => { performance.now = real })
  let delivered = 0
  const intake = new Intake(() => { delivered++; clock += 1 }, () => {}, () => 45)
  const big = { json: 'x'.repeat(Math.ceil(CALM_INPUT_BYTES / 30)) } as unknown as Envelope
  for (let i = 0; i < 40; i++) intake.offer('c', big)
  t.equal(delivered, 40, 'a turn of 40 large messages, all delivered within its long slice: nothing waits')
  await turn()
  for (let i = 0; i < 100; i++) intake.offer('c', env)
  t.equal(delivered - 40, SLICE_MS, 'the next turn\'s slice is SLICE_MS: the last turn\'s input was past CALM_INPUT_BYTES')
  for (let i = 0; i < 50 && intake.waiting > 0; i++) await turn()
  await turn()
  for (let i = 0; i < 100; i++) intake.offer('c', env)
  t.equal(delivered - 140, 45, 'once the input is modest again, slices follow the writes again')
  performance.now = real
})

t.test('a backlog behind a flood is worked through in SLICE_MS slices: the turns stay short, to keep reading Redis', async (t) => {
  const big = { json: 'x'.repeat(Math.ceil(CALM_INPUT_BYTES / 30)) } as unknown as Envelope
  const per = await slices(t, 45, big, 100)
  t.equal(per[0], 45, 'the turn the flood began: a slice as long as the writes (the input before it was modest)')
  t.equal(per[1], 0, 'nothing more before that turn\'s writes')
  t.equal(per[2], SLICE_MS, 'the backlog\'s next slice is SLICE_MS: that turn\'s input was past CALM_INPUT_BYTES')
  t.equal(sum(per), 100, 'and all of it delivered, none shed')
})
