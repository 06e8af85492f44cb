// A reconnect storm reaches a node while it is busy: the connections it has
// not accepted yet wait in the kernel's accept queue, as many as the listen
// backlog allows (capped by net.core.somaxconn); past it the kernel drops
// their SYNs and each client waits out TCP's retransmission timer (1 s, 3 s,
// 7 s...). Node's default backlog is 511. Here the node is stopped
// (SIGSTOP: it accepts nothing) while 1,000 clients connect at once, and
// every one of them must complete its TCP handshake all the same.
import { readFileSync } from 'node:fs'
import net from 'node:net'
import t from 'tap'
import { startNode } from '../helpers/node.js'
import { within } from '../helpers/wait.js'

const CLIENTS = 1000

t.test('1,000 connections arriving while the node accepts nothing all wait in its accept queue', { timeout: 60_000 }, async (t) => {
  const node = await startNode()
  t.teardown(async () => { node.proc.kill('SIGCONT'); await node.stop() })
  // The kernel caps the backlog: on a host that allows fewer, that many is the most that can be asked.
  const somaxconn = Number(readFileSync('/proc/sys/net/core/somaxconn', 'utf8'))
  const expected = Math.min(CLIENTS, somaxconn + 1)
  node.proc.kill('SIGSTOP')
  const sockets: net.Socket[] = []
  t.teardown(() => { for (const s of sockets) s.destroy() })
  let connected = 0
  const handshakes = Array.from({ length: CLIENTS }, async () => await new Promise<void>((resolve) => {
    const s = net.connect(node.port, '127.0.0.1')
    sockets.push(s)
    s.once('connect', () => { connected++; resolve() })
    s.once('error', () => resolve())
  }))
  // Completed by the kernel, not the stopped node; dropped SYNs would retry only after a second.
  await Promise.race([Promise.all(handshakes), new Promise((resolve) => setTimeout(resolve, 800))])
  t.ok(somaxconn > 511, `the host allows more than Node's default backlog (somaxconn ${somaxconn})`)
  t.equal(connected, expected, `${connected} of ${CLIENTS} handshakes completed while the node was stopped`)
  node.proc.kill('SIGCONT')
  const res = await within(10_000, 'the node to answer after it resumed', fetch(`${node.http}/ws/health`))
  t.equal(res.status, 200, 'and the node serves once it resumes')
})
