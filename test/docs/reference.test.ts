// The reference pages the README links are complete: docs/configuration.md
// names every variable of the environment schema, and docs/metrics.md every
// metric a node exports (scraped from a live node with Redis).
import { readFileSync } from 'node:fs'
import t from 'tap'
import { EnvSchema } from '../../src/config/schema.js'
import { startNode } from '../helpers/node.js'
import { startRedis } from '../helpers/redis.js'

const read = (f: string): string => readFileSync(new URL(`../../${f}`, import.meta.url), 'utf8')

t.test('docs/configuration.md lists every variable', async (t) => {
  const doc = read('docs/configuration.md')
  const names = Object.keys(EnvSchema.properties)
  t.ok(names.length > 30, 'the schema read')
  for (const name of names) t.ok(doc.includes(`\`${name}\``), `${name} documented`)
})

t.test('docs/metrics.md lists every metric a node exports', { timeout: 60_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  // A seeded webhook endpoint, so the per-endpoint series exist.
  const node = await startNode({ REDIS_URL: redis.url, WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: '127.0.0.0/8', WEBHOOKS: JSON.stringify([{ id: 'doc', url: 'http://127.0.0.1:9/', eventTypes: ['*'], secret: 'whsec_' + Buffer.alloc(24, 1).toString('base64') }]) })
  t.teardown(() => node.stop())
  const text = (await node.api('/metrics', { key: '' })).body as string
  const exported = [...text.matchAll(/^# TYPE (herald_\w+) /gm)].map((m) => m[1]!)
  const own = exported.filter((n) => !/^herald_(process|nodejs)_/.test(n))
  t.ok(own.length > 25, `the node's own metrics scraped (${own.length})`)
  const doc = read('docs/metrics.md')
  for (const name of own) t.ok(doc.includes(`\`${name}`), `${name} documented`)
  t.ok(exported.some((n) => n.startsWith('herald_process_')) && doc.includes('herald_process_'), 'Node\'s process metrics, by their prefix')
  t.ok(exported.some((n) => n.startsWith('herald_nodejs_')) && doc.includes('herald_nodejs_'), 'and its runtime metrics')
})
