// A Herald webhook receiver in plain JavaScript (Node 18+, no dependencies):
// verifies each delivery's Standard Webhooks signature, refuses stale or
// replayed ones, and answers 2xx fast (do the work after answering, or queue it).
//
//   WEBHOOK_SECRET=whsec_... PORT=8080 node examples/webhook-receiver.js
//
// Verify the raw body exactly as received: parsing and serialising the JSON
// again before checking the signature changes the bytes and fails it.
import { createHmac, timingSafeEqual } from 'node:crypto'
import { createServer } from 'node:http'

const SECRET = process.env.WEBHOOK_SECRET
if (!SECRET?.startsWith('whsec_')) throw new Error('set WEBHOOK_SECRET to the whsec_ secret Herald returned when the endpoint was created')
const KEY = Buffer.from(SECRET.slice('whsec_'.length), 'base64')
const TOLERANCE_SECONDS = 5 * 60

// webhook-ids seen lately: a retry of a delivery already handled is answered 200 and not handled twice.
const seen = new Map()

function verify (headers, body) {
  const id = headers['webhook-id']
  const timestamp = headers['webhook-timestamp']
  const signatures = headers['webhook-signature']
  if (!id || !timestamp || !signatures) return 'missing webhook headers'
  const age = Math.abs(Date.now() / 1000 - Number(timestamp))
  if (!(age <= TOLERANCE_SECONDS)) return 'timestamp outside the tolerance'
  const expected = createHmac('sha256', KEY).update(`${id}.${timestamp}.${body}`).digest()
  // Several signatures are sent while a secret rotates: one valid one is enough.
  for (const s of signatures.split(' ')) {
    const [version, value] = s.split(',')
    if (version !== 'v1' || value === undefined) continue
    const given = Buffer.from(value, 'base64')
    if (given.length === expected.length && timingSafeEqual(given, expected)) return null
  }
  return 'no valid signature'
}

const server = createServer((req, res) => {
  const chunks = []
  req.on('data', (c) => chunks.push(c))
  req.on('end', () => {
    const body = Buffer.concat(chunks).toString('utf8')
    const why = verify(req.headers, body)
    if (why !== null) {
      console.error(`refused: ${why}`)
      res.writeHead(401).end()
      return
    }
    const id = req.headers['webhook-id']
    res.writeHead(204).end()
    if (seen.has(id)) return
    seen.set(id, Date.now())
    for (const [k, at] of seen) if (Date.now() - at > TOLERANCE_SECONDS * 2000) seen.delete(k)
    const event = JSON.parse(body)
    // An event has `type`; a notification has `level`. `stream`/`offset` order them per stream.
    console.log(JSON.stringify({ webhookId: id, type: event.type ?? 'notification', id: event.id, stream: event.stream, offset: event.offset }))
  })
})

server.listen(Number(process.env.PORT ?? 8080), process.env.HOST ?? '127.0.0.1', () => {
  console.log(`listening on ${process.env.HOST ?? '127.0.0.1'}:${server.address().port}`)
})
