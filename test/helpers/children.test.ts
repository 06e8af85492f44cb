// A test file tap times out kills itself with SIGALRM, skipping its teardown:
// what it started must not run on (test/helpers/children.ts).
import { spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { within, waitFor } from './wait.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/parent.ts', import.meta.url))
/** Running, or stopped: not gone, and not a zombie waiting for whoever inherited it to reap it. */
const alive = (pid: number): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch { return false }
}

for (const signal of ['SIGALRM', 'SIGTERM'] as const) {
  t.test(`a test process ended by ${signal}: its Redis and reaped children are killed, not a process it did not register`, async (t) => {
    const parent = spawn(process.execPath, ['--import', 'tsx', FIXTURE], { stdio: ['ignore', 'pipe', 'inherit'] })
    t.teardown(() => { if (parent.exitCode === null && parent.signalCode === null) parent.kill('SIGKILL') })
    const pids = await within(20_000, 'the fixture\'s pids', new Promise<{ redis: number, child: number, stray: number }>((resolve) => {
      let out = ''
      parent.stdout!.on('data', (b: Buffer) => { out += b.toString(); if (out.includes('\n')) resolve(JSON.parse(out)) })
    }))
    t.teardown(() => { for (const pid of Object.values(pids)) if (alive(pid)) process.kill(pid, 'SIGKILL') })
    t.ok(alive(pids.redis) && alive(pids.child) && alive(pids.stray), 'all three run')
    const exited = new Promise((resolve) => parent.once('exit', resolve))
    parent.kill(signal)
    await within(10_000, 'the fixture to exit', exited)
    await waitFor('its Redis to be gone', () => alive(pids.redis), (a) => !a, { timeoutMs: 5000 })
    await waitFor('its reaped child to be gone', () => alive(pids.child), (a) => !a, { timeoutMs: 5000 })
    t.pass('the Redis and the reaped child were killed with it')
    t.ok(alive(pids.stray), 'the process it did not register runs on: the signal alone does not end children')
  })
}
