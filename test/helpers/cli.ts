import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { reaped } from './children.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const CLI = join(ROOT, 'dist/cli.js')

// node 22 and its npm first, as in the shell that runs the suite.
const PATH = [dirname(process.execPath), ...(process.env.PATH ?? '').split(delimiter)].join(delimiter)
// npm's cache (where `npm exec` links the package) in a scratch directory, so
// the tests neither read nor leave state in ~/.npm; removed at exit.
const npmCache = mkdtempSync(join(tmpdir(), 'herald-cli-npm-'))
process.once('exit', () => rmSync(npmCache, { recursive: true, force: true }))

export interface Run { code: number | null, stdout: string, stderr: string }

/** Runs a command from the checkout with exactly `env` (plus PATH and npm's scratch cache), killed after 60 s. */
export async function run (file: string, args: string[], env: Record<string, string>): Promise<Run> {
  const proc = reaped(spawn(file, args, {
    cwd: ROOT,
    env: { PATH, HOME: npmCache, npm_config_cache: npmCache, npm_config_update_notifier: 'false', npm_config_fund: 'false', npm_config_audit: 'false', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }))
  let stdout = ''
  let stderr = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => { stdout += c })
  proc.stderr.setEncoding('utf8').on('data', (c: string) => { stderr += c })
  const timer = setTimeout(() => proc.kill('SIGKILL'), 60_000)
  const code = await new Promise<number | null>((resolve) => proc.once('close', (c) => resolve(c)))
  clearTimeout(timer)
  return { code, stdout, stderr }
}

/** `node dist/cli.js …` */
export const cli = async (args: string[], env: Record<string, string>): Promise<Run> => await run(process.execPath, [CLI, ...args], env)

/** `npx …` from the checkout: a `herald` first argument runs the package's own bin. Offline: it needs nothing from the registry. */
export const npx = async (args: string[], env: Record<string, string>): Promise<Run> => await run('npx', ['--offline', ...args], env)

/** The claims of a JWT, unverified. */
export const claimsOf = (token: string): Record<string, any> => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString())

/** `npm exec <args>` from the checkout, offline. */
export const npmExec = async (args: string[], env: Record<string, string>): Promise<Run> => await run('npm', ['exec', '--offline', ...args], env)
