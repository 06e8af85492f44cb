// The latency policy of src/events/intake.ts: how much delivery work one
// event-loop turn does before what is left waits for the next. Driven on a
// clock that advances 1 ms per delivery, so the slice's length is counted in
// deliveries, exactly, whatever the machine's load.
import t, { type Test } from 'tap'
import type { Envelope } from '../../src/events/codec.js'
import { Intake, MAX_SLICE_MS, SLICE_MS } from '../../src/events/intake.js'

const env = { json: '{}' } as unknown as Envelope
const turn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))

async function firstSlice (t: Test, writeMs: number): Promise<{ first: number, all: number }> {
  let clock = 1_000_000
  const real = performance.now
  performance.now = () => clock
  t.teardown(() => { performance.now = real })
  let delivered = 0
  const intake = new Intake(() => { delivered++; clock += 1 }, () => {}, () => writeMs)
  for (let i = 0; i < 300; i++) intake.offer('c', env)
  const first = delivered
  for (let i = 0; i < 50 && intake.waiting > 0; i++) await turn()
  performance.now = real
  return { first, all: delivered }
}

t.test('a slice lasts as long as the last turn\'s writes took, within SLICE_MS..MAX_SLICE_MS', async (t) => {
  t.equal((await firstSlice(t, 0)).first, SLICE_MS, 'no writes: SLICE_MS of deliveries, then the turn yields')
  t.equal((await firstSlice(t, 5)).first, SLICE_MS, 'short writes: still SLICE_MS')
  t.equal((await firstSlice(t, 45)).first, 45, 'writes of 45 ms: 45 ms of deliveries, half the turn each')
  t.equal((await firstSlice(t, 10_000)).first, MAX_SLICE_MS, 'however long the writes, at most MAX_SLICE_MS: a turn stays bounded')
  t.equal((await firstSlice(t, 45)).all, 300, 'what waited is delivered in the next turns, none shed')
})
