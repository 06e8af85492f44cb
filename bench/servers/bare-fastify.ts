// The baseline for HTTP publish CPU: a bare Fastify route that does what any
// JSON endpoint must (Fastify's JSON body parse) and answers 202 with an id,
// nothing else. Same Fastify, same Node, same loopback as the node under test.
import Fastify from 'fastify'

const port = Number(process.env.PORT ?? 0)
const app = Fastify({ logger: false })
let n = 0
app.post('/api/events', async (_req, reply) => await reply.code(202).send({ id: String(++n) }))
await app.listen({ port, host: '127.0.0.1' })
process.send?.({ ready: (app.server.address() as { port: number }).port })
process.on('disconnect', () => process.exit(0))
