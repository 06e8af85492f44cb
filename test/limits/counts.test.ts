// The per-key counter behind the node-local bounds per IP address (health
// streams, unauthenticated Socket.IO sessions, handshakes waiting).
import t from 'tap'
import { Counts } from '../../src/limits/counts.js'

t.test('counts per key, and forgets a key back at zero', async (t) => {
  const c = new Counts()
  t.equal(c.of('a'), 0)
  c.add('a')
  c.add('a')
  c.add('b')
  t.same([c.of('a'), c.of('b'), c.size], [2, 1, 2])
  c.remove('a')
  c.remove('b')
  t.same([c.of('a'), c.of('b'), c.size], [1, 0, 1], 'b is forgotten')
  c.remove('a')
  c.remove('a')
  t.same([c.of('a'), c.size], [0, 0], 'never below zero, and nothing kept')
})

t.test('ten thousand addresses that come and go leave nothing behind', async (t) => {
  const c = new Counts()
  for (let i = 0; i < 10_000; i++) c.add(`10.0.${i >> 8}.${i & 255}`)
  t.equal(c.size, 10_000)
  for (let i = 0; i < 10_000; i++) c.remove(`10.0.${i >> 8}.${i & 255}`)
  t.equal(c.size, 0)
})
