import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Redis } from 'ioredis'
import { freePort } from './ports.js'
import { waitFor } from './wait.js'
import { reaped } from './children.js'

const run = promisify(execFile)

export interface RedisClusterServer {
  ports: number[]
  /** host:port,host:port for REDIS_CLUSTER_NODES */
  nodes: string
  /** a plain client to one master */
  client (port: number): Redis
  /** Every server stops answering (SIGSTOP), its connections left open. */
  pause (): void
  resume (): void
  stop (): Promise<void>
}

/** A real 3-master Redis Cluster from the machine's redis-server, on free loopback ports. */
export async function startRedisCluster (masters = 3): Promise<RedisClusterServer> {
  const dir = await mkdtemp(join(tmpdir(), 'herald-rc-'))
  const ports: number[] = []
  const procs: ChildProcess[] = []
  const clients: Redis[] = []
  const stop = async (): Promise<void> => {
    for (const c of clients) c.disconnect()
    await Promise.all(procs.map(async (p) => {
      if (p.exitCode !== null || p.signalCode !== null) return
      const exited = new Promise((resolve) => p.once('exit', resolve))
      p.kill('SIGKILL')
      await exited
    }))
    await rm(dir, { recursive: true, force: true })
  }
  try {
    for (let i = 0; i < masters; i++) {
      const port = await freePort()
      ports.push(port)
      procs.push(reaped(spawn('redis-server', [
        '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no',
        '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--cluster-node-timeout', '2000',
        '--dir', dir, '--loglevel', 'warning',
      ], { stdio: 'ignore' })))
    }
    for (const port of ports) {
      await waitFor(`redis ${port} up`, async () => (await run('redis-cli', ['-p', String(port), 'ping'])).stdout.trim(), (v) => v === 'PONG', { timeoutMs: 10_000 })
    }
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes'], { timeout: 30_000 })
    for (const port of ports) {
      await waitFor(`cluster state ok on ${port}`, async () => (await run('redis-cli', ['-p', String(port), 'cluster', 'info'])).stdout, (v) => v.includes('cluster_state:ok'), { timeoutMs: 15_000, intervalMs: 100 })
    }
  } catch (err) {
    await stop()
    throw err
  }
  return {
    ports,
    nodes: ports.map((p) => `127.0.0.1:${p}`).join(','),
    client (port: number) {
      const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 })
      c.on('error', () => {})
      clients.push(c)
      return c
    },
    pause () { for (const p of procs) p.kill('SIGSTOP') },
    resume () { for (const p of procs) p.kill('SIGCONT') },
    stop,
  }
}

export interface SentinelSetup {
  /** host:port of the sentinel, for REDIS_SENTINELS */
  sentinels: string
  name: string
  masterPort: number
  stop (): Promise<void>
}

/** A Redis master watched by one Sentinel (redis-server --sentinel), on free loopback ports. */
export async function startSentinel (masterPort: number): Promise<SentinelSetup> {
  const dir = await mkdtemp(join(tmpdir(), 'herald-sentinel-'))
  const port = await freePort()
  const conf = join(dir, 'sentinel.conf')
  const { writeFile } = await import('node:fs/promises')
  await writeFile(conf, [
    `port ${port}`, 'bind 127.0.0.1', 'protected-mode no', `dir ${dir}`,
    `sentinel monitor herald-master 127.0.0.1 ${masterPort} 1`,
    'sentinel down-after-milliseconds herald-master 2000',
  ].join('\n') + '\n')
  const proc = reaped(spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' }))
  const stop = async (): Promise<void> => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((resolve) => proc.once('exit', resolve))
      proc.kill('SIGKILL')
      await exited
    }
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await waitFor('sentinel knows the master', async () => (await run('redis-cli', ['-p', String(port), 'sentinel', 'get-master-addr-by-name', 'herald-master'])).stdout, (v) => v.includes(String(masterPort)), { timeoutMs: 10_000, intervalMs: 100 })
  } catch (err) {
    await stop()
    throw err
  }
  return { sentinels: `127.0.0.1:${port}`, name: 'herald-master', masterPort, stop }
}
