// Shared by the cluster-operations suites (registry, admin control, Redis
// faults, drain, metrics): node processes on one private Redis, torn down with
// the test, plus small readers for what an operator looks at.
import type { Test } from 'tap'
import type { Redis } from 'ioredis'
import { startNode, type NodeProc } from './node.js'
import { startRedis, type RedisServer } from './redis.js'

export interface OpsCluster {
  redis: RedisServer
  /** a plain client on the private Redis, for assertions */
  rc: Redis
  nodes: NodeProc[]
  /** starts one more node on the same Redis, torn down with the others */
  add (env?: Record<string, string>): Promise<NodeProc>
}

/**
 * `count` node processes sharing one fresh private Redis, torn down with `t`.
 * Each node is recorded as soon as it runs, so a failed start still tears the
 * others down. `names` become SERVER_IDs (suffixed with the pid); `perNode[i]`
 * adds to the environment of node i.
 */
export async function opsCluster (t: Test, env: Record<string, string>, names: string[], perNode: Array<Record<string, string>> = []): Promise<OpsCluster> {
  const redis = await startRedis()
  const started: NodeProc[] = []
  t.teardown(async () => {
    await Promise.all(started.map(async (n) => await n.stop()))
    await redis.stop()
  })
  const add = async (more: Record<string, string> = {}): Promise<NodeProc> => {
    const n = await startNode({ REDIS_URL: redis.url, ...env, ...more })
    started.push(n)
    return n
  }
  const nodes = await Promise.all(names.map(async (name, i) => await add({ SERVER_ID: `${name}-${process.pid}`, ...perNode[i] })))
  return { redis, rc: redis.client(), nodes, add }
}

/** GET /ws/health (readiness) without credentials. */
export async function health (n: NodeProc): Promise<{ status: number, body: any }> {
  const r = await n.api('/ws/health', { key: '' })
  return { status: r.status, body: r.body }
}

/** Fails the test if the node process exits before the test's teardown. */
export function mustStayUp (t: Test, n: NodeProc): void {
  let done = false
  t.teardown(() => { done = true })
  n.exit.then(({ code, signal }) => {
    if (!done) t.fail(`node ${n.serverId} exited (${code ?? signal}):\n${n.lines.slice(-10).join('\n')}`)
  }, () => {})
}

export interface Sample { name: string, labels: Record<string, string>, value: number }

/** Parses the Prometheus text exposition format into samples (comments skipped). */
export function parseMetrics (text: string): Sample[] {
  const out: Sample[] = []
  for (const line of text.split('\n')) {
    if (line.length === 0 || line.startsWith('#')) continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line)
    if (!m) throw new Error(`not a Prometheus sample line: ${line}`)
    const labels: Record<string, string> = {}
    for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_s, c: string) => c === 'n' ? '\n' : c)
    out.push({ name: m[1]!, labels, value: Number(m[3]) })
  }
  return out
}

/** Sum of the samples named `name` whose labels include `labels`; 0 when none. */
export function metric (samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  let sum = 0
  for (const s of samples) {
    if (s.name !== name) continue
    if (Object.entries(labels).every(([k, v]) => s.labels[k] === v)) sum += s.value
  }
  return sum
}
