// The processes a bench scenario starts, and what it waits for from them:
// every child tracked and killed when the bench exits, free loopback ports,
// IPC replies with a deadline, a private redis-server.
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { Redis } from 'ioredis'
import { newRedisDir, ownDir } from '../test/helpers/redis.js'

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/**
 * CPU time, user and system, in seconds, that a process has used (or one of
 * its threads: `tid`, the main thread's is the pid). Linux /proc counts it
 * in USER_HZ, hundredths of a second.
 */
export function cpuOf (pid: number, tid?: number): number {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'utf8')
  // After the command name (which may hold spaces and parentheses): utime and stime are the line's 14th and 15th fields.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(f[11]) + Number(f[12])) / 100
}

/** Children started through track() and still running. */
export const children = new Set<ChildProcess>()
export const track = <T extends ChildProcess>(c: T): T => { children.add(c); c.once('exit', () => children.delete(c)); return c }
/** Kills every child still running (a standalone scenario's exit, and this process's). */
export const killChildren = (): void => { for (const c of children) try { c.kill('SIGKILL') } catch {} }
process.on('exit', killChildren)

export async function stop (c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return
  const done = new Promise((resolve) => c.once('exit', resolve))
  c.kill('SIGKILL')
  await done
}

export async function freePort (): Promise<number> {
  return await new Promise((resolve) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => resolve(p)) }) })
}

/** The next IPC message of `c` matching `pred`; a message with `error` rejects. */
export function next<T> (c: ChildProcess, pred: (m: any) => boolean, what: string, timeoutMs = 120_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { c.off('message', on); reject(new Error(`timed out: ${what}`)) }, timeoutMs)
    const on = (m: any): void => {
      if (m.error !== undefined) { clearTimeout(timer); c.off('message', on); reject(new Error(`${what}: ${m.error as string}`)); return }
      if (!pred(m)) return
      clearTimeout(timer)
      c.off('message', on)
      resolve(m as T)
    }
    c.on('message', on)
  })
}

/**
 * A redis-server of the bench's own on a free loopback port, without
 * persistence, in a directory of its own (removed when it exits), once it
 * answers PING. `args` are added to its command line.
 */
export async function startRedis (args: string[] = []): Promise<{ url: string, proc: ChildProcess }> {
  const port = await freePort()
  const dir = newRedisDir()
  const proc = track(ownDir(spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning', '--dir', dir, ...args], { stdio: 'ignore' }), dir))
  const url = `redis://127.0.0.1:${port}`
  for (let i = 0; i < 200; i++) {
    const r = new Redis(url, { lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    r.on('error', () => {})
    try { await r.connect(); await r.ping(); r.disconnect(); return { url, proc } } catch { r.disconnect(); await sleep(25) }
  }
  throw new Error('redis-server did not start')
}

/**
 * A scenario run alone (`node --import tsx bench/<scenario>.ts [--smoke]`):
 * a progress line, then its table and its JSON; exit 1 with the stack on failure.
 */
export function runAlone<R> (name: string, bench: (o: { smoke: boolean, progress: (s: string) => void }) => Promise<R>, markdown: (r: R) => string[]): void {
  bench({ smoke: process.argv.includes('--smoke'), progress: (s) => process.stderr.write(`\r\x1b[K${s}`) }).then((r) => {
    process.stderr.write('\r\x1b[K')
    process.stdout.write(markdown(r).join('\n') + '\n')
    process.stdout.write(JSON.stringify(r, null, 2) + '\n')
    process.exit(0)
  }, (err: unknown) => { process.stderr.write(`\n${name} bench failed: ${(err as Error).stack ?? String(err)}\n`); process.exit(1) })
}
