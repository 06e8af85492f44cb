import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Redis } from 'ioredis'
import { freePort } from './ports.js'
import { reaped, reapedDir } from './children.js'

export interface RedisServer {
  port: number
  url: string
  proc: ChildProcess
  /** a plain client for assertions; closed by stop() */
  client (): Redis
  pause (): void
  resume (): void
  /** SIGKILL and wait for exit (data lost) */
  kill (): Promise<void>
  /** start again on the same port after kill() */
  restart (): Promise<void>
  stop (): Promise<void>
}

/**
 * A directory of its own for a redis-server given none, removed when it
 * exits: started in the checkout, it would load a dump.rdb left there (by a
 * SAVE, a DEBUG RELOAD, a Redis someone ran by hand) and begin with that
 * data, which skewed a bench's memory and CPU figures by a third.
 */
export function ownDir (proc: ChildProcess, dir: string): ChildProcess {
  reapedDir(dir)
  proc.once('exit', () => rmSync(dir, { recursive: true, force: true }))
  return proc
}

export const newRedisDir = (): string => mkdtempSync(join(tmpdir(), 'herald-redis-'))

async function launch (port: number, extraArgs: string[]): Promise<ChildProcess> {
  const dir = extraArgs.includes('--dir') ? null : newRedisDir()
  const proc = reaped(spawn('redis-server', [
    '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
    '--protected-mode', 'no', '--loglevel', 'warning', ...(dir !== null ? ['--dir', dir] : []), ...extraArgs,
  ], { stdio: ['ignore', 'pipe', 'pipe'] }))
  if (dir !== null) ownDir(proc, dir)
  // Ready when it accepts a PING; no sleeps.
  const deadline = Date.now() + 10_000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}`)
    const probe = new Redis({ port, host: '127.0.0.1', lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 })
    probe.on('error', () => {})
    try {
      await probe.connect()
      await probe.ping()
      probe.disconnect()
      return proc
    } catch {
      probe.disconnect()
      if (Date.now() > deadline) { proc.kill('SIGKILL'); throw new Error('redis-server did not start') }
      await new Promise((r) => setTimeout(r, 25))
    }
  }
}

/** A private redis-server on a free loopback port; never the machine's shared 6379. */
export async function startRedis (extraArgs: string[] = []): Promise<RedisServer> {
  const port = await freePort()
  let proc = await launch(port, extraArgs)
  const clients: Redis[] = []
  const exited = (p: ChildProcess): Promise<void> => p.exitCode !== null || p.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => p.once('exit', () => resolve()))
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get proc () { return proc },
    client () {
      const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 })
      c.on('error', () => {})
      clients.push(c)
      return c
    },
    pause () { proc.kill('SIGSTOP') },
    resume () { proc.kill('SIGCONT') },
    async kill () { proc.kill('SIGCONT'); proc.kill('SIGKILL'); await exited(proc) },
    async restart () { proc = await launch(port, extraArgs) },
    async stop () {
      for (const c of clients) c.disconnect()
      proc.kill('SIGCONT')
      proc.kill('SIGKILL')
      await exited(proc)
    },
  }
  return server
}
