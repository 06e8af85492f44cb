// Event ids: 19 characters, sorting by creation time, strictly increasing
// within a node, however many are taken in one millisecond (a batch takes
// hundreds at once).
import t from 'tap'
import { createIdGenerator } from '../../src/events/ids.js'

t.test('ids taken back to back, across many milliseconds, strictly increase and keep their shape', async (t) => {
  const next = createIdGenerator()
  let prev = ''
  let wrong = 0
  const started = Date.now()
  let n = 0
  while (Date.now() - started < 50 || n < 100_000) {
    const id = next()
    if (!(id > prev) || !/^[0-9a-z]{13}[0-9a-f]{6}$/.test(id)) wrong++
    prev = id
    n++
  }
  t.equal(wrong, 0, `${n} ids, each above the one before, 19 characters`)
  const ms = parseInt(prev.slice(0, 9), 36)
  t.ok(Math.abs(ms - Date.now()) < 1000, 'the first 9 characters are the time in ms, base 36')
})
