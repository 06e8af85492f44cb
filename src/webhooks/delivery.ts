import { lookup as dnsLookup, type LookupAddress } from 'node:dns'
import http from 'node:http'
import https from 'node:https'
import { isIP, type Socket } from 'node:net'
import { parseRetryAfter } from './schedule.js'
import type { AddressPolicy } from './ssrf.js'

// One POST of one delivery, over node:http(s): the address is checked where
// the connection is made, so what a name resolves to at that moment is what
// is judged (a name that resolves to a public address when the endpoint is
// saved and to 127.0.0.1 when it is delivered to, DNS rebinding, is
// refused); an IP literal, which never goes through a lookup, is checked
// before, and every new socket's peer once more when it connects. No
// redirect is followed (node:http follows none); the whole attempt, connect
// to the end of the answer, has `timeoutMs`; what the receiver answers is
// read, at most 64 KiB of it, and thrown away.

export type Outcome =
  | 'success' | 'redirect' | 'client_error' | 'gone' | 'rate_limited' | 'server_error'
  | 'timeout' | 'network' | 'blocked' | 'aborted'

export interface AttemptResult {
  outcome: Outcome
  status?: number
  /** what Retry-After asked for, in ms */
  retryAfterMs?: number
  durationMs: number
  error?: string
}

/** Bytes of an answer read before the connection is dropped instead. */
const MAX_ANSWER_BYTES = 64 * 1024

export interface SenderOptions {
  policy: AddressPolicy
  /** plain http:// allowed (WEBHOOK_ALLOW_HTTP) */
  allowHttp: boolean
  timeoutMs: number
  userAgent: string
}

class Blocked extends Error { readonly code = 'EBLOCKED' }

/**
 * Cuts an attempt short (the node stopping). A plain object, not an
 * AbortSignal: adding and removing an EventTarget listener on every one of
 * thousands of attempts a second costs more than the rest of the bookkeeping.
 */
export class Cancel {
  cancelled = false
  private fn: (() => void) | null = null
  on (fn: (() => void) | null): void { this.fn = fn }
  cancel (): void { this.cancelled = true; this.fn?.() }
}

const outcomeOf = (status: number): Outcome => status >= 200 && status < 300
  ? 'success'
  : status === 410 ? 'gone' : status === 429 ? 'rate_limited' : status >= 500 ? 'server_error' : status >= 300 && status < 400 ? 'redirect' : 'client_error'

/** The reason an endpoint URL may not be delivered to whatever it resolves to (scheme, literal address); null when it may. */
export function urlRefusal (url: string, o: Pick<SenderOptions, 'policy' | 'allowHttp'>): string | null {
  let u: URL
  try { u = new URL(url) } catch { return 'not a valid URL' }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return 'the scheme must be https (or http where WEBHOOK_ALLOW_HTTP allows it)'
  if (u.protocol === 'http:' && !o.allowHttp) return 'plain http is not allowed: use https, or set WEBHOOK_ALLOW_HTTP=true'
  if (u.username !== '' || u.password !== '') return 'credentials in the URL are not allowed: put them in the path or query'
  const host = u.hostname.replace(/^\[|\]$/g, '')
  return isIP(host) !== 0 ? o.policy.refusal(host) : null
}

export class Sender {
  private readonly agents: { http: http.Agent, https: https.Agent }
  private readonly lookup: (hostname: string, options: { all?: boolean, family?: number }, cb: (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void) => void

  constructor (private readonly o: SenderOptions) {
    const agent = { keepAlive: true, maxSockets: Infinity, maxFreeSockets: 256, scheduling: 'lifo' as const }
    this.agents = { http: new http.Agent(agent), https: new https.Agent(agent) }
    this.lookup = (hostname, options, cb) => {
      dnsLookup(hostname, { ...options, all: true }, (err, addresses: LookupAddress[]) => {
        if (err !== null) return cb(err, '')
        const allowed = addresses.filter((a) => o.policy.refusal(a.address) === null)
        if (allowed.length === 0) {
          const why = addresses.map((a) => o.policy.refusal(a.address)).filter((x) => x !== null)
          return cb(new Blocked(`${hostname} resolves only to refused addresses: ${why.join('; ')}`), '')
        }
        if (options.all === true) cb(null, allowed)
        else cb(null, allowed[0]!.address, allowed[0]!.family)
      })
    }
  }

  /** Each endpoint URL parsed and judged once (what a name resolves to is judged at every connection). */
  private readonly urls = new Map<string, { u: URL, refusal: string | null }>()

  private parsed (url: string): { u: URL | null, refusal: string | null } {
    let p = this.urls.get(url)
    if (p === undefined) {
      const refusal = urlRefusal(url, this.o)
      if (refusal !== null) return { u: null, refusal }
      p = { u: new URL(url), refusal: null }
      if (this.urls.size >= 4096) this.urls.clear()
      this.urls.set(url, p)
    }
    return p
  }

  /** POSTs `body`; never rejects: every failure is an outcome. */
  async post (url: string, headers: Record<string, string>, body: string, cancel?: Cancel): Promise<AttemptResult> {
    const started = performance.now()
    const took = (): number => Math.round((performance.now() - started) * 10) / 10
    const { u, refusal } = this.parsed(url)
    if (u === null) return { outcome: 'blocked', durationMs: 0, error: refusal ?? 'refused' }
    const secure = u.protocol === 'https:'
    return await new Promise<AttemptResult>((resolve) => {
      let settled = false
      const done = (r: AttemptResult): void => {
        if (settled) return
        settled = true
        clearTimeout(deadline)
        cancel?.on(null)
        resolve(r)
      }
      const req = (secure ? https : http).request(u, {
        method: 'POST',
        agent: secure ? this.agents.https : this.agents.http,
        lookup: this.lookup as never,
        headers: { ...headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)), 'user-agent': this.o.userAgent },
      })
      const deadline = setTimeout(() => {
        req.destroy(new Error(`no complete answer within ${this.o.timeoutMs} ms`))
        done({ outcome: 'timeout', durationMs: took(), error: `no answer within ${this.o.timeoutMs} ms` })
      }, this.o.timeoutMs)
      const onAbort = (): void => {
        req.destroy(new Error('aborted'))
        done({ outcome: 'aborted', durationMs: took(), error: 'the node stopped' })
      }
      if (cancel?.cancelled === true) return onAbort()
      cancel?.on(onAbort)
      req.on('socket', (s: Socket) => {
        // A new socket's peer, once connected: the lookup judged it already,
        // this holds whatever path the address took.
        if (s.remoteAddress !== undefined) return
        s.once('connect', () => {
          const why = s.remoteAddress === undefined ? null : this.o.policy.refusal(s.remoteAddress)
          if (why !== null) req.destroy(new Blocked(why))
        })
      })
      req.on('error', (err: NodeJS.ErrnoException) => {
        done(err instanceof Blocked ? { outcome: 'blocked', durationMs: took(), error: err.message } : { outcome: 'network', durationMs: took(), error: err.code ?? err.message })
      })
      req.on('response', (res) => {
        const status = res.statusCode ?? 0
        const retryAfterMs = parseRetryAfter(res.headers['retry-after'] as string | undefined, Date.now())
        const r: AttemptResult = { outcome: outcomeOf(status), status, durationMs: took(), ...(retryAfterMs !== undefined ? { retryAfterMs } : {}) }
        let read = 0
        res.on('data', (chunk: Buffer) => {
          read += chunk.length
          // Not worth keeping the connection for: dropped.
          if (read > MAX_ANSWER_BYTES) res.destroy()
        })
        // Settled when the answer is read (the connection goes back to the pool), or dropped.
        res.on('end', () => done(r))
        res.on('close', () => done(r))
        res.on('error', () => done(r))
      })
      req.end(body)
    })
  }

  close (): void {
    this.agents.http.destroy()
    this.agents.https.destroy()
  }
}
