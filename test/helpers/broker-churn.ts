// Run by test/backend/broker-redis.test.ts in a plain node process with
// --expose-gc: sends many commands through a Redis broker and prints how much
// the heap grew, as JSON.
import { createBackend } from '../../src/backend/backend.js'

const [url, count] = process.argv.slice(2)
const n = Number(count)
const backend = createBackend({ redis: { url: url! }, keyPrefix: 'churn:' })
await backend.connect()
const broker = backend.broker
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) throw new Error('run with --expose-gc')
const heap = (): number => { gc(); gc(); return process.memoryUsage().heapUsed }
const work = async (total: number, base: number): Promise<void> => {
  for (let i = 0; i < total; i += 500) {
    await Promise.all(Array.from({ length: 500 }, async (_x, j) => {
      await broker.publish('churn:events', 'x')
      await broker.publishNow('churn:probe', 'y')
      if (j % 10 === 0) {
        await broker.subscribe(`churn:u${base + i + j}`)
        await broker.unsubscribe(`churn:u${base + i + j}`)
      }
    }))
  }
}
await work(5000, 0) // warm up: compiled code, ioredis buffers
const before = heap()
await work(n, 10_000)
process.stdout.write(JSON.stringify({ grownBytes: heap() - before }))
await backend.close()
