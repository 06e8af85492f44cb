// A CONNECT (the proxy method) is answered 400 on a socket Node's HTTP
// server has handed over without its own error listener: a client that
// resets its connection while the answer is written must not stop the node
// with an uncaught error. Many such clients, against a node process, which
// must answer after them.
import { connect as tcp } from 'node:net'
import t from 'tap'
import { startNode } from '../helpers/node.js'

t.test('CONNECTs whose clients reset their connection as they are answered leave the node running', async (t) => {
  const node = await startNode()
  t.teardown(() => node.stop())
  const { hostname, port } = new URL(node.http)
  for (let i = 0; i < 200; i++) {
    await new Promise<void>((resolve) => {
      const s = tcp(Number(port), hostname, () => {
        s.write('CONNECT 169.254.169.254:80 HTTP/1.1\r\nHost: 169.254.169.254:80\r\n\r\n', () => { s.resetAndDestroy() })
      })
      s.on('error', () => {})
      s.on('close', () => { resolve() })
    })
  }
  // Each reset reached the node in a turn before these requests: a node
  // stopped by one would refuse them.
  for (let i = 0; i < 3; i++) t.equal((await fetch(`${node.http}/ws/health`)).status, 200, `answered after the resets (${i + 1})`)
  t.equal(node.proc.exitCode, null, 'still running')
})
