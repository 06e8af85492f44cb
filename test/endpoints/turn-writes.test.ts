// Write batching per event-loop turn (src/endpoints/turn-writes.ts): each
// socket gets its frames in order, in one write, and sockets sent the same
// run of events share one buffer.
import t from 'tap'
import type { Delivery } from '../../src/events/hub.js'
import { enqueue, FLUSH_AT_BYTES, take, type TurnQueue } from '../../src/endpoints/turn-writes.js'

const delivery = (text: string): Delivery => {
  const b = Buffer.from(text)
  return { kind: 'event', stream: '', offset: null, epoch: '', frame: () => b, wsFrame: () => b, payload: () => text }
}

/** A queue that records each buffer it writes. */
function queue (): TurnQueue & { writes: Buffer[] } {
  const q = {
    qFirst: -1, qCount: 0, qOwn: null as Buffer[] | null, qBytes: 0, writes: [] as Buffer[],
    flush () { const b = take(q); if (b !== null) q.writes.push(b) },
  }
  return q
}
const endOfTurn = async (): Promise<void> => await new Promise((resolve) => setImmediate(resolve))
const text = (q: { writes: Buffer[] }): string[] => q.writes.map((b) => b.toString())

t.test('a broadcast: every socket gets the turn\'s frames in order, in one write, from one shared buffer', async (t) => {
  const qs = [queue(), queue(), queue()]
  for (const d of [delivery('a'), delivery('b'), delivery('c')]) for (const q of qs) enqueue(q, d)
  t.equal(qs[0]!.qBytes, 3, 'queued bytes count toward the slow-consumer check')
  await endOfTurn()
  for (const q of qs) t.same(text(q), ['abc'])
  t.equal(qs[0]!.writes[0], qs[2]!.writes[0], 'the same Buffer, concatenated once')
  t.equal(qs[0]!.qBytes, 0)
})

t.test('a socket that skipped an event gets exactly its own frames, in order', async (t) => {
  const all = queue()
  const gap = queue()
  const late = queue()
  const alsoLate = queue()
  const [a, b, c, d] = ['a', 'b', 'c', 'd'].map(delivery) as [Delivery, Delivery, Delivery, Delivery]
  enqueue(all, a); enqueue(gap, a)
  enqueue(all, b)
  enqueue(all, c); enqueue(gap, c); enqueue(late, c); enqueue(alsoLate, c)
  enqueue(all, d); enqueue(gap, d); enqueue(late, d); enqueue(alsoLate, d)
  await endOfTurn()
  t.same(text(all), ['abcd'])
  t.same(text(gap), ['acd'])
  t.same(text(late), ['cd'])
  t.equal(late.writes[0], alsoLate.writes[0], 'the same run, one buffer')
})

t.test('a flush in the middle of a turn writes what is queued; later frames leave at its end', async (t) => {
  const q = queue()
  const other = queue()
  const [a, b] = [delivery('a'), delivery('b')]
  enqueue(q, a); enqueue(other, a)
  q.flush() // a reply is about to be sent: the events before it go first
  t.same(text(q), ['a'])
  enqueue(q, b); enqueue(other, b)
  await endOfTurn()
  t.same(text(q), ['a', 'b'])
  t.same(text(other), ['ab'])
})

t.test('each turn starts a new log', async (t) => {
  const q = queue()
  enqueue(q, delivery('x'))
  await endOfTurn()
  const d = delivery('y')
  enqueue(q, d)
  enqueue(q, delivery('z'))
  await endOfTurn()
  t.same(text(q), ['x', 'yz'])
})

t.test('a queue that reaches FLUSH_AT_BYTES is written at once, not at the end of the turn; sockets in step share the early buffer', async (t) => {
  const a = queue()
  const b = queue()
  const frame = 'x'.repeat(1024)
  const per = FLUSH_AT_BYTES / frame.length
  for (let i = 0; i < per - 1; i++) { const d = delivery(frame); enqueue(a, d); enqueue(b, d) }
  t.same(a.writes, [], 'under the threshold: still queued')
  const last = delivery(frame)
  enqueue(a, last)
  enqueue(b, last)
  t.equal(a.writes.length, 1, 'written the moment it holds FLUSH_AT_BYTES')
  t.equal(a.writes[0]!.length, FLUSH_AT_BYTES)
  t.equal(a.qBytes, 0, 'nothing counted as queued after it')
  t.equal(a.writes[0], b.writes[0], 'the other socket got the same Buffer')
  const tailFrame = delivery('tail')
  enqueue(a, tailFrame)
  enqueue(b, tailFrame)
  await endOfTurn()
  t.same(a.writes.map((w) => w.length), [FLUSH_AT_BYTES, 4], 'what came after leaves at the end of the turn')
  t.same(Buffer.concat(a.writes).toString(), frame.repeat(per) + 'tail', 'in order')
})
