// Publishing straight onto the cluster's Redis, with no node in between (the
// nodes deliver what Redis brings), an event for demo-user and a broadcast, then closing the publisher and the Redis
// client so the process exits. Against nodes started with REDIS_URL:
//
//   REDIS_URL=redis://127.0.0.1:6379 node examples/publisher-redis.js
//
// The key prefix is the nodes' REDIS_KEY_PREFIX (default herald:). A Redis
// Cluster: `new Cluster([{ host, port }])` from ioredis in place of `new Redis`.
// In your own project: the packed @herald/publisher and `ioredis` (README,
// "Installing the packages").
import { Redis } from 'ioredis'
import { HeraldPublisher } from '@herald/publisher'

const redis = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379')
const herald = new HeraldPublisher({ redis, keyPrefix: process.env.REDIS_KEY_PREFIX ?? 'herald:' })

try {
  const receipt = await herald.publishWithReceipt('authentication.login.success', { userId: 'demo-user', sessionId: 'demo-session', data: { ip: '192.0.2.10' } })
  console.log('published', JSON.stringify(receipt))
  const id = await herald.sendBroadcastNotification('info', 'Maintenance', 'Tonight from 2:00 to 4:00 UTC.')
  console.log('broadcast', id)
} finally {
  // close() settles what is in flight; the Redis client is yours to close.
  await herald.close()
  await redis.quit()
}
