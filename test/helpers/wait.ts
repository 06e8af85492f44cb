/**
 * Polls `probe` until `ok` accepts its result, at most `timeoutMs`. Resolves
 * with the accepted value; rejects with the last value seen, so a failure
 * says what the condition looked like instead of "timed out".
 */
export async function waitFor<T> (
  what: string,
  probe: () => T | Promise<T>,
  ok: (v: T) => boolean = (v) => Boolean(v),
  { timeoutMs = 5000, intervalMs = 25 }: { timeoutMs?: number, intervalMs?: number } = {},
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: T | undefined
  let lastErr: unknown
  for (;;) {
    try {
      last = await probe()
      lastErr = undefined
      if (ok(last)) return last
    } catch (err) {
      lastErr = err
    }
    if (Date.now() >= deadline) {
      const seen = lastErr !== undefined ? `error: ${(lastErr as Error).message}` : `last value: ${JSON.stringify(last)}`
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; ${seen}`)
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** Rejects if `p` has not settled within `ms`. */
export async function within<T> (ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms) })
  try {
    return await Promise.race([p, timeout])
  } finally {
    clearTimeout(timer)
  }
}
