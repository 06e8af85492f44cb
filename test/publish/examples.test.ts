// The three client-publish examples, run as written (node, no build step)
// against a node process started as their comments say: each must finish
// with exit code 0 and show what it is there to show.
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { startNode, type NodeProc } from '../helpers/node.js'
import { TEST_API_KEY, TEST_SECRET } from '../helpers/tokens.js'
import { reaped } from '../helpers/children.js'

const example = (name: string): string => fileURLToPath(new URL(`../../examples/${name}`, import.meta.url))

async function run (node: NodeProc, name: string, env: Record<string, string> = {}): Promise<{ code: number | null, out: string[], err: string }> {
  const proc = reaped(spawn(process.execPath, [example(name)], {
    env: { PATH: process.env.PATH ?? '', HERALD_URL: node.http, JWT_SECRET: TEST_SECRET, HERALD_API_KEY: TEST_API_KEY, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  }))
  let out = ''
  let err = ''
  proc.stdout.on('data', (d: Buffer) => { out += d.toString() })
  proc.stderr.on('data', (d: Buffer) => { err += d.toString() })
  const timer = setTimeout(() => proc.kill('SIGKILL'), 30_000)
  const code = await new Promise<number | null>((resolve) => proc.once('exit', resolve))
  clearTimeout(timer)
  return { code, out: out.split('\n').filter(Boolean), err }
}

t.test('the examples run against a node started as they say', { timeout: 120_000 }, async (t) => {
  const node = await startNode({ WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: '127.0.0.1/32' })
  t.teardown(() => node.stop())

  t.test('soc-agent.js: heartbeats, status and log batches reach the dashboard; a forged id is refused', async (t) => {
    const r = await run(node, 'soc-agent.js', { ROUNDS: '2' })
    t.equal(r.code, 0, r.err)
    t.ok(r.out.some((l) => /^agent: forged agentId refused \(IDENTITY_MISMATCH\)$/.test(l)), 'the forgery refused')
    t.equal(r.out.filter((l) => /^dashboard: agent\.heartbeat from agent-\S+ \(group:soc:agents #\d+\)/.test(l)).length, 2, 'two heartbeats on the dashboard, from the group stream')
    t.ok(r.out.some((l) => /^dashboard: agent\.logs from agent-\S+ .*: \d+ log lines$/.test(l)), 'a log batch')
    t.ok(r.out.some((l) => /^dashboard: agent\.status from .*"state":"started"/.test(l)), 'the status')
  })

  t.test('support-chat.js: a visitor and staff converse; the automation webhook gets every message', async (t) => {
    const r = await run(node, 'support-chat.js')
    t.equal(r.code, 0, r.err)
    t.ok(r.out.some((l) => l === 'staff sees: visitor: Hi, my order has not arrived.'))
    t.ok(r.out.some((l) => l === 'visitor sees: staff: Sorry about that. Let me check it for you.'))
    t.ok(r.out.some((l) => l === 'visitor: another conversation refused (NOT_A_MEMBER)'))
    t.equal(r.out.filter((l) => /^automation: got \{.*"type":"chat\.message"/.test(l)).length, 2, 'both messages verified by the receiver')
    t.same((await node.api('/api/webhooks')).body.webhooks, [], 'it removed its webhook endpoint')
  })

  t.test('security-catalogue.js: the service\'s events reach the user; the user cannot forge them', async (t) => {
    const r = await run(node, 'security-catalogue.js')
    t.equal(r.code, 0, r.err)
    t.ok(r.out.some((l) => l === 'app: publishing security.* itself refused (RESERVED_TYPE)'))
    t.ok(r.out.some((l) => l === 'app: received all 5 events'))
    t.equal(r.out.filter((l) => /^app: (authentication|security|session)\.\S+ \{.*\} \(user:user-jo #\d+\)$/.test(l)).length, 5)
  })
})
