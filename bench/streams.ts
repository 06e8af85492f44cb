// What history costs Redis (a scenario of `npm run bench`; alone:
// `node --import tsx bench/streams.ts [--smoke]`). Publishes go through
// Herald's own publish path (the publisher library straight onto Redis, in
// separate processes), with history on (the append script) and off (plain
// PUBLISH), alternating in the same run, each on a fresh redis-server:
//
//   - publishes/s of user events (each also copied live to the admin
//     channel, where a subscriber listens) and Redis CPU per publish (INFO
//     CPU used_cpu_sys + used_cpu_user, before and after);
//   - Redis memory per retained event (INFO MEMORY used_memory before and
//     after N events of ~150 bytes in one stream), and for 100,000 users with
//     10 events each, then for the same users once their streams expired
//     (the meta, epoch and top, outlives them).
import { fork, type ChildProcess } from 'node:child_process'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runAlone, startRedis } from './procs.js'
import { Redis } from 'ioredis'

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..')
const WORKERS = 2
const CONCURRENCY = 64
// data.pad: the client payload of a user event comes to ~150 bytes of JSON with it.
const PAD = 24

export interface StreamsResult {
  throughput: Array<{ history: boolean, published: number, seconds: number, perSec: number, cpuUsPerPublish: number }>
  summary: { offPerSec: number, onPerSec: number, ratio: number, offCpuUs: number, onCpuUs: number }
  oneStream: { events: number, payloadBytes: number, messageBytes: number, bytesPerEvent: number, keyBytesPerEvent: number }
  users: { users: number, each: number, oneBytesPerUser: number, bytes: number, bytesPerUser: number, bytesPerEvent: number, metaBytesPerUser: number }
  /** the same users with one event each on a Redis whose stream nodes are at most 1 KiB (stream-node-max-bytes 1024) */
  smallNodes: { oneBytesPerUser: number, bytesPerUser: number }
}

/** A fresh redis-server of its own (no persistence), and a client on it. */
async function freshRedis (args: string[] = []): Promise<{ url: string, client: Redis, stop: () => Promise<void> }> {
  const { url, proc } = await startRedis(args)
  const client = new Redis(url, { maxRetriesPerRequest: null })
  client.on('error', () => {})
  await client.ping()
  return {
    url,
    client,
    async stop () {
      client.disconnect()
      const exited = new Promise((resolve) => proc.once('exit', resolve))
      proc.kill('SIGKILL')
      await exited
    },
  }
}

const info = async (r: Redis, section: string, field: string): Promise<number> =>
  Number(new RegExp(`^${field}:([0-9.]+)`, 'm').exec(await r.info(section))?.[1] ?? NaN)
const cpuSeconds = async (r: Redis): Promise<number> => await info(r, 'cpu', 'used_cpu_sys') + await info(r, 'cpu', 'used_cpu_user')
const usedMemory = async (r: Redis): Promise<number> => await info(r, 'memory', 'used_memory')

function next<T> (c: ChildProcess, what: string, timeoutMs = 600_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => { c.off('message', on); reject(new Error(`timed out: ${what}`)) }, timeoutMs)
    const on = (m: any): void => {
      clearTimeout(timer)
      c.off('message', on)
      if (m.error !== undefined) reject(new Error(`${what}: ${m.error as string}`))
      else resolve(m as T)
    }
    c.on('message', on)
  })
}

interface Go { concurrency: number, ms?: number, users: number, userBase?: number, each?: number, pad: number }

/** Publisher processes on `url`, history on or off; runs `go` on each at once. */
async function publishers (url: string, history: boolean, n: number): Promise<{ run: (go: (i: number) => Go) => Promise<number>, stop: () => void }> {
  const procs = Array.from({ length: n }, () => fork(join(ROOT, 'bench/load/stream-publisher.ts'), [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
  await Promise.all(procs.map(async (p) => {
    const ready = next(p, 'publisher ready', 30_000)
    p.send({ setup: { redisUrl: url, history: history ? { size: 100_000, ttlMs: 3_600_000 } : false } })
    await ready
  }))
  return {
    async run (go) {
      const done = await Promise.all(procs.map(async (p, i) => {
        const d = next<{ done: { published: number } }>(p, 'publishing')
        p.send({ go: go(i) })
        return (await d).done.published
      }))
      return done.reduce((a, b) => a + b, 0)
    },
    stop () { for (const p of procs) p.kill('SIGKILL') },
  }
}

/** User events for `ms` with history on or off: publishes/s, and Redis's CPU per publish. */
async function throughput (history: boolean, ms: number, users: number): Promise<StreamsResult['throughput'][number]> {
  const redis = await freshRedis()
  // An admin's node listens on the admin channel, where every user event is copied.
  const sub = new Redis(redis.url)
  let heard = 0
  sub.on('message', () => { heard++ })
  await sub.subscribe('herald:{a}')
  const pubs = await publishers(redis.url, history, WORKERS)
  try {
    await pubs.run(() => ({ concurrency: CONCURRENCY, ms: Math.min(1000, ms), users, pad: PAD })) // warm up: scripts loaded, JIT warm
    const cpu0 = await cpuSeconds(redis.client)
    const t0 = performance.now()
    const published = await pubs.run(() => ({ concurrency: CONCURRENCY, ms, users, pad: PAD }))
    const seconds = (performance.now() - t0) / 1000
    const cpu = await cpuSeconds(redis.client) - cpu0
    if (heard === 0) throw new Error('the admin subscriber heard nothing')
    return { history, published, seconds, perSec: published / seconds, cpuUsPerPublish: cpu * 1e6 / published }
  } finally {
    pubs.stop()
    sub.disconnect()
    await redis.stop()
  }
}

/** N events of one user, all retained: Redis memory per event. */
async function oneStream (events: number): Promise<StreamsResult['oneStream']> {
  const redis = await freshRedis()
  const pubs = await publishers(redis.url, true, 1)
  try {
    await pubs.run(() => ({ concurrency: 1, users: 1, userBase: 1_000_000, each: 1, pad: PAD })) // the script loaded, the keys made
    const before = await usedMemory(redis.client)
    await pubs.run(() => ({ concurrency: CONCURRENCY, users: 1, each: events, pad: PAD }))
    const after = await usedMemory(redis.client)
    const key = 'herald:{u:bench-u0}:s'
    const sample = await redis.client.xrange(key, '-', '+', 'COUNT', 100)
    const messages = sample.map(([, f]) => f[1]!)
    const messageBytes = messages.reduce((a, m) => a + Buffer.byteLength(m), 0) / messages.length
    const payloadBytes = messages.reduce((a, m) => a + Buffer.byteLength(m.slice(m.indexOf('{'))), 0) / messages.length
    const keyBytes = Number(await redis.client.call('MEMORY', 'USAGE', key, 'SAMPLES', '0'))
    return { events, payloadBytes, messageBytes, bytesPerEvent: (after - before) / events, keyBytesPerEvent: keyBytes / events }
  } finally {
    pubs.stop()
    await redis.stop()
  }
}

/** `users` users with one event each, then `each` events each, retained; then the same once their streams are gone (metas only). */
async function manyUsers (users: number, each: number, progress: (s: string) => void, redisArgs: string[] = []): Promise<StreamsResult['users']> {
  const redis = await freshRedis(redisArgs)
  const pubs = await publishers(redis.url, true, WORKERS)
  try {
    await pubs.run((i) => ({ concurrency: 1, users: 1, userBase: 2_000_000 + i, each: 1, pad: PAD }))
    const before = await usedMemory(redis.client)
    progress(`streams: ${users} users × ${each} events`)
    const share = Math.ceil(users / WORKERS)
    const round = async (n: number): Promise<void> => { await pubs.run((i) => ({ concurrency: CONCURRENCY, users: Math.min(share, users - i * share), userBase: i * share, each: n, pad: PAD })) }
    await round(1)
    const one = await usedMemory(redis.client)
    await round(each - 1)
    const after = await usedMemory(redis.client)
    // What is left for each user once its stream expired: its meta (epoch and top).
    let cursor = '0'
    do {
      const [c, keys] = await redis.client.scan(cursor, 'MATCH', 'herald:{u:bench-u*}:s', 'COUNT', 1000)
      cursor = c
      if (keys.length > 0) await redis.client.del(...keys)
    } while (cursor !== '0')
    const metasOnly = await usedMemory(redis.client)
    return { users, each, oneBytesPerUser: (one - before) / users, bytes: after - before, bytesPerUser: (after - before) / users, bytesPerEvent: (after - before) / (users * each), metaBytesPerUser: (metasOnly - before) / users }
  } finally {
    pubs.stop()
    await redis.stop()
  }
}

export async function streamsBench (o: { smoke: boolean, progress?: (s: string) => void }): Promise<StreamsResult> {
  const progress = o.progress ?? (() => {})
  const ms = o.smoke ? 1000 : 5000
  const rounds = o.smoke ? 1 : 2
  const rows: StreamsResult['throughput'] = []
  // Alternating, so drift on a shared machine falls on both alike.
  for (let r = 0; r < rounds; r++) {
    for (const history of r % 2 === 0 ? [false, true] : [true, false]) {
      progress(`streams: publishes/s with history ${history ? 'on' : 'off'} (round ${r + 1}/${rounds})`)
      rows.push(await throughput(history, ms, 1000))
    }
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length
  const of = (h: boolean): StreamsResult['throughput'] => rows.filter((x) => x.history === h)
  const summary = {
    offPerSec: mean(of(false).map((x) => x.perSec)),
    onPerSec: mean(of(true).map((x) => x.perSec)),
    ratio: mean(of(true).map((x) => x.perSec)) / mean(of(false).map((x) => x.perSec)),
    offCpuUs: mean(of(false).map((x) => x.cpuUsPerPublish)),
    onCpuUs: mean(of(true).map((x) => x.cpuUsPerPublish)),
  }
  progress('streams: memory per retained event')
  const one = await oneStream(o.smoke ? 500 : 10_000)
  const many = await manyUsers(o.smoke ? 1000 : 100_000, o.smoke ? 2 : 10, progress)
  // Redis preallocates a stream's first node at stream-node-max-bytes (4096 by default), whatever it holds.
  const small = await manyUsers(o.smoke ? 1000 : 100_000, o.smoke ? 2 : 10, progress, ['--stream-node-max-bytes', '1024'])
  return { throughput: rows, summary, oneStream: one, users: many, smallNodes: { oneBytesPerUser: small.oneBytesPerUser, bytesPerUser: small.bytesPerUser } }
}

export function streamsMarkdown (r: StreamsResult): string[] {
  const k = (n: number): string => n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(1)}k` : `${Math.round(n)}`
  const s = r.summary
  return [
    '## History: publishes through one Redis, and its memory', '',
    `User events (each also copied live to the admin channel, where one subscriber listens) through the publisher library straight onto a fresh Redis, ${WORKERS} processes × ${CONCURRENCY} in flight; history off (PUBLISH) and on (the append script), alternating.`, '',
    '| history | publishes/s | Redis CPU per publish |', '|---|---|---|',
    ...r.throughput.map((x) => `| ${x.history ? 'on' : 'off'} | ${k(x.perSec)} | ${x.cpuUsPerPublish.toFixed(1)} µs |`),
    `| **on vs off** | **${s.ratio.toFixed(2)}×** (${k(s.onPerSec)} / ${k(s.offPerSec)}) | **${(s.onCpuUs / s.offCpuUs).toFixed(2)}×** (${s.onCpuUs.toFixed(1)} / ${s.offCpuUs.toFixed(1)} µs) |`, '',
    '| retained | Redis memory |', '|---|---|',
    `| ${k(r.oneStream.events)} events in one stream (client payload ${Math.round(r.oneStream.payloadBytes)} B, stored message ${Math.round(r.oneStream.messageBytes)} B) | ${Math.round(r.oneStream.bytesPerEvent)} B per event (MEMORY USAGE of the stream: ${Math.round(r.oneStream.keyBytesPerEvent)} B) |`,
    `| ${k(r.users.users)} users × 1 event | ${(r.users.oneBytesPerUser * r.users.users / 2 ** 20).toFixed(0)} MiB: ${Math.round(r.users.oneBytesPerUser)} B per user |`,
    `| ${k(r.users.users)} users × ${r.users.each} events | ${(r.users.bytes / 2 ** 20).toFixed(0)} MiB: ${Math.round(r.users.bytesPerUser)} B per user, ${Math.round(r.users.bytesPerEvent)} B per event |`,
    `| the same users once their streams expired (meta: epoch and top) | ${Math.round(r.users.metaBytesPerUser)} B per user |`,
    `| the same on a Redis with \`stream-node-max-bytes 1024\` | 1 event: ${Math.round(r.smallNodes.oneBytesPerUser)} B per user; ${r.users.each} events: ${Math.round(r.smallNodes.bytesPerUser)} B per user |`, '',
  ]
}

if (process.argv[1] === fileURLToPath(import.meta.url)) runAlone('streams', streamsBench, streamsMarkdown)
