// A resume whose later page cannot be read (Redis stops answering between
// two pages): the reply's position is where the pages sent brought the
// client, not where it started, so what the seam holds back is not sent
// again. On a stream store that answers the first page and never the next.
import t from 'tap'
import type { StreamRead, StreamStore } from '../../src/backend/streams.js'
import { createChannels } from '../../src/cluster/channels.js'
import { draft, place } from '../../src/events/codec.js'
import type { Delivery } from '../../src/events/hub.js'
import { replay, REPLAY_READ_TIMEOUT_MS, type Resumable } from '../../src/events/resume.js'
import { parsePattern } from '../../src/protocol/patterns.js'

const message = (offset: number): { offset: number, message: string } => {
  const json = JSON.stringify({ id: `m${offset}`, type: 'orders.created', timestamp: new Date().toISOString(), data: {}, userId: 'u', stream: 'user:u' })
  return { offset, message: place(draft({ kind: 'e', origin: '', publishedAt: Date.now(), type: 'orders.created', userId: 'u', stream: 'user:u', json }), { offset, epoch: 'E' }) }
}

t.test('a later page that does not answer: not recovered, at the last offset sent', { timeout: REPLAY_READ_TIMEOUT_MS + 10_000 }, async (t) => {
  const reads: number[] = []
  const streams: StreamStore = {
    history: { size: 1000, ttlMs: 300_000 },
    async position () { return { epoch: 'E', offset: 5 } },
    async read (_channel: string, after: number): Promise<StreamRead> {
      reads.push(after)
      // The first page, 1-2 of 5; the next never comes (Redis paused).
      if (after === 0) return { epoch: 'E', top: 5, messages: [message(1), message(2)], next: 2 }
      return await new Promise<StreamRead>(() => {})
    },
  }
  const sent: Delivery[] = []
  const conn = {
    kind: 'events', userId: 'u', guest: false, groups: null, closed: false,
    patterns: new Map([['*', parsePattern('*')!]]),
    deliver () {}, undeliverable () {},
    startReplay () {}, replay (d: Delivery) { sent.push(d) }, async drained () { return true },
  } as unknown as Resumable
  const r = await replay(streams, createChannels('herald:'), conn, { 'user:u': { epoch: 'E', offset: 0 } })
  t.same(reads, [0, 2], 'the first page, then the next asked for')
  t.equal(sent.length, 2, 'the first page was sent')
  t.same([r.recovered, r.unrecovered], [false, ['user:u']], 'not recovered')
  t.same(r.positions['user:u'], { epoch: 'E', offset: 2 }, 'at the last offset sent, not the one given')
  t.same(r.tops.get('user:u'), { epoch: 'E', offset: 2 }, 'and the seam drops held messages up to it')
})
