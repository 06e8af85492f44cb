// Bounds on waiting for the backend. A Redis that is paused keeps its socket
// "ready", and a command to one that is away waits in ioredis's offline
// queue: whoever waits for either needs a deadline, and every deadline needs
// its timer cleared, or it keeps a stopping process alive. A wait that only
// needs a bound takes one of these two; the few that do more when the time
// is up (count the work overdue, drop a queued read) keep their own timers.

/**
 * What `work` resolves with, or the rejection `late()` makes once `ms` have
 * passed. `work` is not cancelled: whatever it does after the deadline is
 * not anyone's to hear (the race has handled its failure: no unhandled
 * rejection).
 */
export async function inTime<T> (work: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  try {
    return await Promise.race([work, new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(late()), ms) })])
  } finally {
    clearTimeout(timer)
  }
}

/** Waits for `work` to settle, at most `ms`: best-effort work, whose outcome the caller does not need. */
export async function atMost (work: Promise<unknown>, ms: number): Promise<void> {
  await inTime(work, ms, () => new Error('late')).catch(() => {})
}
