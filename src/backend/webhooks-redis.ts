import type { RedisClient } from './redis-clients.js'
import type { ScriptingClient } from './streams-redis.js'
import { MAX_READ_BYTES } from './page-bytes.js'
import {
  ATTEMPT_LOG, GROUP, MAX_DEAD_LETTERS, deadLetterBytes, deadLetterPage, definitionJson, fromStored, parseBreaker, webhookKeys,
  type AttemptRecord, type BreakerChange, type BreakerConfig, type BreakerState, type ClaimedJob, type DeadLetterPage, type EndpointRecord,
  type Enqueue, type JobRecord, type QueueStats, type Settlement, type WebhookKeys, type WebhookStore,
} from './webhooks.js'

// The queue on Redis (the keys: webhooks.ts): a Redis Stream per endpoint
// read by one consumer group, `d`, that every node belongs to under its
// SERVER_ID. XREADGROUP claims (the entry joins the group's pending list
// under the node), XACK/XDEL settle, XCLAIM and XAUTOCLAIM take over what a
// dead node or a lapsed lease left. Streams have no delayed delivery: a
// retry waits in a sorted set by due time, moved back by a script (promote).
// A stream per endpoint, rather than one for all, so a node reads from each
// endpoint no more than it may have in flight there: one slow endpoint's
// backlog waits in its own stream and delays nobody else's.

/** Moves what is queued for an endpoint (at most MAX_DEAD_LETTERS) to its dead letters; the rest of the queue goes. */
const BURY_LUA = `
local function bury(dl, dlb, dlm, age, w, job, attempts, reason, now, deadMax)
  redis.call('ZADD', dl, now, w)
  redis.call('HSET', dlb, w, job)
  redis.call('HSET', dlm, w, '{"reason":"' .. reason .. '","deadAt":' .. now .. ',"attempts":' .. attempts .. '}')
  redis.call('ZREM', age, w)
  local extra = redis.call('ZCARD', dl) - deadMax
  if extra > 0 then
    local old = redis.call('ZPOPMIN', dl, extra)
    for i = 1, #old, 2 do
      redis.call('HDEL', dlb, old[i])
      redis.call('HDEL', dlm, old[i])
    end
  end
end
local function buryAll(q, r, age, dl, dlb, dlm, now, deadMax, group)
  if redis.call('EXISTS', q) == 1 then
    for _, e in ipairs(redis.call('XRANGE', q, '-', '+', 'COUNT', deadMax)) do
      local job = e[2][2]
      bury(dl, dlb, dlm, age, cjson.decode(job).webhookId, job, e[2][4], 'disabled', now, deadMax)
    end
    redis.call('DEL', q)
  end
  redis.call('XGROUP', 'CREATE', q, group, '0', 'MKSTREAM')
  for _, m in ipairs(redis.call('ZRANGE', r, 0, deadMax - 1)) do
    local t = string.find(m, '\\t', 1, true)
    local job = string.sub(m, t + 1)
    bury(dl, dlb, dlm, age, cjson.decode(job).webhookId, job, string.sub(m, 1, t - 1), 'disabled', now, deadMax)
  end
  redis.call('DEL', r, age)
end
`

// KEYS: ep, on, off, ver, q, r, age, dl, dlb, dlm, br.
// ARGV: id, definition, mode, enabled, reason, max, group, now, deadMax.
const SAVE_LUA = BURY_LUA + `
local id, mode = ARGV[1], ARGV[3]
local exists = redis.call('HEXISTS', KEYS[1], id) == 1
local full = redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[6])
if mode == 'create' and (exists or full) then return 0 end
if mode == 'update' and not exists then return 0 end
if mode == 'upsert' and not exists and full then return 0 end
local was = redis.call('SISMEMBER', KEYS[2], id) == 1
redis.call('HSET', KEYS[1], id, ARGV[2])
if ARGV[4] == '1' then
  redis.call('SADD', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  if exists and not was then redis.call('HSET', KEYS[11], id, 'closed|0|0|' .. ARGV[8] .. '|0|0|1') end
else
  redis.call('SREM', KEYS[2], id)
  redis.call('HSET', KEYS[3], id, ARGV[5])
  if was then buryAll(KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], ARGV[8], tonumber(ARGV[9]), ARGV[7]) end
end
if redis.call('EXISTS', KEYS[5]) == 0 then redis.call('XGROUP', 'CREATE', KEYS[5], ARGV[7], '0', 'MKSTREAM') end
redis.call('INCR', KEYS[4])
return 1
`

// KEYS: on, off, ver, q, r, age, dl, dlb, dlm. ARGV: id, reason, now, deadMax, group.
const DISABLE_LUA = BURY_LUA + `
if redis.call('SREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('INCR', KEYS[3])
buryAll(KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], ARGV[3], tonumber(ARGV[4]), ARGV[5])
return 1
`

// KEYS: ep, on, off, br, ver, then the endpoint's q, r, age, dl, dlb, dlm, log. ARGV: id.
const REMOVE_LUA = `
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('DEL', KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10], KEYS[11], KEYS[12])
redis.call('INCR', KEYS[5])
return 1
`

// KEYS: on, then per job its endpoint's q, age. ARGV: now, group, PUBLISH or
// SPUBLISH, the wake channel, then per job: endpoint id, webhook-id, job.
// Jobs of an endpoint that is gone or disabled are dropped.
export const ENQUEUE_LUA = `
local n = 0
local a = 5
for k = 2, #KEYS, 2 do
  local id, w, job = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  a = a + 3
  if redis.call('SISMEMBER', KEYS[1], id) == 1 then
    if redis.call('EXISTS', KEYS[k]) == 0 then redis.call('XGROUP', 'CREATE', KEYS[k], ARGV[2], '0', 'MKSTREAM') end
    redis.call('XADD', KEYS[k], '*', 'j', job, 'n', '0')
    redis.call('ZADD', KEYS[k + 1], 'NX', ARGV[1], w)
    n = n + 1
  end
end
if n > 0 then redis.call(ARGV[3], ARGV[4], '') end
return n
`

// KEYS: br, ep, then per settlement its endpoint's q, r, age, dl, dlb, dlm, log.
// ARGV: now, group, log size, deadMax, window, min attempts, failure ratio,
// cool-down, max cool-down, PUBLISH or SPUBLISH, the wake channel; then per
// settlement: kind, endpoint id, entry, webhook-id, job (retry, dead and
// release only), attempts (after this one), due time (retry) or reason
// (dead), the attempt (JSON).
// A settlement whose entry is no longer pending (XACK answers 0: settled by
// a node that took it over, or gone with its queue when its endpoint was
// disabled) changes nothing. Each endpoint's breaker is read once and
// written once per call, each attempt a step of it in order.
// Returns the breakers' changes: endpoint id, change, ...
const SETTLE_LUA = BURY_LUA + `
local br, ep = KEYS[1], KEYS[2]
local now, group, logMax, deadMax = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local window, minA, ratio, cooldown, maxCd = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])
local states, order, logs = {}, {}, {}
local function load(id)
  local b = states[id]
  if b ~= nil then return b end
  if redis.call('HEXISTS', ep, id) == 0 then
    states[id] = false
    return false
  end
  local s = redis.call('HGET', br, id)
  b = { 'closed', 0, 0, now, 0, 0, '0' }
  if s then
    local t = {}
    for x in string.gmatch(s, '[^|]+') do t[#t + 1] = x end
    b = { t[1], tonumber(t[2]), tonumber(t[3]), tonumber(t[4]), tonumber(t[5]), tonumber(t[6]), t[7] }
  end
  states[id] = b
  order[#order + 1] = id
  return b
end
local changes = {}
local function step(id, ok)
  local b = load(id)
  if not b then return end
  local change = false
  if b[1] == 'half-open' then
    if ok then
      b[1], b[2], b[3], b[4], b[5], b[6], b[7] = 'closed', 0, 0, now, 0, 0, '0'
      change = 'recovered'
    else
      b[3] = math.min(b[3] * 2, maxCd)
      b[1], b[2] = 'open', now + b[3]
      change = 'opened'
    end
  elseif b[1] == 'closed' then
    if now - b[4] >= window then b[4], b[5], b[6] = now, 0, 0 end
    if ok then
      b[5] = b[5] + 1
      if b[7] == '1' then b[7], change = '0', 'recovered' end
    else
      b[6] = b[6] + 1
      if b[5] + b[6] >= minA and b[6] / (b[5] + b[6]) >= ratio then
        b[1], b[2], b[3], change = 'open', now + cooldown, cooldown, 'opened'
      end
    end
  end
  if change then
    changes[#changes + 1] = id
    changes[#changes + 1] = change
  end
end
local released = false
local a = 12
for k = 3, #KEYS, 7 do
  local q, r, age, dl, dlb, dlm, log = KEYS[k], KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], KEYS[k + 4], KEYS[k + 5], KEYS[k + 6]
  local kind, id, entry, w, job, n, extra, attempt = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4], ARGV[a + 5], ARGV[a + 6], ARGV[a + 7]
  a = a + 8
  if redis.call('XACK', q, group, entry) == 1 then
    redis.call('XDEL', q, entry)
    if kind == 'release' then
      redis.call('XADD', q, '*', 'j', job, 'n', n)
      released = true
    else
      if kind == 'delivered' then
        redis.call('ZREM', age, w)
      elseif kind == 'retry' then
        redis.call('ZADD', r, extra, n .. '\\t' .. job)
      else
        bury(dl, dlb, dlm, age, w, job, n, extra, now, deadMax)
      end
      redis.call('LPUSH', log, attempt)
      logs[log] = true
      step(id, kind == 'delivered')
    end
  end
end
for log in pairs(logs) do redis.call('LTRIM', log, 0, logMax - 1) end
for _, id in ipairs(order) do
  local b = states[id]
  redis.call('HSET', br, id, b[1] .. '|' .. b[2] .. '|' .. b[3] .. '|' .. b[4] .. '|' .. b[5] .. '|' .. b[6] .. '|' .. b[7])
end
if released then redis.call(ARGV[10], ARGV[11], '') end
return changes
`

// KEYS: per endpoint its r, q. ARGV: now, limit, group, PUBLISH or SPUBLISH, the wake channel.
const PROMOTE_LUA = `
local moved = 0
for k = 1, #KEYS, 2 do
  local due = redis.call('ZRANGEBYSCORE', KEYS[k], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
  if #due > 0 then
    if redis.call('EXISTS', KEYS[k + 1]) == 0 then redis.call('XGROUP', 'CREATE', KEYS[k + 1], ARGV[3], '0', 'MKSTREAM') end
    for _, m in ipairs(due) do
      local t = string.find(m, '\\t', 1, true)
      redis.call('XADD', KEYS[k + 1], '*', 'j', string.sub(m, t + 1), 'n', string.sub(m, 1, t - 1))
      redis.call('ZREM', KEYS[k], m)
      moved = moved + 1
    end
  end
end
if moved > 0 then redis.call(ARGV[4], ARGV[5], '') end
return moved
`

// KEYS: br. ARGV: id, now, lease.
const PROBE_LUA = `
local s = redis.call('HGET', KEYS[1], ARGV[1])
if not s then return 0 end
local t = {}
for x in string.gmatch(s, '[^|]+') do t[#t + 1] = x end
local now = tonumber(ARGV[2])
if (t[1] ~= 'open' and t[1] ~= 'half-open') or now < tonumber(t[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], 'half-open|' .. (now + tonumber(ARGV[3])) .. '|' .. t[3] .. '|' .. t[4] .. '|' .. t[5] .. '|' .. t[6] .. '|' .. t[7])
return 1
`

// KEYS: ep, dl, dlb, dlm, q, age. ARGV: now, group, PUBLISH or SPUBLISH, the wake channel, limit, id, webhook-ids...
const REPLAY_LUA = `
if redis.call('HEXISTS', KEYS[1], ARGV[6]) == 0 then return 0 end
local ids = {}
if #ARGV > 6 then
  for i = 7, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  ids = redis.call('ZREVRANGE', KEYS[2], 0, tonumber(ARGV[5]) - 1)
end
if redis.call('EXISTS', KEYS[5]) == 0 then redis.call('XGROUP', 'CREATE', KEYS[5], ARGV[2], '0', 'MKSTREAM') end
local n = 0
for _, w in ipairs(ids) do
  local job = redis.call('HGET', KEYS[3], w)
  if job then
    redis.call('XADD', KEYS[5], '*', 'j', job, 'n', '0')
    redis.call('ZADD', KEYS[6], ARGV[1], w)
    redis.call('ZREM', KEYS[2], w)
    redis.call('HDEL', KEYS[3], w)
    redis.call('HDEL', KEYS[4], w)
    n = n + 1
  end
end
if n > 0 then redis.call(ARGV[3], ARGV[4], '') end
return n
`

type Run = (...args: Array<string | number>) => Promise<unknown>
interface Commands {
  heraldWhSave: Run
  heraldWhDisable: Run
  heraldWhRemove: Run
  heraldWhEnqueue: Run
  heraldWhSettle: Run
  heraldWhPromote: Run
  heraldWhProbe: Run
  heraldWhReplay: Run
}

/** XREADGROUP/XCLAIM entries: [id, [field, value, ...]] (null fields: deleted). */
type Entry = [string, string[] | null]

function claimedOf (e: Entry): ClaimedJob | null {
  const f = e[1]
  if (f === null) return null
  let job = ''
  let n = '0'
  for (let i = 0; i + 1 < f.length; i += 2) {
    if (f[i] === 'j') job = f[i + 1]!
    else if (f[i] === 'n') n = f[i + 1]!
  }
  return job === '' ? null : { entry: e[0], attempts: Number(n), job: JSON.parse(job) as JobRecord }
}

/** The store on a Redis (standalone or Cluster): every script's keys share the `{wh}` hash tag. */
export class RedisWebhooks implements WebhookStore {
  private readonly k: WebhookKeys
  private readonly run: Commands
  private readonly publish: 'publish' | 'spublish'

  constructor (private readonly client: RedisClient, prefix: string, sharded: boolean) {
    this.k = webhookKeys(prefix)
    this.publish = sharded ? 'spublish' : 'publish'
    const c = client as unknown as ScriptingClient
    c.defineCommand('heraldWhSave', { numberOfKeys: 11, lua: SAVE_LUA })
    c.defineCommand('heraldWhDisable', { numberOfKeys: 9, lua: DISABLE_LUA })
    c.defineCommand('heraldWhRemove', { numberOfKeys: 12, lua: REMOVE_LUA })
    c.defineCommand('heraldWhEnqueue', { lua: ENQUEUE_LUA } as { numberOfKeys: number, lua: string })
    c.defineCommand('heraldWhSettle', { lua: SETTLE_LUA } as { numberOfKeys: number, lua: string })
    c.defineCommand('heraldWhPromote', { lua: PROMOTE_LUA } as { numberOfKeys: number, lua: string })
    c.defineCommand('heraldWhProbe', { numberOfKeys: 1, lua: PROBE_LUA })
    c.defineCommand('heraldWhReplay', { numberOfKeys: 6, lua: REPLAY_LUA })
    this.run = client as unknown as Commands
  }

  async version (): Promise<number> {
    return Number(await this.client.get(this.k.version) ?? 0)
  }

  async endpoints (): Promise<EndpointRecord[]> {
    const res = await this.client.multi().hgetall(this.k.endpoints).smembers(this.k.enabled).hgetall(this.k.disabled).exec()
    if (res === null) throw new Error('the endpoints read was aborted')
    for (const [err] of res) if (err !== null) throw err
    const defs = res[0]![1] as Record<string, string>
    const on = new Set(res[1]![1] as string[])
    const off = res[2]![1] as Record<string, string>
    return Object.entries(defs).map(([id, json]) => fromStored(json, on.has(id), off[id]))
  }

  async endpoint (id: string): Promise<EndpointRecord | null> {
    const res = await this.client.multi().hget(this.k.endpoints, id).sismember(this.k.enabled, id).hget(this.k.disabled, id).exec()
    if (res === null) throw new Error('the endpoint read was aborted')
    for (const [err] of res) if (err !== null) throw err
    const json = res[0]![1] as string | null
    return json === null ? null : fromStored(json, res[1]![1] === 1, (res[2]![1] as string | null) ?? undefined)
  }

  private endpointKeys (id: string): string[] {
    const k = this.k
    return [k.queue(id), k.retries(id), k.age(id), k.dead(id), k.deadJobs(id), k.deadMeta(id)]
  }

  async save (e: EndpointRecord, mode: 'create' | 'update' | 'upsert', max: number): Promise<boolean> {
    const k = this.k
    const r = await this.run.heraldWhSave(k.endpoints, k.enabled, k.disabled, k.version, ...this.endpointKeys(e.id), k.breakers,
      e.id, definitionJson(e), mode, e.enabled ? '1' : '0', e.disabledReason ?? 'operator', max, GROUP, Date.now(), MAX_DEAD_LETTERS)
    return r === 1
  }

  async remove (id: string): Promise<boolean> {
    const k = this.k
    return await this.run.heraldWhRemove(k.endpoints, k.enabled, k.disabled, k.breakers, k.version, ...this.endpointKeys(id), k.log(id), id) === 1
  }

  async disable (id: string, reason: string, now: number): Promise<boolean> {
    const k = this.k
    return await this.run.heraldWhDisable(k.enabled, k.disabled, k.version, ...this.endpointKeys(id), id, reason, now, MAX_DEAD_LETTERS, GROUP) === 1
  }

  async enqueue (jobs: readonly Enqueue[], now: number): Promise<number> {
    return await enqueueWith(this.run, this.k, this.publish, jobs, now)
  }

  async claim (consumer: string, asks: ReadonlyArray<{ endpointId: string, count: number }>): Promise<ClaimedJob[]> {
    if (asks.length === 0) return []
    const p = this.client.pipeline()
    for (const a of asks) p.xreadgroup('GROUP', GROUP, consumer, 'COUNT', a.count, 'STREAMS', this.k.queue(a.endpointId), '>')
    const res = await p.exec() ?? []
    const out: ClaimedJob[] = []
    const missing: string[] = []
    res.forEach(([err, reply], i) => {
      if (err !== null) {
        // The queue lost its group (Redis restarted without it): made again, read next time.
        if (/NOGROUP/.test(err.message)) missing.push(asks[i]!.endpointId)
        else throw err
        return
      }
      const streams = reply as Array<[string, Entry[]]> | null
      for (const [, entries] of streams ?? []) for (const e of entries) { const c = claimedOf(e); if (c !== null) out.push(c) }
    })
    for (const id of missing) await this.client.xgroup('CREATE', this.k.queue(id), GROUP, '0', 'MKSTREAM').catch(() => {})
    return out
  }

  async settle (settlements: readonly Settlement[], now: number, cfg: BreakerConfig): Promise<BreakerChange[]> {
    if (settlements.length === 0) return []
    const k = this.k
    const keys: string[] = [k.breakers, k.endpoints]
    const argv: Array<string | number> = [now, GROUP, ATTEMPT_LOG, MAX_DEAD_LETTERS, cfg.windowMs, cfg.minAttempts, cfg.failureRatio, cfg.cooldownMs, cfg.maxCooldownMs, this.publish, k.wake]
    for (const st of settlements) {
      const c = st.claimed
      const id = c.job.endpointId
      keys.push(...this.endpointKeys(id), k.log(id))
      // A delivered job is only removed: its JSON need not travel.
      const job = st.kind === 'delivered' ? '' : JSON.stringify(c.job)
      const n = st.kind === 'release' ? c.attempts : c.attempts + 1
      const extra = st.kind === 'retry' ? st.dueAt : st.kind === 'dead' ? st.reason : ''
      argv.push(st.kind, id, c.entry, c.job.webhookId, job, n, extra, st.kind === 'release' ? '' : JSON.stringify(st.attempt))
    }
    const r = await this.run.heraldWhSettle(keys.length, ...keys, ...argv) as string[]
    const changes: BreakerChange[] = []
    for (let i = 0; i + 1 < r.length; i += 2) changes.push({ endpointId: r[i]!, change: r[i + 1] as BreakerChange['change'] })
    return changes
  }

  async promote (endpointIds: readonly string[], now: number): Promise<number> {
    if (endpointIds.length === 0) return 0
    const keys = endpointIds.flatMap((id) => [this.k.retries(id), this.k.queue(id)])
    return Number(await this.run.heraldWhPromote(keys.length, ...keys, now, 1000, GROUP, this.publish, this.k.wake))
  }

  async takeOver (consumer: string, endpointIds: readonly string[], from: string | null, minIdleMs: number): Promise<ClaimedJob[]> {
    const out: ClaimedJob[] = []
    for (const id of endpointIds) {
      const q = this.k.queue(id)
      try {
        if (from === null) {
          const [, entries] = await this.client.call('XAUTOCLAIM', q, GROUP, consumer, minIdleMs, '0-0', 'COUNT', 100) as [string, Entry[]]
          for (const e of entries) { const c = claimedOf(e); if (c !== null) out.push(c) }
          continue
        }
        // A dead node's claims, a hundred at a time until none is left; then it leaves the group.
        for (let round = 0; round < 100; round++) {
          const pending = await this.client.call('XPENDING', q, GROUP, '-', '+', 100, from) as Array<[string, string, number, number]>
          if (pending.length === 0) break
          const entries = await this.client.call('XCLAIM', q, GROUP, consumer, 0, ...pending.map((p) => p[0])) as Entry[]
          for (const e of entries) { const c = claimedOf(e); if (c !== null) out.push(c) }
        }
        // A process restarted under the same SERVER_ID adopts its predecessor's claims: it stays.
        if (from !== consumer) await this.client.xgroup('DELCONSUMER', q, GROUP, from)
      } catch (err) {
        if (!/NOGROUP|no such key/i.test((err as Error).message)) throw err
      }
    }
    return out
  }

  async breakers (): Promise<Map<string, BreakerState>> {
    const all = await this.client.hgetall(this.k.breakers)
    return new Map(Object.entries(all).map(([id, s]) => [id, parseBreaker(s)]))
  }

  async probe (endpointId: string, now: number, leaseMs: number): Promise<boolean> {
    return await this.run.heraldWhProbe(this.k.breakers, endpointId, now, leaseMs) === 1
  }

  async stats (endpointIds: readonly string[]): Promise<Map<string, QueueStats>> {
    const out = new Map<string, QueueStats>()
    if (endpointIds.length === 0) return out
    const p = this.client.pipeline()
    for (const id of endpointIds) p.zcard(this.k.age(id)).zrange(this.k.age(id), 0, 0, 'WITHSCORES')
    const res = await p.exec() ?? []
    endpointIds.forEach((id, i) => {
      const [e1, depth] = res[2 * i]!
      const [e2, oldest] = res[2 * i + 1]!
      if (e1 !== null) throw e1
      if (e2 !== null) throw e2
      const o = oldest as string[]
      out.set(id, { depth: Number(depth), oldestAt: o.length >= 2 ? Number(o[1]) : null })
    })
    return out
  }

  async attempts (endpointId: string, limit: number): Promise<AttemptRecord[]> {
    return (await this.client.lrange(this.k.log(endpointId), 0, limit - 1)).map((j) => JSON.parse(j) as AttemptRecord)
  }

  async deadLetters (endpointId: string, from: number, limit: number): Promise<DeadLetterPage> {
    // One id past the page says whether the list goes on.
    const ids = await this.client.zrevrange(this.k.dead(endpointId), from, from + limit)
    const more = ids.length > limit
    if (more) ids.pop()
    // The jobs in chunks, until their bytes reach the page's bound: never 1,000 payloads of 64 KiB in one reply.
    const rows: Array<readonly [string | null, string | null]> = []
    let bytes = 0
    for (let i = 0; i < ids.length && bytes < MAX_READ_BYTES; i += DEAD_LETTER_CHUNK) {
      const chunk = ids.slice(i, i + DEAD_LETTER_CHUNK)
      const [jobs, metas] = await Promise.all([this.client.hmget(this.k.deadJobs(endpointId), ...chunk), this.client.hmget(this.k.deadMeta(endpointId), ...chunk)])
      chunk.forEach((_w, n) => {
        rows.push([jobs[n] ?? null, metas[n] ?? null])
        bytes += deadLetterBytes(jobs[n] ?? null)
      })
    }
    return deadLetterPage(from, rows, more || rows.length < ids.length)
  }

  async replay (endpointId: string, webhookIds: readonly string[] | null, limit: number, now: number): Promise<number> {
    const k = this.k
    return Number(await this.run.heraldWhReplay(k.endpoints, k.dead(endpointId), k.deadJobs(endpointId), k.deadMeta(endpointId), k.queue(endpointId), k.age(endpointId),
      now, GROUP, this.publish, k.wake, limit, endpointId, ...(webhookIds ?? [])))
  }
}

async function enqueueWith (run: Pick<Commands, 'heraldWhEnqueue'>, k: WebhookKeys, publish: string, jobs: readonly Enqueue[], now: number): Promise<number> {
  if (jobs.length === 0) return 0
  const keys: string[] = [k.enabled]
  const argv: Array<string | number> = [now, GROUP, publish, k.wake]
  for (const j of jobs) {
    keys.push(k.queue(j.endpointId), k.age(j.endpointId))
    argv.push(j.endpointId, j.webhookId, j.job)
  }
  return Number(await run.heraldWhEnqueue(keys.length, ...keys, ...argv))
}

/** Dead letters read per round trip while a page fills (up to 16 of 64 KiB: 1 MiB). */
const DEAD_LETTER_CHUNK = 16

/** Jobs per script call at most: a script blocks Redis while it runs. */
const MAX_ENQUEUE_BATCH = 256

interface Waiting { jobs: readonly Enqueue[], resolve: (n: number) => void, reject: (err: unknown) => void }

/**
 * The enqueue script on a publishing connection (a node's publish
 * connection, or the publisher library's client): the jobs of the publishes
 * of one event-loop turn go to Redis in one script call, as appends do.
 */
export class Enqueuer {
  private queue: Waiting[] = []
  private scheduled = false
  private readonly run: Pick<Commands, 'heraldWhEnqueue'>
  private readonly k: WebhookKeys

  constructor (client: ScriptingClient, prefix: string, private readonly publish: 'publish' | 'spublish') {
    client.defineCommand('heraldWhEnqueue', { lua: ENQUEUE_LUA } as { numberOfKeys: number, lua: string })
    this.run = client as unknown as Commands
    this.k = webhookKeys(prefix)
  }

  enqueue (jobs: readonly Enqueue[]): Promise<number> {
    return new Promise((resolve, reject) => {
      this.queue.push({ jobs, resolve, reject })
      if (!this.scheduled) {
        this.scheduled = true
        queueMicrotask(() => this.flush())
      }
    })
  }

  flush (): void {
    this.scheduled = false
    if (this.queue.length === 0) return
    const q = this.queue
    this.queue = []
    let batch: Waiting[] = []
    let size = 0
    for (const w of q) {
      if (size > 0 && size + w.jobs.length > MAX_ENQUEUE_BATCH) { this.send(batch); batch = []; size = 0 }
      batch.push(w)
      size += w.jobs.length
    }
    if (batch.length > 0) this.send(batch)
  }

  private send (batch: Waiting[]): void {
    enqueueWith(this.run, this.k, this.publish, batch.flatMap((w) => w.jobs), Date.now()).then(
      () => { for (const w of batch) w.resolve(w.jobs.length) },
      (err: unknown) => { for (const w of batch) w.reject(err) },
    )
  }
}

