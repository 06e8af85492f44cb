// Floors (src/endpoints/connection.ts): after its welcome or a resume, a
// connection is not sent a live message at or below the position it was
// given on that stream (one still on its way through pub/sub). Dispatch skips
// the per-connection look-up for a message above every floor on its stream,
// so these drive several connections with floors on one stream, at other
// offsets and in other epochs, and check each gets exactly what its own
// floor lets through; and that the per-stream tops go with the floors.
import type { FastifyBaseLogger } from 'fastify'
import { pino } from 'pino'
import t from 'tap'
import { Connection, streamsWithFloors, type Site } from '../../src/endpoints/connection.js'
import type { Delivery } from '../../src/events/hub.js'

const log = pino({ level: 'silent' }) as unknown as FastifyBaseLogger
const site: Site = { endpoint: 'events', serverId: 'node-1', log, framesOut: { events: 0, admin: 0 } }

/** A connection whose transport records the positions of what it was sent. */
class Recorder extends Connection {
  readonly transport = 'ws' as const
  readonly got: string[] = []

  constructor (id: string) {
    super(id, site, { userId: id, sessionId: null, roles: ['user'], expiresAt: Infinity, issuedAt: null }, '127.0.0.1')
  }

  ping (): void {}
  protected congested (): boolean { return false }
  protected writeDelivery (d: Delivery): void { this.got.push(`${d.stream}@${d.epoch}:${d.offset}`) }
  protected writeMessage (): void {}
  protected terminate (): void {}
}

const message = (stream: string, epoch: string, offset: number | null): Delivery => {
  const frame = Buffer.from('{}')
  return { kind: 'event', stream, epoch, offset, frame: () => frame, wsFrame: () => frame, payload: () => ({}) }
}

/** Welcomed with `positions` (stream: [epoch, offset]), as lifecycle.ts welcomes a connection. */
function welcomed (id: string, positions: Record<string, [string, number]>): Recorder {
  const c = new Recorder(id)
  c.welcome({}, Object.fromEntries(Object.entries(positions).map(([s, [epoch, offset]]) => [s, { epoch, offset }])))
  return c
}

/** Each message to every connection, as the hub's dispatch loop does. */
function dispatch (conns: Recorder[], ...messages: Delivery[]): void {
  for (const m of messages) for (const c of conns) c.deliver(m)
}

t.test('a live message at or below the floor is not sent, one above it is, and those after', async (t) => {
  const a = welcomed('a', { 'broadcast': ['e1', 5] })
  t.teardown(() => { a.forgetFloors() })
  dispatch([a], message('broadcast', 'e1', 4), message('broadcast', 'e1', 5), message('broadcast', 'e1', 6), message('broadcast', 'e1', 7))
  t.same(a.got, ['broadcast@e1:6', 'broadcast@e1:7'])
})

t.test('connections with floors at different offsets on one stream each get what their own floor lets through', async (t) => {
  // The highest first, then a lower one: the stream's top must stay the highest.
  const high = welcomed('high', { 'broadcast': ['e1', 10] })
  const low = welcomed('low', { 'broadcast': ['e1', 3] })
  const none = new Recorder('none')
  none.welcome({})
  t.teardown(() => { for (const c of [high, low, none]) c.forgetFloors() })
  const all = [high, low, none]
  for (let offset = 2; offset <= 12; offset++) dispatch(all, message('broadcast', 'e1', offset))
  t.same(high.got, ['broadcast@e1:11', 'broadcast@e1:12'])
  t.same(low.got, [4, 5, 6, 7, 8, 9, 10, 11, 12].map((o) => `broadcast@e1:${o}`))
  t.same(none.got, [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map((o) => `broadcast@e1:${o}`))
})

t.test('a floor raised later on a stream holds even after messages above the others went by', async (t) => {
  const early = welcomed('early', { 'broadcast': ['e1', 3] })
  t.teardown(() => { early.forgetFloors() })
  dispatch([early], message('broadcast', 'e1', 4), message('broadcast', 'e1', 5))
  // A resume that read up to 8 while 6..8 are still on their way live.
  const late = welcomed('late', { 'broadcast': ['e1', 8] })
  t.teardown(() => { late.forgetFloors() })
  dispatch([early, late], message('broadcast', 'e1', 6), message('broadcast', 'e1', 7), message('broadcast', 'e1', 8), message('broadcast', 'e1', 9))
  t.same(early.got, [4, 5, 6, 7, 8, 9].map((o) => `broadcast@e1:${o}`))
  t.same(late.got, ['broadcast@e1:9'])
})

t.test('floors of two epochs on one stream: each connection is held to its own', async (t) => {
  // e1's highest floor is 10; a floor in e2, then a lower one in e1, must not make 5 of e1 look above every floor.
  const a = welcomed('a', { 'user:u': ['e1', 10] })
  const b = welcomed('b', { 'user:u': ['e2', 2] })
  const c = welcomed('c', { 'user:u': ['e1', 3] })
  t.teardown(() => { for (const x of [a, b, c]) x.forgetFloors() })
  dispatch([a, b, c], message('user:u', 'e1', 5))
  t.same(a.got, [], 'at or below its floor in that epoch')
  t.same(b.got, ['user:u@e1:5'], 'another epoch than its floor')
  t.same(c.got, ['user:u@e1:5'], 'above its floor')
  dispatch([a, b, c], message('user:u', 'e1', 10), message('user:u', 'e1', 11))
  t.same(a.got, ['user:u@e1:11'], 'held to 10 in e1')
  t.same(b.got, ['user:u@e1:5', 'user:u@e1:10', 'user:u@e1:11'], 'its floor went with the first message of another epoch')
  t.same(c.got, ['user:u@e1:5', 'user:u@e1:10', 'user:u@e1:11'])
})

t.test('a floor in one epoch, then a higher one in another: neither lets the other\'s messages through', async (t) => {
  const b = welcomed('b', { 'user:v': ['e2', 2] })
  const a = welcomed('a', { 'user:v': ['e1', 10] })
  const c = welcomed('c', { 'user:v': ['e2', 50] })
  t.teardown(() => { for (const x of [a, b, c]) x.forgetFloors() })
  dispatch([a], message('user:v', 'e1', 5))
  t.same(a.got, [], '5 of e1 is below its floor of 10')
  dispatch([c], message('user:v', 'e2', 20))
  t.same(c.got, [], '20 of e2 is below its floor of 50')
})

t.test('a resume that ends with its floor at a message held meanwhile does not send it, though others were just sent it', async (t) => {
  // A floor below 7, so that 7 is asked about (and found above every floor) before the resume's floor is raised.
  const other = welcomed('other', { 'broadcast': ['e1', 3] })
  const resuming = new Recorder('resuming')
  resuming.welcome({})
  t.teardown(() => { other.forgetFloors(); resuming.forgetFloors() })
  resuming.startReplay()
  // 7 goes out to the one and is held for the other, whose replay read up to 7.
  dispatch([other, resuming], message('broadcast', 'e1', 7))
  resuming.endReplay(new Map([['broadcast', { epoch: 'e1', offset: 7 }]]), () => {})
  dispatch([other, resuming], message('broadcast', 'e1', 8))
  t.same(other.got, ['broadcast@e1:7', 'broadcast@e1:8'])
  t.same(resuming.got, ['broadcast@e1:8'])
})

t.test('a message without a position (held through an outage) is sent whatever the floors', async (t) => {
  const a = welcomed('a', { 'broadcast': ['e1', 5] })
  t.teardown(() => { a.forgetFloors() })
  dispatch([a], message('broadcast', '', null))
  t.same(a.got, ['broadcast@:null'])
})

t.test('the per-stream tops go with the floors: lifted, expired or closed', async (t) => {
  const before = streamsWithFloors()
  const a = welcomed('a', { 'broadcast': ['e1', 5], 'user:a': ['e1', 1] })
  const b = welcomed('b', { 'broadcast': ['e1', 7], 'user:b': ['e1', 1] })
  t.equal(streamsWithFloors(), before + 3)
  // 6 is above a's floor and not b's: both look theirs up, and a's goes.
  dispatch([a, b], message('broadcast', 'e1', 6))
  t.same(a.got, ['broadcast@e1:6'])
  t.same(b.got, [])
  t.equal(streamsWithFloors(), before + 3, 'b still holds one on broadcast')
  a.forgetFloors()
  t.equal(streamsWithFloors(), before + 2, "a's own stream's goes with its connection")
  a.forgetFloors()
  t.equal(streamsWithFloors(), before + 2, 'forgetting twice counts once')
  b.expireFloors(Date.now() + 60_000)
  t.equal(streamsWithFloors(), before)
  // Nothing held any more: every message goes through.
  dispatch([b], message('broadcast', 'e1', 1))
  t.same(b.got, ['broadcast@e1:1'])
})
