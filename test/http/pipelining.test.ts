// HTTP/1.1 pipelining: a connection may have MAX_PIPELINED requests waiting
// for their answers; one that sends more in a row is closed and the rest is
// dropped unread. One write of 2,000 `GET /metrics` used to make a node render
// all 2,000 at once (seconds with its event loop held, hundreds of MiB of
// answers queued for a client that read none).
import net from 'node:net'
import t from 'tap'
import { MAX_PIPELINED } from '../../src/http/server.js'
import { startApp } from '../helpers/app.js'

/** Writes `requests` in one go and counts the answers until the server closes or `want` arrived. */
async function pipeline (port: number, requests: string[], want: number): Promise<{ answers: number, closedByServer: boolean }> {
  return await new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(requests.join('')))
    let text = ''
    let answers = 0
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no end after ${answers} answers`)) }, 15_000)
    sock.setEncoding('latin1')
    sock.on('data', (c: string) => {
      text += c
      answers = text.split('HTTP/1.1 ').length - 1
      if (answers >= want) { clearTimeout(timer); sock.destroy(); resolve({ answers, closedByServer: false }) }
    })
    sock.on('error', () => {})
    sock.on('close', () => { clearTimeout(timer); resolve({ answers, closedByServer: true }) })
  })
}

const get = (path: string): string => `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`

t.test('a connection pipelining past the bound is closed; within it every request is answered', { timeout: 60_000 }, async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const port = Number(new URL(node.http).port)

  const within = await pipeline(port, Array.from({ length: MAX_PIPELINED }, () => get('/ws/health')), MAX_PIPELINED)
  t.same(within, { answers: MAX_PIPELINED, closedByServer: false }, `${MAX_PIPELINED} pipelined requests: all answered, the connection kept`)

  for (const path of ['/metrics', '/ws/health', '/docs/json']) {
    const flood = await pipeline(port, Array.from({ length: 2000 }, () => get(path)), 2000)
    t.equal(flood.closedByServer, true, `2,000 pipelined ${path}: the server closes the connection`)
    t.ok(flood.answers <= MAX_PIPELINED, `and answers at most ${MAX_PIPELINED} of them (${flood.answers})`)
  }

  // The node serves others as before.
  t.equal((await fetch(`${node.http}/ws/health`)).status, 200, 'a health probe is answered')
  const metrics = await fetch(`${node.http}/metrics`)
  t.equal(metrics.status, 200)
  t.match(await metrics.text(), /herald_connections/, 'and /metrics renders')
})

t.test('concurrent requests for /metrics each get the whole exposition (they share one rendering)', async (t) => {
  const node = await startApp()
  t.teardown(() => node.close())
  const bodies = await Promise.all(Array.from({ length: 8 }, async () => await (await fetch(`${node.http}/metrics`)).text()))
  for (const b of bodies) t.match(b, /^# HELP /, 'a whole exposition')
})
