import type { Position } from '../events/codec.js'
import { checkRead, metaKey, metaTtlMs, newEpoch, page, streamKey, type Append, type HistoryConfig, type StreamMessage, type StreamRead, type StreamStore } from './streams.js'

// History on Redis (the keys: streams.ts). The append is one script, so the
// top offset, the stream entry and the PUBLISH happen as one step: no
// subscriber sees offset N+1 before N is readable, and two nodes publishing
// to one stream cannot interleave their offsets out of order on pub/sub
// (SignalR's Redis bus took the id and published in two steps, and lost
// messages; centrifuge's broker_history_add_stream.lua is the recipe). The
// stream, its meta and its channel share a hash slot (src/cluster/channels.ts),
// so the script runs on a Redis Cluster too, with SPUBLISH.

// KEYS: stream, meta, channel. ARGV: message head, JSON body without its
// closing brace, HISTORY_SIZE, HISTORY_TTL, meta TTL, an epoch for a stream
// that has none, PUBLISH or SPUBLISH, then channels that get the message live
// only (standalone: on a Cluster they are in other slots, so the caller
// publishes them). Returns {offset, epoch}. The message is place() of
// src/events/codec.ts, spelt in Lua.
export const APPEND_LUA = `
local function message (offset, epoch)
  return ARGV[1] .. offset .. '\\t' .. epoch .. '\\t' .. ARGV[2] .. ',"offset":' .. offset .. ',"epoch":"' .. epoch .. '"}'
end
local epoch = redis.call('HGET', KEYS[2], 'e')
if not epoch then
  -- No meta: Redis lost it (restart, FLUSHALL, eviction). What stream data is
  -- left belongs to the lost epoch, whose offsets the new one reuses.
  epoch = ARGV[6]
  redis.call('HSET', KEYS[2], 'e', epoch)
  redis.call('DEL', KEYS[1])
end
local offset = redis.call('HINCRBY', KEYS[2], 's', 1)
local msg = message(offset, epoch)
local added = redis.pcall('XADD', KEYS[1], 'MAXLEN', ARGV[3], offset .. '-0', 'm', msg)
if type(added) == 'table' and added.err then
  -- The stream holds this offset already (or is no stream): data of another
  -- history than the meta says. Rather than fail every publish on it for
  -- ever, its history counts as lost: a new epoch.
  epoch = ARGV[6]
  offset = 1
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'e', epoch, 's', offset)
  msg = message(offset, epoch)
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[3], '1-0', 'm', msg)
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
redis.call(ARGV[7], KEYS[3], msg)
for i = 8, #ARGV do redis.call(ARGV[7], ARGV[i], msg) end
return {offset, epoch}
`

// KEYS: stream, meta. ARGV: first entry id, count (0: the position only),
// an epoch for a stream that has none, meta TTL. Returns {epoch, top, entries?}.
// A read extends the meta's life: a stream someone reads keeps its epoch.
const READ_LUA = `
local m = redis.call('HMGET', KEYS[2], 'e', 's')
local epoch, top = m[1], m[2]
if not epoch then
  epoch = ARGV[3]
  top = 0
  redis.call('HSET', KEYS[2], 'e', epoch, 's', 0)
  redis.call('DEL', KEYS[1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[4])
if ARGV[2] == '0' then return {epoch, top} end
return {epoch, top, redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])}
`

/** What a client needs to run the scripts: ioredis (Redis or Cluster) has it. */
export interface ScriptingClient {
  defineCommand (name: string, def: { numberOfKeys: number, lua: string }): void
}

interface AppendCommand { heraldAppend (...args: Array<string | number>): Promise<[number | string, string]> }
interface ReadCommand { heraldStreamRead (...args: Array<string | number>): Promise<[string, string | number | null, Array<[string, string[]]>?]> }

/** Defines the append script on `client` (EVALSHA, falling back to EVAL on a connection that lacks it). */
export function defineAppend (client: ScriptingClient): (a: Append, history: HistoryConfig, command: 'publish' | 'spublish', liveInScript: boolean) => Promise<Position> {
  client.defineCommand('heraldAppend', { numberOfKeys: 3, lua: APPEND_LUA })
  const run = client as unknown as AppendCommand
  return async (a, h, command, liveInScript) => {
    const r = await run.heraldAppend(streamKey(a.channel), metaKey(a.channel), a.channel, a.draft.head, a.draft.body, h.size, h.ttlMs, metaTtlMs(h), newEpoch(), command, ...(liveInScript ? a.also : []))
    return { offset: Number(r[0]), epoch: r[1] }
  }
}

export class RedisStreams implements StreamStore {
  private readonly run: ReadCommand

  constructor (client: ScriptingClient, readonly history: HistoryConfig) {
    client.defineCommand('heraldStreamRead', { numberOfKeys: 2, lua: READ_LUA })
    this.run = client as unknown as ReadCommand
  }

  async position (channel: string): Promise<Position> {
    const [epoch, top] = await this.run.heraldStreamRead(streamKey(channel), metaKey(channel), '0', 0, newEpoch(), metaTtlMs(this.history))
    return { offset: Number(top ?? 0), epoch }
  }

  async read (channel: string, after: number, limit: number): Promise<StreamRead> {
    checkRead(after, limit)
    const [epoch, top, entries] = await this.run.heraldStreamRead(streamKey(channel), metaKey(channel), `${after + 1}-0`, limit, newEpoch(), metaTtlMs(this.history))
    const raw: StreamMessage[] = (entries ?? []).map(([id, fields]) => ({ offset: Number(id.slice(0, id.indexOf('-'))), message: fields[1] ?? '' }))
    return page(raw, epoch, Number(top ?? 0), limit, this.history.ttlMs, Date.now())
  }
}
