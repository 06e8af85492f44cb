import { createRequire } from 'node:module'
import { chunksOf, turnBatched } from './turn-batch.js'
import type { Position } from '../events/codec.js'
import { checkRead, metaKey, metaTtlMs, newEpoch, page, streamKey, type Append, type HistoryConfig, type StreamMessage, type StreamRead, type StreamStore } from './streams.js'
import { MAX_READ_BYTES } from './page-bytes.js'

// History on Redis (the keys: streams.ts). The append is one script, so the
// top offset, the stream entry and the PUBLISH happen as one step: no
// subscriber sees offset N+1 before N is readable, and two nodes publishing
// to one stream cannot interleave their offsets out of order on pub/sub
// (SignalR's Redis bus took the id and published in two steps, and lost
// messages; centrifuge's broker_history_add_stream.lua is the recipe). The
// stream, its meta and its channel share a hash slot (src/cluster/channels.ts),
// so the script runs on a Redis Cluster too, with SPUBLISH.

// One or more appends (a batch: what a busy node or publisher issues in one
// event-loop turn, so the script's fixed cost is paid once for them all);
// each is a step of its own, in order. KEYS: per append, its stream, meta and
// channel. ARGV: HISTORY_SIZE, HISTORY_TTL, meta TTL, PUBLISH or SPUBLISH;
// then per append: the message head, the JSON body without its closing brace,
// an epoch for a stream that has none, the number of channels that get the
// message live only, and those channels (standalone only: on a Cluster they
// are in other slots, so the caller publishes them). Returns offset, epoch
// per append. The message is place() of src/events/codec.ts, spelt in Lua.
//
// What is per stream is done once per stream per call: a stream that takes
// several appends in one call reads its epoch once, takes its offsets with
// one HINCRBY (by as many), and has its expiries set once, at its last
// append; each append still gets its own entry and its own PUBLISH, in order.
// Nobody sees the steps in between: a script runs alone. The offset is
// turned into text once (string.format: Lua's own number-to-text goes
// through the float printer, which cost Redis more than the HINCRBY), and
// no other number per append is (a Lua number given to redis.call is). The
// stream is trimmed with MAXLEN ~ (whole nodes, a few entries over
// HISTORY_SIZE at most): exact trimming rewrote the oldest node and searched
// for the new first entry on every append, a fifth of the append's cost;
// reads (READS_LUA) start no lower than HISTORY_SIZE below the top, so what
// a reader gets is the latest HISTORY_SIZE as before.
export const APPEND_LUA = `
local size, publish = ARGV[1], ARGV[4]
-- Expiries as absolute times, from the server's clock: a PEXPIRE is
-- rewritten into a PEXPIREAT for each call, about a third of what the
-- expiry cost.
local now = redis.call('TIME')
now = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local streamAt, metaAt = string.format('%d', now + tonumber(ARGV[2])), string.format('%d', now + tonumber(ARGV[3]))
local out = {}
local left, epochs, nexts = {}, {}, {}
for k = 1, #KEYS, 3 do
  local s = KEYS[k]
  left[s] = (left[s] or 0) + 1
end
local a = 5
for k = 1, #KEYS, 3 do
  local stream, meta, channel = KEYS[k], KEYS[k + 1], KEYS[k + 2]
  local head, body, fresh, live = ARGV[a], ARGV[a + 1], ARGV[a + 2], tonumber(ARGV[a + 3])
  local epoch, offset = epochs[stream], nexts[stream]
  local n = left[stream]
  if not epoch then
    epoch = redis.call('HGET', meta, 'e')
    if not epoch then
      -- No meta: Redis lost it (restart, FLUSHALL, eviction). What stream data
      -- is left belongs to the lost epoch, whose offsets the new one reuses.
      epoch = fresh
      redis.call('HSET', meta, 'e', epoch)
      redis.call('DEL', stream)
    end
    -- This append's offset, and the next n - 1 for this stream's others in the call.
    offset = redis.call('HINCRBY', meta, 's', n == 1 and '1' or string.format('%d', n)) - n + 1
  end
  local o = string.format('%d', offset)
  local msg = head .. o .. '\t' .. epoch .. '\t' .. body .. ',"offset":' .. o .. ',"epoch":"' .. epoch .. '"}'
  local added = redis.pcall('XADD', stream, 'MAXLEN', '~', size, o .. '-0', 'm', msg)
  if type(added) == 'table' and added.err then
    -- The stream holds this offset already (or is no stream): data of another
    -- history than the meta says. Rather than fail every publish on it for
    -- ever, its history counts as lost: a new epoch, whose offsets this
    -- append and the stream's others in the call take from 1.
    epoch = fresh
    offset = 1
    redis.call('DEL', stream)
    redis.call('HSET', meta, 'e', epoch, 's', string.format('%d', n))
    msg = head .. '1\t' .. epoch .. '\t' .. body .. ',"offset":1,"epoch":"' .. epoch .. '"}'
    redis.call('XADD', stream, 'MAXLEN', '~', size, '1-0', 'm', msg)
  end
  epochs[stream] = epoch
  nexts[stream] = offset + 1
  left[stream] = n - 1
  if n == 1 then
    -- The stream's last append in this call.
    redis.call('PEXPIREAT', stream, streamAt)
    redis.call('PEXPIREAT', meta, metaAt)
  end
  redis.call(publish, channel, msg)
  for i = a + 4, a + 3 + live do redis.call(publish, ARGV[i], msg) end
  a = a + 4 + live
  out[#out + 1] = offset
  out[#out + 1] = epoch
end
return out
`

/** What a client needs to run the scripts: ioredis (Redis or Cluster) has it. */
export interface ScriptingClient {
  defineCommand (name: string, def: { numberOfKeys: number, lua: string }): void
}

interface AppendCommand { heraldAppend (...args: Array<string | number>): Promise<Array<number | string>> }

/**
 * A key's Redis Cluster hash slot, as ioredis computes it to route commands
 * (ioredis carries its own copy of this version; test/dependencies checks
 * Herald's keys against both it and CLUSTER KEYSLOT). It ships no types.
 */
export const slotOf = createRequire(import.meta.url)('cluster-key-slot') as (key: string) => number

/** Appends per script call at most: a script blocks Redis while it runs (about 5 µs an append). */
const MAX_BATCH = 64

/** An append waiting to be sent: on its own (append) or as the i-th of a list (appendMany), answered together. */
type Waiting = { a: Append, resolve: (p: Position) => void, reject: (err: unknown) => void } | { a: Append, many: Many, i: number }

/** What appendMany() waits for: each answer in its place, no closure per append. */
class Many {
  left: number
  readonly out: Array<Position | Error>
  constructor (n: number, private readonly done: (out: Array<Position | Error>) => void) { this.left = n; this.out = new Array(n) }
  settle (i: number, p: Position | Error): void {
    this.out[i] = p
    if (--this.left === 0) this.done(this.out)
  }
}

/**
 * The append script (APPEND_LUA) on a client: each append answers on its
 * own, but those issued in one turn of the event loop go to Redis together:
 * one script call per MAX_BATCH, written back to back (one round trip). On a
 * Cluster, one call per hash slot: a script's keys must share one, and a
 * stream's keys share its channel's. Measured (bench/streams.ts): the fixed
 * cost of a script call is about a third of an append's; and per call the
 * node pays a socket write, which on loopback was the largest single cost of
 * an HTTP publish (bench/publish.ts --profile): a turn that reads sixteen
 * requests now writes once, not sixteen times.
 */
export class Appender {
  private queue: Waiting[] = []
  private scheduled: NodeJS.Immediate | null = null
  private readonly run: AppendCommand

  /**
   * `command`: PUBLISH, or SPUBLISH on a Cluster; `liveInScript`: the
   * live-only copies share the script's server (not a Cluster), so the
   * script publishes them; otherwise the caller does, and batches are per
   * hash slot.
   */
  constructor (client: ScriptingClient, private readonly history: HistoryConfig, private readonly command: 'publish' | 'spublish', readonly liveInScript: boolean) {
    // No numberOfKeys: a batch declares as many keys as it holds.
    client.defineCommand('heraldAppend', { lua: APPEND_LUA } as { numberOfKeys: number, lua: string })
    this.run = client as unknown as AppendCommand
  }

  append (a: Append): Promise<Position> {
    return new Promise((resolve, reject) => {
      this.queue.push({ a, resolve, reject })
      // After the I/O callbacks of this turn (every request read in it), not
      // after this one's microtasks.
      this.scheduled ??= setImmediate(() => { this.flush() })
    })
  }

  /** append() of each, in order, answered together: each its position or its error. */
  appendMany (list: readonly Append[]): Promise<Array<Position | Error>> {
    return new Promise((resolve) => {
      if (list.length === 0) { resolve([]); return }
      const many = new Many(list.length, resolve)
      for (let i = 0; i < list.length; i++) this.queue.push({ a: list[i]!, many, i })
      this.scheduled ??= setImmediate(() => { this.flush() })
    })
  }

  /**
   * Sends what waits now. Called before any other command on the same
   * connection (a plain publish), so Redis takes them in the order they
   * were issued.
   */
  flush (): void {
    if (this.scheduled !== null) { clearImmediate(this.scheduled); this.scheduled = null }
    if (this.queue.length === 0) return
    const q = this.queue
    this.queue = []
    if (this.liveInScript) {
      for (const part of chunksOf(q, MAX_BATCH)) this.send(part)
      return
    }
    // A Cluster: one batch per hash slot, in first-issued order.
    const bySlot = new Map<number, Waiting[]>()
    for (const w of q) {
      const slot = slotOf(w.a.channel)
      const batch = bySlot.get(slot)
      if (batch === undefined) bySlot.set(slot, [w])
      else batch.push(w)
    }
    for (const batch of bySlot.values()) for (const part of chunksOf(batch, MAX_BATCH)) this.send(part)
  }

  private send (batch: readonly Waiting[]): void {
    const h = this.history
    const keys: string[] = []
    const argv: Array<string | number> = [h.size, h.ttlMs, metaTtlMs(h), this.command]
    for (const { a } of batch) {
      keys.push(streamKey(a.channel), metaKey(a.channel), a.channel)
      const live = this.liveInScript ? a.also : []
      argv.push(a.draft.head, a.draft.body, newEpoch(), live.length, ...live)
    }
    this.run.heraldAppend(keys.length, ...keys, ...argv).then((r) => {
      for (let i = 0; i < batch.length; i++) {
        const w = batch[i]!
        const p = { offset: Number(r[2 * i]), epoch: String(r[2 * i + 1]) }
        if ('many' in w) w.many.settle(w.i, p)
        else w.resolve(p)
      }
    }, (err: unknown) => {
      for (const w of batch) {
        if ('many' in w) w.many.settle(w.i, err instanceof Error ? err : new Error(String(err)))
        else w.reject(err)
      }
    })
  }
}

// Reads of many streams in one call. KEYS: a stream's key and its meta's per
// read. ARGV[1] the meta's TTL, ARGV[2] HISTORY_SIZE, ARGV[3] MAX_READ_BYTES,
// then per read: the first offset wanted, the count (0: the position only),
// an epoch for a stream that has none. Replies {epoch, top, entries?} per
// read. Entries are read 64 at a time up to the count, or until their
// messages reach MAX_READ_BYTES (the one that reaches it included): a read's
// reply stays about that size whatever the messages weigh. A read
// extends the meta's life: a stream someone reads keeps its epoch. Entries
// HISTORY_SIZE or more below the top are not read: the append trims whole
// nodes (MAXLEN ~), so the stream may still hold a few of them.
const READS_LUA = `
local out = {}
local size, budget = tonumber(ARGV[2]), tonumber(ARGV[3])
for i = 1, #KEYS / 2 do
  local s, m, a = KEYS[2 * i - 1], KEYS[2 * i], 3 * i + 1
  local e = redis.call('HMGET', m, 'e', 's')
  local epoch, top = e[1], e[2]
  if not epoch then
    epoch = ARGV[a + 2]
    top = 0
    redis.call('HSET', m, 'e', epoch, 's', 0)
    redis.call('DEL', s)
  end
  redis.call('PEXPIRE', m, ARGV[1])
  if ARGV[a + 1] == '0' then
    out[i] = {epoch, top or 0}
  else
    local from = tonumber(ARGV[a])
    local oldest = (tonumber(top) or 0) - size + 1
    if oldest > from then from = oldest end
    local want, entries, bytes = tonumber(ARGV[a + 1]), {}, 0
    local start = string.format('%d', from) .. '-0'
    while #entries < want and bytes < budget do
      local ask = math.min(want - #entries, 64)
      local chunk = redis.call('XRANGE', s, start, '+', 'COUNT', ask)
      for _, en in ipairs(chunk) do
        entries[#entries + 1] = en
        bytes = bytes + #en[2][2]
        if bytes >= budget then break end
      end
      if #chunk < ask then break end
      start = '(' .. chunk[#chunk][1]
    end
    out[i] = {epoch, top or 0, entries}
  end
end
return out
`

/**
 * Per reads call at most: streams, and messages asked for. A script holds
 * Redis while it runs (a few µs a stream, about a µs a message read).
 */
const READS_PER_CALL = 256
const MESSAGES_PER_CALL = 4096

type Reply = [string, string | number, Array<[string, string[]]>?]
interface ReadsCommand { heraldStreamReads (...args: Array<string | number>): Promise<Reply[]> }

/** One read: the channel, then `after` and `limit` (0: the position only). */
const readKey = (channel: string, after: number, limit: number): string => `${after}\n${limit}\n${channel}`

export class RedisStreams implements StreamStore {
  private readonly run: ReadsCommand
  /**
   * The reads and positions asked for in one turn, one script call for them
   * (per hash slot on a Cluster): a reconnect storm's welcomes and resumes
   * read thousands of streams a second, each read once a turn however many ask.
   */
  private readonly batched: (key: string) => Promise<Reply>

  constructor (client: ScriptingClient & { isCluster?: boolean }, readonly history: HistoryConfig) {
    // No numberOfKeys: a call declares as many keys as it holds.
    client.defineCommand('heraldStreamReads', { lua: READS_LUA } as { numberOfKeys: number, lua: string })
    this.run = client as unknown as ReadsCommand
    const cluster = client.isCluster === true
    this.batched = turnBatched(async (keys) => {
      const reads = keys.map((k) => { const [after, limit, ...rest] = k.split('\n'); return { channel: rest.join('\n'), after: Number(after), limit: Number(limit) } })
      if (!cluster) return await this.reads(reads)
      // A script's keys must share a hash slot: a stream's keys share its channel's.
      const bySlot = new Map<number, number[]>()
      reads.forEach((r, i) => {
        const slot = slotOf(r.channel)
        const list = bySlot.get(slot)
        if (list === undefined) bySlot.set(slot, [i])
        else list.push(i)
      })
      const out: Reply[] = new Array(reads.length)
      await Promise.all([...bySlot.values()].map(async (list) => { (await this.reads(list.map((i) => reads[i]!))).forEach((r, n) => { out[list[n]!] = r }) }))
      return out
    })
  }

  async position (channel: string): Promise<Position> {
    const [epoch, top] = await this.batched(readKey(channel, 0, 0))
    return { offset: Number(top ?? 0), epoch }
  }

  private async reads (reads: ReadonlyArray<{ channel: string, after: number, limit: number }>): Promise<Reply[]> {
    const calls: Array<Promise<Reply[]>> = []
    let from = 0
    while (from < reads.length) {
      let to = from
      let messages = 0
      while (to < reads.length && to - from < READS_PER_CALL && (to === from || messages + reads[to]!.limit <= MESSAGES_PER_CALL)) messages += reads[to++]!.limit
      const part = reads.slice(from, to)
      calls.push(this.run.heraldStreamReads(part.length * 2, ...part.flatMap((r) => [streamKey(r.channel), metaKey(r.channel)]), metaTtlMs(this.history), this.history.size, MAX_READ_BYTES,
        ...part.flatMap((r) => [r.after + 1, r.limit, newEpoch()])))
      from = to
    }
    return (await Promise.all(calls)).flat()
  }

  async read (channel: string, after: number, limit: number): Promise<StreamRead> {
    checkRead(after, limit)
    const [epoch, top, entries] = await this.batched(readKey(channel, after, limit))
    const raw: StreamMessage[] = (entries ?? []).map(([id, fields]) => ({ offset: Number(id.slice(0, id.indexOf('-'))), message: fields[1] ?? '' }))
    return page(raw, epoch, Number(top ?? 0), limit, this.history.ttlMs, Date.now())
  }
}
