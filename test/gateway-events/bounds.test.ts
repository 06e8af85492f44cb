// The bounds on the gateway's own events (src/gateway-events/bounds.ts), on a
// clock the test moves: folding per key and window, the per-node bucket, the
// bounded table, and refusal bursts per IP.
import t from 'tap'
import { Bounds, Bursts, type Suppression } from '../../src/gateway-events/bounds.js'

function setup (opts: { windowMs?: number, ratePerSecond?: number, maxKeys?: number } = {}) {
  let now = 1_000_000
  const out: Array<{ item: string, folded: number }> = []
  const suppressed: Array<{ type: string, reason: Suppression }> = []
  const b = new Bounds<string>(
    { windowMs: opts.windowMs ?? 1000, ratePerSecond: opts.ratePerSecond ?? 1000, maxKeys: opts.maxKeys ?? 100 },
    (item, folded) => out.push({ item, folded }),
    (type, reason) => suppressed.push({ type, reason }),
    () => now,
    false,
  )
  return { b, out, suppressed, advance: (ms: number) => { now += ms } }
}

t.test('the first event of a window goes out at once; the rest fold into one summary at its end', async (t) => {
  const { b, out, suppressed, advance } = setup()
  b.offer('x', 'k', 'e1')
  t.same(out, [{ item: 'e1', folded: 0 }], 'first out at once')
  for (let i = 2; i <= 5; i++) { advance(100); b.offer('x', 'k', `e${i}`) }
  t.equal(out.length, 1, 'nothing more within the window')
  t.same(suppressed, Array(4).fill({ type: 'x', reason: 'folded' }), 'each fold reported')
  advance(599)
  b.sweep()
  t.equal(out.length, 1, 'the window has not ended')
  advance(1)
  b.sweep()
  t.same(out[1], { item: 'e5', folded: 4 }, 'the summary: the last folded event, and how many it stands for')
  t.equal(b.size, 0, 'the window is gone')
  b.offer('x', 'k', 'e6')
  t.same(out[2], { item: 'e6', folded: 0 }, 'a new window: out at once again')
})

t.test('a window with nothing folded ends without a summary; an event after its end ends it first', async (t) => {
  const { b, out, advance } = setup()
  b.offer('x', 'k', 'a')
  advance(1000)
  b.sweep()
  t.equal(out.length, 1, 'no summary for a window that folded nothing')
  b.offer('x', 'k', 'b')
  b.offer('x', 'k', 'c')
  advance(1500) // no sweep ran: the next offer finds the window over
  b.offer('x', 'k', 'd')
  t.same(out.slice(1), [{ item: 'b', folded: 0 }, { item: 'c', folded: 1 }, { item: 'd', folded: 0 }], 'summary of the old window, then the new one')
})

t.test('keys are apart: another subject or type is not folded', async (t) => {
  const { b, out } = setup()
  b.offer('x', 'x|u1', '1')
  b.offer('x', 'x|u2', '2')
  b.offer('y', 'y|u1', '3')
  t.equal(out.length, 3)
})

t.test('at most two events per key and window, whatever the flood', async (t) => {
  const { b, out, advance } = setup({ windowMs: 1000 })
  for (let i = 0; i < 10_000; i++) { b.offer('x', 'k', String(i)); if (i % 100 === 0) { advance(10); b.sweep() } }
  // 10,000 offers over 1 s of clock: windows of 1000 ms, so at most 2 of them, 2 events each.
  t.ok(out.length <= 4, `${out.length} events for 10,000 offers`)
  advance(1000)
  b.sweep()
  t.ok(out.length <= 4, `${out.length} events once the last window ended`)
  const folded = out.reduce((n, o) => n + o.folded, 0)
  t.equal(out.filter((o) => o.folded === 0).length + folded, 10_000, 'every offer went out or is counted in a summary')
})

t.test('the node bucket: ratePerSecond at most, refilled with time; summaries pass it too', async (t) => {
  const { b, out, suppressed, advance } = setup({ ratePerSecond: 5, windowMs: 10_000 })
  for (let i = 0; i < 20; i++) b.offer('x', `k${i}`, String(i))
  t.equal(out.length, 5, 'a burst of the rate')
  t.equal(suppressed.filter((s) => s.reason === 'node_rate').length, 15, 'the rest dropped and reported')
  advance(400) // two tokens back
  for (let i = 20; i < 25; i++) b.offer('x', `k${i}`, String(i))
  t.equal(out.length, 7, 'refilled at the rate')
})

t.test('the table is bounded: past maxKeys the oldest window ends early, with its summary', async (t) => {
  const { b, out } = setup({ maxKeys: 3 })
  b.offer('x', 'a', 'a1')
  b.offer('x', 'a', 'a2')
  b.offer('x', 'b', 'b1')
  b.offer('x', 'c', 'c1')
  t.equal(b.size, 3)
  b.offer('x', 'd', 'd1')
  t.equal(b.size, 3, 'still three windows')
  t.same(out.map((o) => o.item), ['a1', 'b1', 'c1', 'a2', 'd1'], 'a ended early: its summary out before d')
  t.equal(out[3]!.folded, 1)
  for (let i = 0; i < 1000; i++) b.offer('x', `ip${i}`, 'e')
  t.equal(b.size, 3, 'a thousand subjects later, three windows')
})

t.test('close drops what is open and lets nothing else out', async (t) => {
  const { b, out } = setup()
  b.offer('x', 'k', '1')
  b.offer('x', 'k', '2')
  b.close()
  b.offer('x', 'k', '3')
  b.sweep()
  t.equal(out.length, 1)
})

t.test('windows end on their own timer when it runs', async (t) => {
  const out: Array<{ item: string, folded: number }> = []
  const b = new Bounds<string>({ windowMs: 50, ratePerSecond: 100, maxKeys: 10 }, (item, folded) => out.push({ item, folded }), () => {})
  t.teardown(() => b.close())
  b.offer('x', 'k', '1')
  b.offer('x', 'k', '2')
  await new Promise<void>((resolve, reject) => {
    const deadline = Date.now() + 2000
    const poll = (): void => { if (out.length === 2) resolve(); else if (Date.now() > deadline) reject(new Error('no summary')); else setTimeout(poll, 10) }
    poll()
  })
  t.same(out[1], { item: '2', folded: 1 })
})

t.test('bursts: the count at every multiple of the threshold within the window; a new window starts over', async (t) => {
  let now = 0
  const b = new Bursts(3, 1000, 100, () => now)
  const seen = Array.from({ length: 7 }, () => b.hit('1.2.3.4'))
  t.same(seen, [null, null, 3, null, null, 6, null])
  t.equal(b.hit('5.6.7.8'), null, 'per IP')
  now = 1000
  t.same([b.hit('1.2.3.4'), b.hit('1.2.3.4'), b.hit('1.2.3.4')], [null, null, 3], 'the window ended: counted again from 1')
})

t.test('bursts: bounded in IPs', async (t) => {
  let now = 0
  const b = new Bursts(2, 60_000, 50, () => now)
  for (let i = 0; i < 10_000; i++) { b.hit(`10.0.${i >> 8}.${i & 255}`); now++ }
  t.ok(b.size <= 50, `${b.size} IPs counted`)
})
