// deploy/haproxy.cfg run by the real haproxy on loopback: the shipped config
// with only the server addresses and the binds rewritten
// (test/deploy/haproxy.test.ts runs it so), or started here with what a
// benchmark adds on top: a runtime API socket, a listen backlog, and servers
// held out of rotation (`disabled`) until the runtime API enables them.
import { spawn, type ChildProcess } from 'node:child_process'
import { closeSync, openSync, readFileSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { binary } from './binary.js'
import { freePort } from './ports.js'
import { waitFor } from './wait.js'
import { reaped } from './children.js'

export const SHIPPED_HAPROXY_CFG = fileURLToPath(new URL('../../deploy/haproxy.cfg', import.meta.url))

/**
 * The shipped config with only loopback addresses and ports changed. Returns
 * the text and how many lines changed; throws if a server or bind it expects
 * is missing, so the shipped file cannot drift from its users unnoticed.
 */
export function rewriteHaproxy (cfg: string, servers: Record<string, number>, frontend: number, stats: number): { text: string, changed: number } {
  let changed = 0
  const text = cfg.split('\n').map((line) => {
    let m = /^(\s*server\s+(\S+)\s+)(\S+)(.*)$/.exec(line)
    if (m !== null) {
      const port = servers[m[2]!]
      if (port === undefined) throw new Error(`haproxy.cfg: unexpected server ${m[2]}`)
      changed++
      return `${m[1]}127.0.0.1:${port}${m[4]}`
    }
    m = /^(\s*bind\s+):(8080|8404)(\s.*)?$/.exec(line)
    if (m !== null) {
      changed++
      return `${m[1]}127.0.0.1:${m[2] === '8080' ? frontend : stats}${m[3] ?? ''}`
    }
    if (/^\s*bind\s/.test(line)) throw new Error(`haproxy.cfg: unexpected bind ${line.trim()}`)
    return line
  }).join('\n')
  return { text, changed }
}

/** Server states of a backend from the stats CSV ("UP", "DOWN", "MAINT", "UP 1/2", …). */
export async function haproxyStates (statsPort: number, backend = 'herald'): Promise<Record<string, string>> {
  const res = await fetch(`http://127.0.0.1:${statsPort}/stats;csv`)
  const [header, ...rows] = (await res.text()).trim().split('\n')
  const cols = header!.replace(/^# /, '').split(',')
  const [px, sv, st] = ['pxname', 'svname', 'status'].map((c) => cols.indexOf(c))
  return Object.fromEntries(rows.map((r) => r.split(','))
    .filter((r) => r[px!] === backend && r[sv!] !== 'FRONTEND' && r[sv!] !== 'BACKEND')
    .map((r) => [r[sv!]!, r[st!]!]))
}

export interface Haproxy {
  proc: ChildProcess
  /** the frontend: ws://127.0.0.1:<port>, http://127.0.0.1:<port> */
  port: number
  ws: string
  http: string
  statsPort: number
  states (): Promise<Record<string, string>>
  /** a command of the runtime API (`set server herald/herald-2 state ready`, `show info`), its answer */
  command (cmd: string): Promise<string>
  /** the last lines haproxy wrote (its log goes to stdout) */
  tail (lines?: number): string
  stop (): Promise<void>
}

/**
 * The shipped config, rewritten for loopback (`servers`: the shipped server
 * names to node ports), run in the foreground with its files in `dir`, once
 * its stats answer and every server not `disabled` is UP. Added to it: a
 * runtime API socket at admin level; `disabled` on the named servers of
 * backend herald (the Socket.IO backend's servers track them), which join
 * with `set server herald/<name> state ready`; `backlog` on the frontend's bind.
 */
export async function startHaproxy (opts: { dir: string, servers: Record<string, number>, disabled?: string[], backlog?: number, name?: string }): Promise<Haproxy> {
  const name = opts.name ?? 'haproxy'
  const port = await freePort()
  const statsPort = await freePort()
  const socket = join(opts.dir, `${name}.sock`)
  const disabled = new Set(opts.disabled ?? [])
  let section = ''
  const text = rewriteHaproxy(readFileSync(SHIPPED_HAPROXY_CFG, 'utf8'), opts.servers, port, statsPort).text.split('\n').map((line) => {
    const head = /^(\S+)\s*(\S*)/.exec(line)
    if (head !== null) section = `${head[1]} ${head[2]}`.trim()
    if (line === 'global') return `${line}\n    stats socket ${socket} mode 600 level admin`
    const server = /^\s*server\s+(\S+)\s/.exec(line)
    if (section === 'backend herald' && server !== null && disabled.has(server[1]!)) return `${line} disabled`
    if (opts.backlog !== undefined && new RegExp(`^\\s*bind\\s+127\\.0\\.0\\.1:${port}(\\s|$)`).test(line)) return `${line} backlog ${opts.backlog}`
    return line
  }).join('\n')
  const cfg = join(opts.dir, `${name}.cfg`)
  writeFileSync(cfg, text)
  const logFile = join(opts.dir, `${name}.log`)
  const out = openSync(logFile, 'w')
  const proc = reaped(spawn(binary('haproxy'), ['-db', '-f', cfg], { stdio: ['ignore', out, out] }))
  closeSync(out)
  const tail = (lines = 15): string => { try { return readFileSync(logFile, 'utf8').trimEnd().split('\n').slice(-lines).join('\n') } catch { return '' } }
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()))
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return
    proc.kill('SIGKILL')
    await exited
  }
  const states = async (): Promise<Record<string, string>> => await haproxyStates(statsPort)
  const command = async (cmd: string): Promise<string> => await new Promise((resolve, reject) => {
    const s = net.connect(socket)
    let answer = ''
    s.on('connect', () => s.end(`${cmd}\n`))
    s.on('data', (b: Buffer) => { answer += b.toString() })
    s.on('error', reject)
    s.on('close', () => resolve(answer))
  })
  const up = Object.keys(opts.servers).filter((n) => !disabled.has(n))
  try {
    await waitFor(`${name}: ${up.join(', ')} UP`, states, (s) => up.every((n) => s[n] === 'UP'), { timeoutMs: 15_000, intervalMs: 100 })
  } catch (err) {
    await stop()
    throw new Error(`${(err as Error).message}\n${name}:\n${tail()}`)
  }
  return { proc, port, ws: `ws://127.0.0.1:${port}`, http: `http://127.0.0.1:${port}`, statsPort, states, command, tail, stop }
}
