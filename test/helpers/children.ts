import type { ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { onExit } from 'signal-exit'

// Processes a test starts (Redis, nodes, haproxy, examples) are stopped in
// its teardown. A test file tap times out never gets there: tap makes it
// kill itself with SIGALRM, which skips `exit` listeners, and what it
// started ran on, holding CPU and ports for the files after it. signal-exit
// (tap's own way of seeing that signal) runs this on every way out but
// SIGKILL: each process still running is killed, and the scratch
// directories they leave are removed.

const live = new Map<ChildProcess, boolean>()
const dirs = new Set<string>()

onExit(() => {
  for (const [proc, group] of live) {
    try {
      if (group) process.kill(-proc.pid!, 'SIGKILL')
      else proc.kill('SIGKILL')
    } catch {}
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true })
})

/**
 * `proc`, killed if this test process ends before it does. `group`: it was
 * spawned `detached` and leads a process group of its own, killed whole (a
 * child that starts processes of its own, such as the bench). A group is
 * kept after its leader exits: what the leader started may outlive it.
 */
export function reaped<P extends ChildProcess> (proc: P, opts: { group?: boolean } = {}): P {
  if (proc.pid === undefined) return proc
  live.set(proc, opts.group === true)
  if (opts.group !== true) proc.once('exit', () => live.delete(proc))
  return proc
}

/** A scratch directory removed with this test process, if nothing removed it before. */
export function reapedDir (dir: string): void {
  dirs.add(dir)
}
