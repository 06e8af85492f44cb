// One publish path (src/events/publisher.ts): every entry point (the HTTP
// API, an operator action on /ws/admin and its audit event, the publisher
// library's direct-to-Redis mode on a standalone Redis and on a Redis
// Cluster) goes through the same Publisher. Pinned here for each entry point:
//
//   - the Publisher saw it: its diagnostics message (herald:event:published,
//     published by the Publisher and nothing else) names the id that went out;
//   - the message on Redis is the same: same channels, same header fields,
//     the same client payload but for the id and the time;
//   - it is delivered alike: an admin on a node receives the same payload;
//   - it was appended to its stream: the message carries its stream and
//     position (header and payload alike, the admin copy too), the stream
//     keeps that very message at that offset, and an entry point that
//     answers with a receipt (the API's 202, `broadcasted`, the library's
//     publishWithReceipt) answers with that position;
//   - its webhook job was enqueued with it: an endpoint subscribed to every
//     type receives it, under the webhook-id of the event and the endpoint,
//     with the very JSON the stream keeps as its client payload.
//
// Whatever the publish path does next gets its check in `observe`, and every
// entry point is held to it.
import diagnostics from 'node:diagnostics_channel'
import t, { type Test } from 'tap'
import { Cluster, type Redis } from 'ioredis'
import { HeraldPublisher, type Receipt } from '../../src/client/publisher.js'
import { decode } from '../../src/events/codec.js'
import type { EventPublished } from '../../src/observability/channels.js'
import { startApp, type RunningApp } from '../helpers/app.js'
import { connect, type TestClient } from '../helpers/client.js'
import { startReceiver, type Receiver } from '../helpers/receiver.js'
import { startRedisCluster } from '../helpers/redis-cluster.js'
import { startRedis } from '../helpers/redis.js'
import { adminToken, userToken } from '../helpers/tokens.js'
import { waitFor } from '../helpers/wait.js'

/** A message seen on Redis by a spy that is not a node. */
interface Seen { channel: string, raw: string }

/** What the Publisher reported (process-wide: the nodes and the library all run in this process). */
const publishedReports: EventPublished[] = []
const onPublished = (m: unknown): void => { publishedReports.push(m as EventPublished) }
diagnostics.subscribe('herald:event:published', onPublished)
t.teardown(() => { diagnostics.unsubscribe('herald:event:published', onPublished) })

/** One Redis setup: a node in this process, an admin on it, a spy on Herald's channels, a library publisher over a caller's client. */
interface Site {
  name: string
  node: RunningApp
  /** an admin on the node: receives every event */
  admin: TestClient
  /** a user on the node: receives broadcast notifications (admins receive none) */
  watcher: TestClient
  seen: Seen[]
  /** starts watching a user's channel (sharded channels are subscribed one by one) */
  watchUser (userId: string): Promise<void>
  library: HeraldPublisher
  /** what the stream of `channel` keeps at `offset`, read straight from Redis */
  kept (channel: string, offset: number): Promise<string | null>
  /** a webhook endpoint for every type, and its receiver */
  hook: { id: string, rx: Receiver }
}

/** Made before anything is published, so every publisher's first read of the endpoints finds it. */
async function hookOn (t: Test, node: RunningApp): Promise<Site['hook']> {
  const rx = await startReceiver(t)
  const r = await node.api('/api/webhooks', { body: { url: rx.url, eventTypes: ['*'] } })
  if (r.status !== 201) throw new Error(`webhook: ${r.status} ${JSON.stringify(r.body)}`)
  return { id: r.body.id, rx }
}

const LOOPBACK_HOOKS = { WEBHOOK_ALLOW_PRIVATE: '127.0.0.0/8', WEBHOOK_ALLOW_HTTP: 'true' }

/** The entry of a stream (a Redis Stream keyed `<channel>:s`, entry id `<offset>-0`, one field). */
async function keptIn (client: { xrange (key: string, start: string, end: string): Promise<Array<[string, string[]]>> }, channel: string, offset: number): Promise<string | null> {
  const entries = await client.xrange(`${channel}:s`, `${offset}-0`, `${offset}-0`)
  return entries[0]?.[1][1] ?? null
}

async function standaloneSite (t: Test): Promise<Site> {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const node = await startApp({ REDIS_URL: redis.url, SERVER_ID: `pp-standalone-${process.pid}`, ...LOOPBACK_HOOKS })
  t.teardown(() => node.close())
  const hook = await hookOn(t, node)
  const spy = redis.client()
  const seen: Seen[] = []
  spy.on('pmessage', (_p: string, channel: string, raw: string) => { seen.push({ channel, raw }) })
  await spy.psubscribe('herald:*')
  const caller = redis.client()
  const library = new HeraldPublisher({ redis: caller, keyPrefix: 'herald:' })
  t.teardown(() => library.close())
  const reader = redis.client()
  return { name: 'standalone', node, ...await receiversOn(t, node), seen, watchUser: async () => {}, library, kept: async (c, o) => await keptIn(reader, c, o), hook }
}

async function clusterSite (t: Test): Promise<Site> {
  const rc = await startRedisCluster(3)
  t.teardown(() => rc.stop())
  const node = await startApp({ REDIS_CLUSTER_NODES: rc.nodes, SERVER_ID: `pp-cluster-${process.pid}`, ...LOOPBACK_HOOKS })
  t.teardown(() => node.close())
  const hook = await hookOn(t, node)
  const nodes = rc.ports.map((port) => ({ host: '127.0.0.1', port }))
  const spy = new Cluster(nodes, { shardedSubscribers: true, redisOptions: { maxRetriesPerRequest: 1 } })
  const caller = new Cluster(nodes, { redisOptions: { maxRetriesPerRequest: 1 } })
  t.teardown(() => { spy.disconnect(); caller.disconnect() })
  const seen: Seen[] = []
  spy.on('smessage', (channel: string, raw: string) => { seen.push({ channel, raw }) })
  // One at a time: the two channels live in different slots.
  await spy.ssubscribe('herald:{a}')
  await spy.ssubscribe('herald:{b}')
  const library = new HeraldPublisher({ redis: caller, keyPrefix: 'herald:' })
  t.teardown(() => library.close())
  return { name: 'Redis Cluster', node, ...await receiversOn(t, node), seen, watchUser: async (u) => { await spy.ssubscribe(`herald:{u:${u}}`) }, library, kept: async (c, o) => await keptIn(caller, c, o), hook }
}

async function receiversOn (t: Test, node: RunningApp): Promise<{ admin: TestClient, watcher: TestClient }> {
  await waitFor('the node ready', async () => (await node.api('/ws/health', { key: '' })).status, (s) => s === 200, { timeoutMs: 10_000 })
  const admin = await connect(`${node.ws}/ws/admin`, { token: adminToken('operator') })
  const watcher = await connect(`${node.ws}/ws/events`, { token: userToken(`pp-watcher-${process.pid}`) })
  t.teardown(async () => { await admin.close(); await watcher.close() })
  await admin.subscribe(['*'])
  await watcher.subscribe(['*'])
  return { admin, watcher }
}

/** The same thing, as every entry point published it: the part that must not differ. */
interface Observed {
  /** what the Publisher reported of it (kind and type): once, or it did not go through the Publisher */
  reports: Array<{ kind: string, type: string }>
  channels: string[]
  header: { kind: string, origin: string, type: string, userId: string, stream: string }
  /** the client payload, but for its id, time and position */
  payload: Record<string, unknown>
  delivered: Record<string, unknown>
  /** the stream append, as seen on Redis and by the receiver */
  appended: {
    /** header and payload carry the same position, on every channel */
    positioned: boolean
    /** the stream keeps this very message at its offset */
    kept: boolean
    /** the receiver got it at that position */
    delivered: boolean
  }
  /** its webhook job: POSTed under its webhook-id, the body the stream keeps as its client payload */
  webhook: { id: boolean, body: boolean }
}

/**
 * Everything a publish of `id` left: the Publisher's report, the messages on
 * Redis, the frame a receiver got. `user` (the event's) is replaced by U.
 */
async function observe (t: Test, site: Site, how: string, published: Published, user: string | null, channels: number, receiver: TestClient): Promise<Observed> {
  const id = published.id
  const anonymise = (s: string): string => user === null ? s : s.split(user).join('U')
  const mine = (): Seen[] => site.seen.filter((m) => m.raw.includes(`"id":${JSON.stringify(id)}`))
  await waitFor(`${id} on Redis (${site.name})`, () => mine().length, (n) => n >= channels)
  const envs = mine().map((m) => ({ channel: m.channel, raw: m.raw, env: decode(m.raw)! }))
  const first = envs[0]!.env
  for (const e of envs) if (e.raw !== envs[0]!.raw) throw new Error('one message, the same on every channel')
  const strip = (json: string): Record<string, unknown> => {
    const { id: _id, timestamp, offset: _offset, epoch: _epoch, ...rest } = JSON.parse(anonymise(json)) as Record<string, unknown>
    if (typeof timestamp !== 'string' || Number.isNaN(Date.parse(timestamp))) throw new Error(`no timestamp in ${json}`)
    return rest
  }
  const frame = await receiver.next((f) => f.payload?.id === id, 5000)
  const payload = JSON.parse(first.json) as Record<string, unknown>
  const position = { stream: first.stream, offset: first.offset, epoch: first.epoch }
  // The stream's own channel is the one its name gives: the user's, or the broadcast or admin channel.
  const own = envs.find((e) => e.channel === (first.stream.startsWith('user:') ? `herald:{u:${first.stream.slice(5)}}` : first.stream === 'broadcast' ? 'herald:{b}' : 'herald:{a}'))
  const kept = own !== undefined && first.offset !== null ? await site.kept(own.channel, first.offset) : null
  if (published.receipt !== undefined) t.same(published.receipt, { id, ...position }, `${how}: answered with the position it got`)
  const webhookId = `msg_${id}_${site.hook.id}`
  const [posted] = await site.hook.rx.count(1, (r) => r.headers['webhook-id'] === webhookId)
  return {
    reports: publishedReports.filter((p) => p.id === id).map((p) => ({ kind: p.kind, type: p.type })),
    channels: envs.map((e) => anonymise(e.channel)).sort(),
    header: { kind: first.kind, origin: first.origin, type: first.type, userId: anonymise(first.userId), stream: anonymise(first.stream) },
    payload: strip(first.json),
    delivered: strip(JSON.stringify(frame.payload)),
    appended: {
      positioned: Number.isInteger(first.offset) && first.offset! > 0 && /^[A-Za-z0-9_-]{8}$/.test(first.epoch) &&
        payload.stream === first.stream && payload.offset === first.offset && payload.epoch === first.epoch,
      kept: kept === envs[0]!.raw,
      delivered: frame.payload.stream === first.stream && frame.payload.offset === first.offset && frame.payload.epoch === first.epoch,
    },
    webhook: { id: posted !== undefined, body: posted?.body === first.json },
  }
}

/** What an entry point gives back: the id, and the receipt when it answers with one. */
interface Published { id: string, receipt?: Receipt }

let n = 0
const target = (): string => `pp-user-${process.pid}-${++n}`
const auditData = (userId: string): Record<string, unknown> => ({ actor: { kind: 'admin', id: 'operator' }, targetUserId: userId })

interface EventInput { type: string, userId: string, data: Record<string, unknown> }

/** Ways in that publish any event. */
const anyEvent: Array<[string, (site: Site, e: EventInput) => Promise<Published>]> = [
  ['the HTTP API', async (site, e) => {
    const r = await site.node.api('/api/events', { body: e })
    if (r.status !== 202) throw new Error(`HTTP ${r.status} ${JSON.stringify(r.body)}`)
    return { id: r.body.id, receipt: r.body }
  }],
  ['the publisher library, straight onto Redis', async (site, e) => {
    const receipt = await site.library.publishWithReceipt(e.type, { userId: e.userId, data: e.data })
    return { id: receipt.id, receipt }
  }],
]

interface EventCase {
  name: string
  /** what is published, about user `u` */
  event: (u: string) => EventInput
  /** the channels it goes out on, the user's as U */
  channels: string[]
  /** the stream it belongs to */
  stream: string
  /** a way in that publishes only this event */
  own?: [string, (site: Site, u: string) => Promise<Published>]
}

const eventCases: EventCase[] = [
  {
    name: 'an event for a user',
    event: (u) => ({ type: 'authentication.login.success', userId: u, data: { ip: '203.0.113.5' } }),
    channels: ['herald:{a}', 'herald:{u:U}'],
    stream: 'user:U',
  },
  {
    // admin.* reaches admins only, even when it names a user.
    name: 'an operator\'s audit event',
    event: (u) => ({ type: 'admin.user.disconnected', userId: u, data: auditData(u) }),
    channels: ['herald:{a}'],
    stream: 'admin',
    own: ['an operator action on /ws/admin', async (site, u) => {
      const r = await site.admin.request('disconnect', { userId: u })
      if (r.type !== 'disconnected') throw new Error(JSON.stringify(r))
      const report = await waitFor('the audit event', () => publishedReports.find((p) => p.type === 'admin.user.disconnected' && site.seen.some((m) => m.raw.includes(p.id) && m.raw.includes(u))), Boolean)
      return { id: report!.id }
    }],
  },
]

const note = { level: 'warning', title: 'Maintenance', message: 'tonight at 01:00', data: { window: '01:00-02:00' } } as const

const notificationEntries: Array<[string, (site: Site) => Promise<Published>]> = [
  ['the HTTP API (an operator broadcast)', async (site) => {
    const r = await site.node.api('/api/notifications/broadcast', { body: note, key: adminToken('operator') })
    if (r.status !== 202) throw new Error(`HTTP ${r.status} ${JSON.stringify(r.body)}`)
    return { id: r.body.id, receipt: r.body }
  }],
  ['an operator action on /ws/admin', async (site) => {
    const r = await site.admin.request('broadcast', note)
    if (r.type !== 'broadcasted') throw new Error(JSON.stringify(r))
    return { id: r.payload.id, receipt: r.payload }
  }],
  ['the publisher library, straight onto Redis', async (site) => {
    const receipt = await site.library.notifyWithReceipt(null, note.level, note.title, note.message, note.data)
    return { id: receipt.id, receipt }
  }],
]

/** Every observation is the first one. */
function allAlike (t: Test, seen: Array<[string, Observed]>): void {
  for (const [how, o] of seen.slice(1)) t.same(o, seen[0]![1], `${how}: the same message on Redis, delivered alike`)
}

t.test('every entry point publishes through the one Publisher: same message on Redis, delivered alike', { timeout: 120_000 }, async (t) => {
  const sites = [await standaloneSite(t), await clusterSite(t)]
  for (const c of eventCases) {
    const seen: Array<[string, Observed]> = []
    for (const site of sites) {
      const ways: Array<[string, (u: string) => Promise<Published>]> = anyEvent.map(([how, f]) => [how, async (u) => await f(site, c.event(u))])
      if (c.own !== undefined) ways.push([c.own[0], async (u) => await c.own![1](site, u)])
      for (const [how, publish] of ways) {
        const u = target()
        await site.watchUser(u)
        const name = `${c.name} through ${how} (${site.name})`
        seen.push([name, await observe(t, site, name, await publish(u), u, c.channels.length, site.admin)])
      }
    }
    const { reports, channels, header, payload, appended } = seen[0]![1]
    const e = c.event('U')
    t.same(reports, [{ kind: 'event', type: e.type }], `${c.name}: the Publisher published it, once`)
    t.same(channels, c.channels, `${c.name}: on ${c.channels.join(' and ')}`)
    t.same(header, { kind: 'e', origin: '', type: e.type, userId: 'U', stream: c.stream }, `${c.name}: its header`)
    t.same(payload, { ...e, stream: c.stream }, `${c.name}: its payload is what was published, and its stream`)
    t.same(appended, { positioned: true, kept: true, delivered: true }, `${c.name}: appended to ${c.stream}, positioned, kept and delivered at its position`)
    t.same(seen[0]![1].webhook, { id: true, body: true }, `${c.name}: its webhook job enqueued with it, the body as clients receive it`)
    allAlike(t, seen)
  }

  const notes: Array<[string, Observed]> = []
  for (const site of sites) {
    for (const [how, publish] of notificationEntries) {
      const name = `a broadcast notification through ${how} (${site.name})`
      notes.push([name, await observe(t, site, name, await publish(site), null, 1, site.watcher)])
    }
  }
  const { reports, channels, header, payload, appended } = notes[0]![1]
  t.same(reports, [{ kind: 'notification', type: 'notification' }], 'a broadcast notification: the Publisher published it, once')
  t.same(channels, ['herald:{b}'], 'a broadcast notification: on the broadcast channel')
  t.same(header, { kind: 'n', origin: '', type: 'notification', userId: '', stream: 'broadcast' })
  t.same(payload, { ...note, stream: 'broadcast' })
  t.same(appended, { positioned: true, kept: true, delivered: true }, 'a broadcast notification: appended to the broadcast stream, kept and delivered at its position')
  t.same(notes[0]![1].webhook, { id: true, body: true }, 'a broadcast notification: its webhook job enqueued with it')
  allAlike(t, notes)
})

t.test('the library\'s close() waits for what it started, refuses more, and leaves the caller\'s client alone', { timeout: 30_000 }, async (t) => {
  const redis = await startRedis()
  t.teardown(() => redis.stop())
  const caller: Redis = redis.client()
  const spy = redis.client()
  const seen: string[] = []
  spy.on('message', (_c: string, raw: string) => { seen.push(raw) })
  await spy.subscribe('herald:{b}')
  const library = new HeraldPublisher({ redis: caller, keyPrefix: 'herald:' })
  let id: string | null = null
  const started = library.publishSystemEvent('system.maintenance.scheduled', { at: '01:00' }).then((x) => { id = x })
  await library.close()
  t.ok(id !== null, 'close() resolved after the publish started before it had completed')
  await started
  await waitFor('it on Redis', () => seen.some((m) => m.includes(id!)), Boolean)
  await t.rejects(library.publishSystemEvent('system.maintenance.scheduled'), /publisher closed/, 'publishing after close() is refused')
  t.equal(caller.status, 'ready', 'the caller\'s client is still connected')
  t.equal(await caller.ping(), 'PONG', 'and usable')
})
