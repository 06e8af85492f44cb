// Load generator for the streams scenario (bench/streams.ts): publishes user
// events through Herald's own publish path (the publisher library straight
// onto Redis, as a service does), with history on or off, keeping a number
// of publishes in flight. Told what to do over IPC; reports what it did.
import { Redis } from 'ioredis'
import { HeraldPublisher } from '../../src/client/publisher.js'

interface Setup { redisUrl: string, history: { size: number, ttlMs: number } | false }
/** For `ms` (throughput), or each of `users` users `each` times (filling streams). */
interface Go { concurrency: number, ms?: number, users: number, userBase?: number, each?: number, pad: number }

let redis: Redis
let herald: HeraldPublisher

async function run (g: Go): Promise<{ published: number, ms: number }> {
  const data = { pad: 'x'.repeat(g.pad) }
  const base = g.userBase ?? 0
  const total = g.each !== undefined ? g.users * g.each : Infinity
  const until = g.ms !== undefined ? performance.now() + g.ms : Infinity
  let next = 0
  let published = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: g.concurrency }, async () => {
    while (next < total && performance.now() < until) {
      const k = next++
      // Round robin over the users: each stream grows one message at a time, as real traffic does.
      await herald.publish('authentication.login.success', { userId: `bench-u${base + (k % g.users)}`, data })
      published++
    }
  }))
  return { published, ms: performance.now() - t0 }
}

process.on('message', (m: { setup?: Setup, go?: Go }) => {
  if (m.setup !== undefined) {
    redis = new Redis(m.setup.redisUrl)
    herald = new HeraldPublisher({ redis, history: m.setup.history })
    redis.ping().then(() => process.send!({ ready: true }), (err: Error) => process.send!({ error: err.message }))
  }
  if (m.go !== undefined) run(m.go).then((r) => process.send!({ done: r }), (err: Error) => process.send!({ error: err.message }))
})
process.on('disconnect', () => process.exit(0))
