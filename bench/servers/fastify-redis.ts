// The second baseline for HTTP publish CPU: what a Fastify service pays to
// take the same event and put it in Redis, without any of Herald's own work.
// The same Fastify options a node uses for this route (its logger settings,
// and level as the publish routes take it, Ajv's options, Herald's own body
// and answer schemas), the API key checked as a node checks it (a
// constant-time comparison of digests) in an `onRequest` hook, and each body
// appended to one Redis stream over RESP2, as a node speaks it: the appends
// read in one event-loop turn go in one script call, as Herald's appender
// sends them (src/backend/streams-redis.ts), so the socket writes to Redis
// are alike. Its answer has the shape of Herald's receipt (the entry's id
// split into two numbers, not a position in Herald's sense).
// The gap between the bare route and this one is what taking the body to
// Redis costs any service; between this one and Herald, Herald's own work
// (the event's checks, id and message, its stream and the admin copy, its
// HTTP server's bookkeeping, metrics).
import Fastify from 'fastify'
import { Redis } from 'ioredis'
import { createApiKeyCheck } from '../../src/auth/credentials.js'
import { loggerOptions } from '../../src/observability/logger.js'
import { Accepted, EventInput } from '../../src/protocol/schema.js'
import { AJV_OPTIONS } from '../../src/protocol/validation.js'

const port = Number(process.env.PORT ?? 0)
const apiKeyValid = createApiKeyCheck([process.env.API_KEY ?? ''])
const level = process.env.LOG_LEVEL ?? 'warn'
const redis = new Redis(process.env.REDIS_URL ?? '', { protocol: 2 })
redis.on('error', (err) => { process.stderr.write(`fastify-redis baseline: ${err.message}\n`) })
// KEYS[1] the stream; ARGV the bodies. Answers each entry's id.
const APPEND = `local ids = {}
for i = 1, #ARGV do ids[i] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', 1000, '*', 'b', ARGV[i]) end
return ids`
redis.defineCommand('appendBodies', { numberOfKeys: 1, lua: APPEND })
const run = redis as unknown as { appendBodies: (key: string, ...bodies: string[]) => Promise<string[]> }

interface Waiting { body: string, resolve: (id: string) => void, reject: (e: unknown) => void }
let queue: Waiting[] = []
let scheduled: NodeJS.Immediate | null = null
function flush (): void {
  scheduled = null
  const batch = queue
  queue = []
  run.appendBodies('bench:fastify-redis', ...batch.map((w) => w.body)).then(
    (ids) => { for (let i = 0; i < batch.length; i++) batch[i]!.resolve(ids[i]!) },
    (err: unknown) => { for (const w of batch) w.reject(err) })
}
const append = async (body: string): Promise<string> => await new Promise((resolve, reject) => {
  queue.push({ body, resolve, reject })
  scheduled ??= setImmediate(flush)
})

const app = Fastify({ logger: loggerOptions(level), bodyLimit: 64 * 1024, ajv: { customOptions: { ...AJV_OPTIONS } } })
let n = 0
app.post('/api/events', {
  // As src/http/api.ts: at info, the publish routes log from warn.
  ...(level === 'info' ? { logLevel: 'warn' as const } : {}),
  schema: { body: EventInput, response: { 202: Accepted } },
  onRequest: async (req) => {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
    if (!m || !apiKeyValid(m[1]!)) throw Object.assign(new Error('unauthorized'), { statusCode: 401 })
  },
}, async (req, reply) => {
  const id = await append(JSON.stringify(req.body))
  return await reply.code(202).send({ id: String(++n), stream: 'bench:fastify-redis', offset: Number(id.slice(id.indexOf('-') + 1)), epoch: id.slice(0, id.indexOf('-')) })
})
await app.listen({ port, host: '127.0.0.1' })
process.send?.({ ready: (app.server.address() as { port: number }).port })
process.on('disconnect', () => { void app.close().then(() => redis.disconnect()).finally(() => process.exit(0)) })
