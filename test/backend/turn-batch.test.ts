// src/backend/turn-batch.ts: a turn's reads answered by one call, and the
// parts a call's list is cut into (every Redis store's script calls).
import t from 'tap'
import { chunksOf, turnBatched } from '../../src/backend/turn-batch.js'

t.test('chunksOf: the list itself when it fits, else parts of at most size, in order', async (t) => {
  const list = Array.from({ length: 7 }, (_, i) => i)
  t.equal(chunksOf(list, 7)[0], list, 'a list that fits is not copied')
  t.same(chunksOf(list, 7), [list])
  t.same(chunksOf(list, 3), [[0, 1, 2], [3, 4, 5], [6]])
  t.same(chunksOf(list, 1).length, 7)
  t.same(chunksOf([], 4), [], 'an empty list: no part, so no call')
})

t.test("turnBatched: one call for the turn's keys, each distinct key once, each caller answered", async (t) => {
  const calls: string[][] = []
  const read = turnBatched(async (keys) => { calls.push(keys); return keys.map((k) => `v:${k}`) })
  const first = await Promise.all([read('a'), read('b'), read('a')])
  t.same(first, ['v:a', 'v:b', 'v:a'])
  t.same(calls, [['a', 'b']], 'one call, a key asked twice read once')
  t.same(await read('c'), 'v:c', 'a later turn makes its own call')
  t.equal(calls.length, 2)
})

t.test('turnBatched: a failed call answers every caller of its turn with the error', async (t) => {
  const read = turnBatched<string>(async () => { throw new Error('down') })
  const got = await Promise.allSettled([read('a'), read('b'), read('a')])
  t.same(got.map((r) => r.status), ['rejected', 'rejected', 'rejected'])
})
