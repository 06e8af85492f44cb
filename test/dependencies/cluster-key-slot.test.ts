// The appender (src/backend/streams-redis.ts) batches appends per Redis
// Cluster hash slot with cluster-key-slot: it must compute the slot Redis
// does (CLUSTER KEYSLOT), hash tags included, and the slot ioredis routes
// commands by, so a batch never spans two slots (CROSSSLOT) nor lands on a
// node that does not serve it (MOVED on every publish). ioredis 6 carries
// its own copy of cluster-key-slot 1.1.1, changed for keys with an empty hash
// tag (`{}`), which Herald never names: checked here key by key.
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { Cluster } from 'ioredis'
import t from 'tap'
import { slotOf } from '../../src/backend/streams-redis.js'
import { createChannels } from '../../src/cluster/channels.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'

t.test('cluster-key-slot is pinned, and gives the slots Redis and ioredis give', { timeout: 90_000 }, async (t) => {
  const pkg = JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as { dependencies: Record<string, string> }
  t.equal(pkg.dependencies['cluster-key-slot'], '1.1.1', 'pinned to the version ioredis\'s copy comes from')
  const ioredisDir = dirname(dirname(createRequire(import.meta.filename).resolve('ioredis')))
  const ioredisSlot = createRequire(ioredisDir + '/')('./built/utils/calculateSlot.js') as (key: string) => number

  const rc = await startRedisCluster(3)
  t.teardown(() => rc.stop())
  const c = new Cluster(rc.nodes.split(',').map((hp) => ({ host: hp.split(':')[0]!, port: Number(hp.split(':')[1]) })))
  t.teardown(() => c.disconnect())
  const ch = createChannels('herald:')
  const keys = [ch.user('alice'), `${ch.user('alice')}:s`, `${ch.user('alice')}:m`, ch.broadcast, ch.admin, ch.user('ünïcode-ü'), ch.user('a}b'), ch.user(''), 'plain', '{}x']
  // Not every key: for `x{}y{z}` (an empty tag, then another) it answers
  // otherwise than Redis. Herald names none such: its keys are the prefix
  // (no braces allowed in REDIS_KEY_PREFIX), then a tag that is never empty.
  for (const k of keys) {
    t.equal(slotOf(k), Number(await c.call('CLUSTER', 'KEYSLOT', k)), `slot of ${JSON.stringify(k)}`)
    t.equal(slotOf(k), ioredisSlot(k), `ioredis routes ${JSON.stringify(k)} by the same slot`)
  }
  t.equal(slotOf(`${ch.user('alice')}:s`), slotOf(ch.user('alice')), 'a stream shares its channel\'s slot')
})
