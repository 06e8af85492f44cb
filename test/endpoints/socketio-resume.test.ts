// examples/socketio-resume.js, run as written (node, no build step) against a
// node process behind the test balancer: a Socket.IO client that keeps its
// positions and resumes with `since` on every welcome. Publishing goes on
// while the balancer cuts its connection; socket.io-client reconnects by
// itself and the example handles every message of its stream once, in order.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { startBalancer } from '../helpers/balancer.js'
import { startNode } from '../helpers/node.js'
import { userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'
import { reaped } from '../helpers/children.js'

const EXAMPLE = fileURLToPath(new URL('../../examples/socketio-resume.js', import.meta.url))

t.test('the Socket.IO example resumes across a network blip: every message once, in order, recovered', { timeout: 60_000 }, async (t) => {
  const node = await startNode({})
  t.teardown(() => node.stop())
  const lb = await startBalancer([node.port])
  t.teardown(() => lb.close())
  const u = `sio-resume-${process.pid}`
  const proc = reaped(spawn(process.execPath, [EXAMPLE], { env: { PATH: process.env.PATH ?? '', HERALD_URL: lb.http, HERALD_TOKEN: userToken(u) }, stdio: ['ignore', 'pipe', 'pipe'] }))
  t.teardown(() => { proc.kill('SIGKILL') })
  const lines: any[] = []
  let err = ''
  let partial = ''
  proc.stdout.on('data', (d: Buffer) => {
    partial += d.toString()
    const parts = partial.split('\n')
    partial = parts.pop()!
    for (const l of parts) if (l.length > 0) lines.push(JSON.parse(l))
  })
  proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const resumes = (): any[] => lines.filter((l) => l.resumed !== undefined)
  await waitFor('the first subscribe', () => resumes().length, (n) => n >= 1, { timeoutMs: 15_000 })
  t.match(resumes()[0], { resumed: true, recovered: true, unrecovered: [] })

  const publish = async (n: number): Promise<any> => (await node.api('/api/events', { body: { type: 'orders.created', userId: u, data: { n } } })).body
  const ids: string[] = []
  for (let i = 0; i < 80; i++) {
    ids.push((await publish(i)).id)
    // A network blip in the middle of the run: the connection is cut, socket.io-client reconnects.
    if (i === 30) lb.cut()
    await new Promise((r) => setTimeout(r, 25))
  }
  await waitFor('every message handled', () => lines.filter((l) => l.kind !== undefined).length, (n) => n >= 80, { timeoutMs: 20_000 })
  const handled = lines.filter((l) => l.kind === 'event' && l.stream === `user:${u}`)
  t.same(handled.map((l) => l.id), ids, `each of the 80 events handled once, in publish order (stderr: ${err.slice(-300)})`)
  t.same(handled.map((l) => l.offset), ids.map((_x, i) => i + 1), 'offsets 1..80 in order')
  t.ok(resumes().length >= 2, 'it reconnected and resumed')
  t.ok(resumes().every((r) => r.recovered === true), 'and every resume recovered')
})
