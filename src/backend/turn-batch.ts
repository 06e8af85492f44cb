// Reads asked for in one event-loop turn, answered by one call for the turn.
// A reconnect storm opens thousands of connections a second, each reading
// its groups and its streams' positions for `welcome`: one command each was
// one write and one reply to parse each, and the welcomes queued behind
// them. Batched, a turn's reads are one write (src/endpoints/lifecycle.ts
// opened()); the same key asked twice in a turn is read once, after both
// asked, which is all either caller may assume.

/**
 * `list` in parts of at most `size`, in order, for script calls that must
 * stay short (a script holds Redis while it runs): the list itself when it
 * fits in one; none when it is empty (no call).
 */
export function chunksOf<T> (list: readonly T[], size: number): ReadonlyArray<readonly T[]> {
  if (list.length <= size) return list.length === 0 ? [] : [list]
  const parts: Array<readonly T[]> = []
  for (let i = 0; i < list.length; i += size) parts.push(list.slice(i, i + size))
  return parts
}

/**
 * A read of `key` batched with the others of the turn: `run` gets the
 * distinct keys asked for since the last flush, in order, and answers them
 * in the same order; a rejection answers every caller of the batch.
 */
export function turnBatched<V> (run: (keys: string[]) => Promise<V[]>): (key: string) => Promise<V> {
  let waiting = new Map<string, Array<{ resolve: (v: V) => void, reject: (err: unknown) => void }>>()
  const flush = (): void => {
    const batch = waiting
    waiting = new Map()
    const keys = [...batch.keys()]
    run(keys).then((values) => {
      keys.forEach((k, i) => { for (const w of batch.get(k)!) w.resolve(values[i]!) })
    }, (err: unknown) => { for (const ws of batch.values()) for (const w of ws) w.reject(err) })
  }
  // The promise itself, not an async function's around it: one promise fewer a read.
  return (key) => new Promise<V>((resolve, reject) => {
    // After the turn's I/O callbacks (every connection opened in this poll), not after this one's microtasks.
    if (waiting.size === 0) setImmediate(flush)
    const ws = waiting.get(key)
    if (ws === undefined) waiting.set(key, [{ resolve, reject }])
    else ws.push({ resolve, reject })
  })
}
