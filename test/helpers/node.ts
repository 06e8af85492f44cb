import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import type { Test } from 'tap'
import { fileURLToPath } from 'node:url'
import { TEST_API_KEY, TEST_SECRET } from './tokens.js'
import { reaped } from './children.js'

export const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url))

export const BASE_ENV: Record<string, string> = {
  NODE_ENV: 'test',
  HOST: '127.0.0.1',
  JWT_SECRET: TEST_SECRET,
  API_KEYS: TEST_API_KEY,
  LOG_LEVEL: 'info',
  // Every test client shares 127.0.0.1: per-IP and per-minute limits are
  // raised here and set explicitly by the tests about limits.
  MAX_CONNECTIONS_PER_IP: '100000',
  MAX_CONNECTIONS_PER_USER: '1000',
  MAX_MESSAGES_PER_MINUTE: '1000000',
  // The gateway's own events (session.created on every connect...) would
  // land in the streams and subscriptions other suites count: off here, and
  // on in the suites about them (test/gateway-events/).
  GATEWAY_EVENTS: 'none',
}

export interface NodeProc {
  proc: ChildProcess
  port: number
  http: string
  ws: string
  serverId: string
  /** every stdout/stderr line so far */
  lines: string[]
  exit: Promise<{ code: number | null, signal: NodeJS.Signals | null }>
  api (path: string, init?: { method?: string, body?: unknown, key?: string, headers?: Record<string, string> }): Promise<{ status: number, body: any, headers: Headers }>
  /** resolves with the first line matching pred (already seen or future) */
  waitLine (pred: (line: string) => boolean, timeoutMs?: number): Promise<string>
  stop (signal?: NodeJS.Signals): Promise<void>
}

/**
 * What a process that did not answer in time was doing: the CPU it used and
 * its scheduler state (R running, S waiting), from /proc. A slow machine
 * shows CPU spent; a hung boot shows a process asleep.
 */
function processState (pid: number | undefined): string {
  try {
    // Fields after the command's closing parenthesis: state is the first, utime and stime the 12th and 13th.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return `state ${f[0]}, ${((Number(f[11]) + Number(f[12])) / 100).toFixed(2)} s of CPU used`
  } catch {
    return 'process state unreadable'
  }
}

/** Starts dist/main.js as its own process on a kernel-chosen port. */
export async function startNode (env: Record<string, string> = {}, opts: { cleanEnv?: boolean, timeoutMs?: number } = {}): Promise<NodeProc> {
  const serverId = env.SERVER_ID ?? `test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
  const fullEnv: Record<string, string> = opts.cleanEnv === true
    ? { PATH: process.env.PATH ?? '', PORT: '0', HOST: '127.0.0.1', ...env }
    : { PATH: process.env.PATH ?? '', ...BASE_ENV, PORT: '0', SERVER_ID: serverId, ...env }
  const proc = reaped(spawn(process.execPath, [MAIN], { env: fullEnv, stdio: ['ignore', 'pipe', 'pipe'] }))
  const lines: string[] = []
  const watchers: Array<(line: string) => void> = []
  const onData = (buf: Buffer): void => {
    for (const line of buf.toString().split('\n')) {
      if (line.length === 0) continue
      lines.push(line)
      for (const w of [...watchers]) w(line)
    }
  }
  proc.stdout!.on('data', onData)
  proc.stderr!.on('data', onData)
  const exit = new Promise<{ code: number | null, signal: NodeJS.Signals | null }>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })))

  const waitLine = async (pred: (line: string) => boolean, timeoutMs = 15_000): Promise<string> => {
    const seen = lines.find(pred)
    if (seen !== undefined) return seen
    return await new Promise((resolve, reject) => {
      const w = (line: string): void => { if (pred(line)) { done(); resolve(line) } }
      const t = setTimeout(() => { done(); reject(new Error(`no matching line within ${timeoutMs} ms (${processState(proc.pid)}); last lines:\n${lines.slice(-10).join('\n')}`)) }, timeoutMs)
      const onExit = (): void => { done(); reject(new Error(`node exited before the line appeared:\n${lines.slice(-10).join('\n')}`)) }
      const done = (): void => { clearTimeout(t); watchers.splice(watchers.indexOf(w), 1); proc.off('exit', onExit) }
      watchers.push(w)
      proc.once('exit', onExit)
    })
  }

  let port: number
  try {
    // A boot takes about a second alone and a few beside a busy suite; the
    // limit is for a node that will never listen, not a judgement of speed.
    const listening = await waitLine((l) => l.includes('Server listening at http://127.0.0.1:'), opts.timeoutMs ?? 60_000)
    port = Number(/127\.0\.0\.1:(\d+)/.exec(listening)![1])
  } catch (err) {
    proc.kill('SIGKILL')
    throw err
  }
  const http = `http://127.0.0.1:${port}`
  return {
    proc,
    port,
    http,
    ws: `ws://127.0.0.1:${port}`,
    serverId: fullEnv.SERVER_ID ?? serverId,
    lines,
    exit,
    waitLine,
    async api (path, init = {}) {
      const headers: Record<string, string> = { ...init.headers }
      if (init.key !== '') headers.authorization = `Bearer ${init.key ?? TEST_API_KEY}`
      if (init.body !== undefined) headers['content-type'] = 'application/json'
      const res = await fetch(http + path, { method: init.method ?? (init.body !== undefined ? 'POST' : 'GET'), headers, body: init.body !== undefined ? JSON.stringify(init.body) : undefined })
      const text = await res.text()
      let body: unknown = text
      try { body = JSON.parse(text) } catch {}
      return { status: res.status, body, headers: res.headers }
    },
    async stop (signal: NodeJS.Signals = 'SIGKILL') {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal)
      await exit
    },
  }
}

/**
 * `count` nodes started at once, each stopped with `t`: recorded as soon as it
 * runs, so a start that fails still stops the ones that did start.
 */
export async function startNodes (t: Test, count: number, env: Record<string, string> = {}, opts: { cleanEnv?: boolean } = {}): Promise<NodeProc[]> {
  const started: NodeProc[] = []
  t.teardown(async () => { await Promise.all(started.map(async (n) => await n.stop())) })
  return await Promise.all(Array.from({ length: count }, async () => {
    const n = await startNode(env, opts)
    started.push(n)
    return n
  }))
}
