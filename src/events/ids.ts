import { randomBytes } from 'node:crypto'

// Event ids sort by creation time and, within one node, strictly increase:
// 9 base36 chars of ms, 4 of a per-ms counter, 6 naming the node. The history
// issue will key per-stream order on them.
export function createIdGenerator (): () => string {
  const tag = randomBytes(4).toString('hex').slice(0, 6)
  let lastMs = 0
  let seq = 0
  // The ms part is spelt once per ms, not once per id: a batch takes
  // hundreds of ids in one.
  let prefix = ''
  return () => {
    let ms = Date.now()
    if (ms <= lastMs) {
      ms = lastMs
      seq++
      // 36^4 ids per ms; past that borrow the next ms rather than repeat.
      if (seq >= 1_679_616) { ms = ++lastMs; seq = 0; prefix = ms.toString(36).padStart(9, '0') }
    } else {
      lastMs = ms
      seq = 0
      prefix = ms.toString(36).padStart(9, '0')
    }
    return prefix + seq.toString(36).padStart(4, '0') + tag
  }
}
