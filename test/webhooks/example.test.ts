// examples/webhook-receiver.js, run as written (node, no build step) against
// a live node process: it prints the deliveries whose signatures it
// verified, refuses a forged one, and handles a retried delivery once.
import { spawn } from 'node:child_process'
import { createHmac } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { startNode } from '../helpers/node.js'
import { waitFor } from '../helpers/wait.js'
import { reaped } from '../helpers/children.js'

const EXAMPLE = fileURLToPath(new URL('../../examples/webhook-receiver.js', import.meta.url))

t.test('the example receiver verifies what a node delivers, and refuses what it did not sign', { timeout: 60_000 }, async (t) => {
  const node = await startNode({ WEBHOOK_ALLOW_PRIVATE: '127.0.0.0/8', WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_RETRY_BASE: '1' })
  t.teardown(() => node.stop())
  // The endpoint first (its secret is the receiver's), pointing at the port the receiver will take.
  const { freePort } = await import('../helpers/ports.js')
  const port = await freePort()
  const created = await node.api('/api/webhooks', { body: { url: `http://127.0.0.1:${port}/`, eventTypes: ['authentication.*'] } })
  t.equal(created.status, 201)
  const proc = reaped(spawn(process.execPath, [EXAMPLE], { env: { PATH: process.env.PATH ?? '', WEBHOOK_SECRET: created.body.secret, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] }))
  t.teardown(() => { proc.kill('SIGKILL') })
  const out: string[] = []
  const err: string[] = []
  proc.stdout.on('data', (d: Buffer) => out.push(...d.toString().split('\n').filter(Boolean)))
  proc.stderr.on('data', (d: Buffer) => err.push(...d.toString().split('\n').filter(Boolean)))
  await waitFor('the receiver listening', () => out.some((l) => l.startsWith('listening')), Boolean, { timeoutMs: 10_000 })

  const published = await node.api('/api/events', { body: { type: 'authentication.login.success', userId: 'u-example', data: { ip: '203.0.113.7' } } })
  const line = await waitFor('the verified delivery', () => out.find((l) => l.includes(published.body.id)), Boolean, { timeoutMs: 10_000 })
  t.same(JSON.parse(line!), { webhookId: `msg_${published.body.id}_${created.body.id}`, type: 'authentication.login.success', id: published.body.id, stream: 'user:u-example', offset: 1 }, 'verified and handled')

  const forged = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'webhook-id': 'msg_x', 'webhook-timestamp': String(Math.floor(Date.now() / 1000)), 'webhook-signature': 'v1,' + Buffer.alloc(32).toString('base64') }, body: '{}' })
  t.equal(forged.status, 401, 'a forged signature is refused')
  await waitFor('the refusal logged', () => err.some((l) => /refused: no valid signature/.test(l)), Boolean, { timeoutMs: 5000 })
  const stale = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'webhook-id': 'msg_x', 'webhook-timestamp': String(Math.floor(Date.now() / 1000) - 3600), 'webhook-signature': 'v1,x' }, body: '{}' })
  t.equal(stale.status, 401, 'a stale timestamp is refused')

  // A retry (the same delivery again, correctly signed) is acknowledged and not handled twice.
  const body = '{"id":"dup-1","type":"authentication.logout"}'
  const timestamp = String(Math.floor(Date.now() / 1000))
  const key = Buffer.from((created.body.secret as string).slice(6), 'base64')
  const signature = 'v1,' + createHmac('sha256', key).update(`msg_dup.${timestamp}.${body}`).digest('base64')
  for (let i = 0; i < 2; i++) {
    const r = await fetch(`http://127.0.0.1:${port}/`, { method: 'POST', headers: { 'webhook-id': 'msg_dup', 'webhook-timestamp': timestamp, 'webhook-signature': signature }, body })
    t.equal(r.status, 204, `delivery ${i + 1} of the same webhook-id acknowledged`)
  }
  await node.api('/api/events', { body: { type: 'authentication.logout', userId: 'u-example' } })
  await waitFor('the next event', () => out.filter((l) => l.startsWith('{')).length, (n) => n === 3, { timeoutMs: 10_000 })
  t.equal(out.filter((l) => l.includes('dup-1')).length, 1, 'handled once')
})
