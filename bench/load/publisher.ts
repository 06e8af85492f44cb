// Load generator: publishes at a set rate onto Redis in the format of the
// server under test, each event carrying its send time (`t`) and padding to
// about 150 bytes. Rate changes arrive over IPC; it stops when told or when
// the parent goes away.
import { Redis } from 'ioredis'
import { HeraldPublisher } from '../../src/client/publisher.js'

interface Cmd { kind: 'herald' | 'ws' | 'sio-ignored', redisUrl: string, rate: number, type?: string, users?: number, history?: boolean }

const PAD = 'x'.repeat(60)
let redis: Redis
let herald: HeraldPublisher
let rate = 0
let kind: Cmd['kind']
let users = 0
let sent = 0
let timer: NodeJS.Timeout | null = null
const now = (): number => performance.timeOrigin + performance.now()

let lastTick = 0
function tick (): void {
  // Send the share of the time since the last tick, carrying fractions over:
  // timers fire late, and assuming 10 ms per tick sent ~5% less than asked.
  const t = now()
  carry += rate * Math.min(t - lastTick, 100) / 1000
  lastTick = t
  const n = Math.floor(carry)
  carry -= n
  send(n)
}

function send (n: number): void {
  for (let i = 0; i < n; i++) {
    const t = now()
    if (kind === 'herald') {
      const k = sent++
      const userId = users > 0 ? `u${k % users}` : undefined
      void herald.publish(users > 0 ? 'authentication.login.success' : 'system.bench.tick', { ...(userId !== undefined ? { userId } : {}), data: { t, pad: PAD } })
    } else {
      sent++
      void redis.publish('bench', `{"type":"event","payload":{"t":${t},"pad":"${PAD}","type":"system.bench.tick"}}`)
    }
  }
}
let carry = 0

process.on('message', (m: Cmd & { stop?: boolean, burst?: number }) => {
  if (m.stop) { if (timer) clearInterval(timer); process.send!({ sent }); return }
  if (redis === undefined) {
    redis = new Redis(m.redisUrl)
    // As the nodes under test keep history: appending to streams, or only publishing.
    herald = new HeraldPublisher({ redis, ...(m.history === false ? { history: false as const } : {}) })
    kind = m.kind
    lastTick = now()
    timer = setInterval(tick, 10)
  }
  rate = m.rate
  users = m.users ?? 0
  if (m.burst !== undefined) send(m.burst)
  process.send!({ ok: true })
})
process.on('disconnect', () => process.exit(0))
