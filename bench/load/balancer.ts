// The test balancer (test/helpers/balancer.ts) in a process of its own: it
// holds two sockets per client, and a bench with 10,000 clients would pass
// the bench process's open-file cap. Driven over IPC:
//
//   env BALANCER_PORTS=[port, …]     child -> { port } once listening
//   parent -> { add: port }          a backend joins the rotation
import { startBalancer } from '../../test/helpers/balancer.js'

// Checked as the shipped HAProxy config does (deploy/haproxy.cfg: 3 s to answer, out after 2 failures), more often.
const lb = await startBalancer(JSON.parse(process.env.BALANCER_PORTS ?? '[]') as number[], { healthIntervalMs: 200, checkTimeoutMs: 3000, fall: 2 })
process.send!({ port: lb.port })
process.on('message', (m: { add?: number }) => {
  if (m.add !== undefined) lb.backends.push({ port: m.add, alive: true, connections: 0 })
})
process.on('disconnect', () => { void lb.close().finally(() => process.exit(0)) })
