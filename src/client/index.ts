// Herald client SDK for the raw WebSocket protocol (docs/protocol.md).
// Runs in browsers and in Node: it uses only the standard WebSocket API (pass
// `WebSocket` from the `ws` package on Node) and no Node built-ins; the
// protocol modules it imports are plain code too (the browser test bundles
// it), and the payload types are generated from the protocol's schemas as
// plain types (protocol-types.ts), so the package @herald/client needs none.
import { ClientCloseCodes, closeCodeName, CloseCodes, closeReconnect, refusalReconnect, type Reconnect } from '../protocol/close-codes.js'
import { parsePattern, PATTERN_RULE } from '../protocol/patterns.js'
import type { HeraldEvent, HeraldNotification, ServerPayloads, Welcome } from './protocol-types.js'

/** The reply to `subscribe`: the patterns held and, for a resume, what it recovered. */

/**
 * Runs `f` once the timers phase it was called from is over and the I/O
 * that came meanwhile was read (the next timer turn: after a poll of the
 * sockets, in Node and in browsers alike). A timeout fires late in a client
 * whose own event loop was busy (thousands of clients in one process, a
 * page doing other work), and the frame it waited for may then be sitting
 * unread: read first, it cancels the timeout (the caller clears the handle
 * returned), and only a frame that really did not come times out.
 */
const afterPendingIo = (f: () => void): ReturnType<typeof setTimeout> => setTimeout(f, 0)
export type Subscribed = ServerPayloads['subscribed']

export { ClientCloseCodes, CloseCodes }
export type { HeraldEvent, HeraldNotification, Reconnect, Welcome }

/** Where a client is in a stream: the offset of the last message it processed, in an epoch of the stream's history. */
export interface StreamPosition { epoch: string, offset: number }

/** What a resume found: `recovered` false means something may be missing, so refetch what the app shows from those streams. */
export interface RecoveredInfo {
  recovered: boolean
  /** the streams not recovered: history lost (another epoch) or no longer retained */
  unrecovered: string[]
  /** true after a reconnect; false on the first connect, and for a resume on an open connection (after an outage, or an epoch change seen live) */
  reconnect: boolean
}

/** What a publish answers: the event's id and where it went (`stream`: `user:<you>` or `group:<name>`); `duplicate` when a retry found its key used. */
export type PublishReceipt = ServerPayloads['published']

export interface PublishOptions {
  /** to this group's members (you must be one) instead of your own user stream */
  group?: string
  /** an idempotency key (1-128 of `A-Za-z0-9_.:-`): publishing again with it lands once */
  key?: string
}

export type ClientState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'closed'
export interface Frame { type: string, id?: string, payload?: any }

/**
 * An event handler property. Declared through a method so that its parameter
 * is checked bivariantly: the browser's and `ws`'s handlers take their own
 * richer event types, and must still fit without a cast.
 */
type Handler<E> = { bivarianceHack (ev: E): void }['bivarianceHack'] | null

/** Minimal WebSocket surface the SDK needs; the browser's and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number
  send (data: string): void
  close (code?: number, reason?: string): void
  onopen: Handler<unknown>
  onmessage: Handler<{ data: unknown }>
  onclose: Handler<{ code: number, reason: string }>
  onerror: Handler<unknown>
}
export type WebSocketFactory = new (url: string) => WebSocketLike

/** What getToken is told about why a token is wanted. */
export interface TokenRequest {
  /**
   * `connect`: the first attempt; `reconnect`: any later one; `refused`: the
   * server refused the previous token (401, seen on Node with `ws` only), so a
   * cached token must not be handed out again; `expiring`: in-band refresh.
   */
  reason: 'connect' | 'reconnect' | 'refused' | 'expiring'
  /**
   * Connection attempts in a row that ended before a `welcome`. Browsers cannot
   * see why a handshake was refused, so a growing count is the hint to check
   * the session with the app's own backend (and return null if it is over).
   */
  failures: number
}

export interface ClientOptions {
  /** ws(s)://host:port/ws/events (or /ws/admin) */
  url: string
  /**
   * Called before every connection attempt and when the server says the token
   * is expiring. Resolve null (or undefined) when there is no session any more:
   * the client stops (state `closed`, error NO_TOKEN). Throwing is taken as a
   * passing failure: reported as `error`, then retried with backoff.
   */
  getToken: (req: TokenRequest) => string | null | undefined | Promise<string | null | undefined>
  /** the WebSocket constructor; defaults to globalThis.WebSocket */
  WebSocket?: WebSocketFactory
  /** patterns to hold from the first connect on; an invalid one throws HeraldError INVALID_PATTERN */
  eventTypes?: string[]
  /** full-jitter exponential backoff: delay = random(0, min(maxDelayMs, baseDelayMs * 2^attempt)) */
  baseDelayMs?: number
  maxDelayMs?: number
  /**
   * after "try another node" (close 1001 draining, or a handshake refused 503
   * DRAINING or NODE_FULL): reconnect within random(0, drainJitterMs) rather
   * than after backoff; attempts that keep being refused back off as usual
   */
  drainJitterMs?: number
  /**
   * "try another node" refusals in a row (503 DRAINING or NODE_FULL) that are
   * retried within drainJitterMs; after that they back off, so that a
   * cluster whose every node is full or draining is not hammered
   */
  soonRetries?: number
  /**
   * positions to resume from on the first connect (kept by the app from
   * `client.positions`, across a page reload say); without them the client
   * starts from the positions in the first `welcome`
   */
  positions?: Record<string, StreamPosition>
  /** floor of the backoff after 4029 (rate limited), and after a 429 without Retry-After */
  rateLimitDelayMs?: number
  requestTimeoutMs?: number
  /** an attempt that has no `welcome` after this long is dropped and retried */
  connectTimeoutMs?: number
  /**
   * Dead-connection watchdog (default on): after heartbeatInterval (from
   * `welcome`) plus a margin without any frame, the client sends `ping`; no
   * frame within pongTimeoutMs and it drops the socket and reconnects.
   */
  watchdog?: boolean
  /** default: heartbeatInterval, clamped to 2-10 s */
  pongTimeoutMs?: number
  /** handshakes refused with 401 in a row (each with a token fresh from getToken) before the client stops */
  maxAuthRefusals?: number
  /** source of randomness for the backoff, [0, 1) */
  random?: () => number
}

export interface DisconnectInfo {
  /**
   * The close code: the server's (CloseCodes), or one of ClientCloseCodes for
   * an attempt the client ended itself (1006 also for a refused handshake);
   * 4009 when the watchdog gave up on a silent socket.
   */
  code: number
  reason: string
  /** when the client tries again; null: it stopped */
  delayMs: number | null
  /** a handshake refused before the upgrade (Node with `ws` only): the HTTP status and the body's error */
  status?: number
  error?: { code: string, message: string }
}

export interface ClientEvents {
  state: (state: ClientState, previous: ClientState) => void
  welcome: (w: Welcome) => void
  event: (e: HeraldEvent) => void
  notification: (n: HeraldNotification) => void
  /** the session was revoked (4004, or a handshake refused with SESSION_REVOKED); the client stops */
  revoked: (reason: string) => void
  /** the token was refreshed in-band */
  refreshed: (expiresAt: string) => void
  /** a socket closed or a connection attempt failed; the client may reconnect after `delayMs` (null: it stopped) */
  disconnect: (info: DisconnectInfo) => void
  /** an `error` frame not tied to a request, or a local failure */
  error: (err: Error & { code?: string }) => void
  /** every frame, for tools and debugging */
  frame: (f: Frame) => void
  /**
   * After every connect (history on), and after a resume on an open
   * connection: whether every stream was recovered. False: the app may have
   * missed messages of `unrecovered` and should refetch what it shows of them.
   */
  recovered: (info: RecoveredInfo) => void
}

type Listener<K extends keyof ClientEvents> = ClientEvents[K]

export class HeraldError extends Error {
  constructor (readonly code: string, message: string) { super(message); this.name = 'HeraldError' }
}

/** The response `ws` hands to 'unexpected-response' (an http.IncomingMessage), as far as the SDK reads it. */
interface RefusalResponse {
  statusCode?: number
  headers: Record<string, string | string[] | undefined>
  setEncoding?: (enc: string) => void
  on (event: string, fn: (chunk?: unknown) => void): unknown
}

const OPEN = 1
/** Ids of messages delivered without a position kept per stream, to skip them when a replay brings them positioned. */
const MAX_UNPLACED = 10_000

/** An event or notification payload as far as positions go. */
interface Placed { id: string, stream?: string, offset?: number, epoch?: string }
/** Attempts failing in a row, the last for no visible reason, before one `error` says so. */
const REPORT_FAILURES_AFTER = 3

const asError = (err: unknown): Error => err instanceof Error ? err : new Error(String(err))

/**
 * The server's own check, run before anything is sent: a subscribe is all or
 * nothing, so one bad pattern kept for later would cost all the others on
 * every reconnect.
 */
function checkPatterns (eventTypes: readonly string[]): void {
  const bad = eventTypes.find((t) => parsePattern(t) === null)
  if (bad !== undefined) {
    throw new HeraldError('INVALID_PATTERN', `invalid pattern ${JSON.stringify(String(bad).slice(0, 140))}: ${PATTERN_RULE}`)
  }
}

/** Ends a socket at once: `ws` would wait up to 30 s for a closing handshake a dead peer never answers. */
function kill (ws: WebSocketLike, code?: number, reason?: string): void {
  const terminate = (ws as { terminate?: () => void }).terminate
  try {
    if (typeof terminate === 'function') terminate.call(ws)
    else ws.close(code, reason)
  } catch {}
}

/**
 * A Herald connection that keeps itself up: an explicit state machine,
 * full-jitter reconnects keyed on the close code or handshake refusal, in-band
 * token refresh, a dead-connection watchdog, and resubscription after every
 * reconnect.
 */
export class HeraldClient {
  private _state: ClientState = 'disconnected'
  private ws: WebSocketLike | null = null
  private readonly listeners: { [K in keyof ClientEvents]?: Array<Listener<K>> } = {}
  /**
   * The patterns the client holds: confirmed by the server (or, before the
   * first connect(), checked and waiting to be sent), and restored after
   * every reconnect.
   */
  private readonly desired = new Set<string>()
  private readonly pending = new Map<string, { resolve: (f: Frame) => void, reject: (e: Error) => void, timer: ReturnType<typeof setTimeout>, onReply?: (f: Frame) => void }>()
  /** per stream the client reads, the position of the last message it processed */
  private readonly last = new Map<string, StreamPosition>()
  /** per stream, ids of messages delivered without a position (during a Redis outage): a later replay of one is not delivered again */
  private readonly unplaced = new Map<string, Set<string>>()
  /** streams that had a message without a position: the next positioned one triggers a resume */
  private readonly unsure = new Set<string>()
  /** while a resume runs, the messages of its streams, kept until its reply */
  private buffering: Map<string, Array<{ kind: 'event' | 'notification', p: Placed }>> | null = null
  private seq = 0
  private attempt = 0
  /** attempts in a row that ended before a `welcome` */
  private failures = 0
  /** this streak of failures has been reported */
  private failuresReported = false
  private authRefusals = 0
  private tokenRefused = false
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private connectTimer: ReturnType<typeof setTimeout> | null = null
  private watchdogTimer: ReturnType<typeof setTimeout> | null = null
  /** the watchdog of the current connection; probing: a `ping` awaits any frame */
  private wd: { idleMs: number, pongMs: number, lastRx: number, probing: boolean } | null = null
  private ready: Promise<Welcome> | null = null
  /** why the client stopped, for a connect() still waiting */
  private stopReason: Error | null = null
  private readonly opts: Required<Omit<ClientOptions, 'eventTypes' | 'WebSocket' | 'pongTimeoutMs' | 'positions'>> & { WebSocket: WebSocketFactory, pongTimeoutMs?: number }
  /** the welcome of the current connection; null before it arrives and between connections */
  welcome: Welcome | null = null
  /** how many times the client has (re)connected successfully */
  connects = 0

  constructor (options: ClientOptions) {
    const WS = options.WebSocket ?? (globalThis as { WebSocket?: WebSocketFactory }).WebSocket
    if (WS === undefined) throw new Error('no WebSocket implementation: pass options.WebSocket (e.g. from the ws package)')
    this.opts = {
      url: options.url,
      getToken: options.getToken,
      WebSocket: WS,
      baseDelayMs: options.baseDelayMs ?? 500,
      maxDelayMs: options.maxDelayMs ?? 30_000,
      drainJitterMs: options.drainJitterMs ?? 1000,
      soonRetries: options.soonRetries ?? 3,
      rateLimitDelayMs: options.rateLimitDelayMs ?? 10_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      watchdog: options.watchdog ?? true,
      ...(options.pongTimeoutMs !== undefined ? { pongTimeoutMs: options.pongTimeoutMs } : {}),
      maxAuthRefusals: options.maxAuthRefusals ?? 3,
      random: options.random ?? Math.random,
    }
    for (const [s, p] of Object.entries(options.positions ?? {})) this.last.set(s, { epoch: p.epoch, offset: p.offset })
    const eventTypes = options.eventTypes ?? []
    checkPatterns(eventTypes)
    for (const t of eventTypes) this.desired.add(t)
  }

  get state (): ClientState { return this._state }

  on<K extends keyof ClientEvents> (event: K, fn: ClientEvents[K]): () => void {
    const list = (this.listeners[event] ??= []) as Array<Listener<K>>
    list.push(fn)
    return () => { const i = list.indexOf(fn); if (i >= 0) list.splice(i, 1) }
  }

  /**
   * Resolves once connected (welcome received and subscriptions restored): at
   * once when already connected; while a connection is on its way, every call
   * returns the same promise. Rejects if the client stops first, with the
   * reason when there is one (e.g. HeraldError SESSION_REVOKED).
   */
  connect (): Promise<Welcome> {
    if (this._state === 'closed') return Promise.reject(this.stopReason ?? new Error('client closed'))
    if (this._state === 'connected' && this.welcome !== null) return Promise.resolve(this.welcome)
    if (this.ready === null) {
      this.ready = new Promise<Welcome>((resolve, reject) => {
        const off = this.on('state', (s) => {
          if (s === 'connected') { off(); this.ready = null; resolve(this.welcome!) } else if (s === 'closed') { off(); this.ready = null; reject(this.stopReason ?? new Error('client closed before connecting')) }
        })
      })
    }
    const ready = this.ready
    if (this._state === 'disconnected') void this.open()
    return ready
  }

  /** Closes for good (1000); no reconnect. */
  close (): void {
    const ws = this.ws
    this.detach()
    this.clearRetry()
    this.setState('closed')
    this.failPending(new Error('client closed'))
    if (ws !== null && ws.readyState <= OPEN) ws.close(CloseCodes.NORMAL, 'client closed')
  }

  /**
   * Adds patterns and resolves with all patterns the server holds. An invalid
   * pattern rejects at once with HeraldError INVALID_PATTERN, nothing sent.
   * They count as held (and are restored after reconnects) only once the
   * server accepted them; a refusal (TOO_MANY_SUBSCRIPTIONS) rejects with
   * HeraldError and changes nothing. While a connection is on its way the
   * call waits for it. Before the first connect() they are kept and sent with
   * the first connection.
   */
  async subscribe (eventTypes: string[]): Promise<string[]> {
    checkPatterns(eventTypes)
    if (this._state === 'disconnected') {
      for (const t of eventTypes) this.desired.add(t)
      return [...this.desired]
    }
    const r = await this.command('subscribe', eventTypes)
    for (const t of eventTypes) this.desired.add(t)
    return r.payload.eventTypes as string[]
  }

  /** Removes patterns (at once from what reconnects restore) and resolves with all patterns the server still holds. */
  async unsubscribe (eventTypes: string[]): Promise<string[]> {
    for (const t of eventTypes) this.desired.delete(t)
    if (this._state === 'disconnected') return [...this.desired]
    const r = await this.command('unsubscribe', eventTypes)
    // A subscribe answered while this one was in flight may have put one back.
    for (const t of eventTypes) this.desired.delete(t)
    return r.payload.eventTypes as string[]
  }

  /** The last position processed per stream (history on): keep it to resume from after a restart of the app (options.positions). */
  get positions (): Record<string, StreamPosition> {
    return Object.fromEntries([...this.last].map(([s, p]) => [s, { ...p }]))
  }

  /** The patterns the client keeps (restored on reconnect). */
  get subscriptions (): string[] { return [...this.desired] }

  /**
   * Publishes an event as this client, as the token's `publish` claim allows;
   * the node stamps who sent it (`source`). Resolves with the receipt;
   * rejects with HeraldError (PUBLISH_FORBIDDEN, RESERVED_TYPE,
   * NOT_A_MEMBER, SCHEMA_MISMATCH, RATE_LIMITED...), or an Error when the
   * connection is down or the reply did not come: then whether it landed is
   * unknown, and publishing again with the same `key` makes it land once.
   */
  async publish (type: string, data?: Record<string, unknown>, opts: PublishOptions = {}): Promise<PublishReceipt> {
    const r = await this.request('publish', {
      type,
      ...(data !== undefined ? { data } : {}),
      ...(opts.group !== undefined ? { group: opts.group } : {}),
      ...(opts.key !== undefined ? { key: opts.key } : {}),
    })
    return r.payload as PublishReceipt
  }

  /** Round trip in ms. */
  async ping (): Promise<number> {
    const t0 = Date.now()
    await this.request('ping')
    return Date.now() - t0
  }

  /** Sends a request and resolves with the reply carrying its id; an `error` reply rejects with HeraldError. */
  async request (type: string, payload?: Record<string, unknown>): Promise<Frame> {
    const ws = this.ws
    if (ws === null || ws.readyState !== OPEN) throw new Error(`not connected (${this._state})`)
    return await this.send(ws, type, payload)
  }

  /** `onReply` runs on the reply before any later frame is handled (a promise's continuation would run after the frames that came with it). */
  private async send (ws: WebSocketLike, type: string, payload?: Record<string, unknown>, onReply?: (f: Frame) => void): Promise<Frame> {
    const id = `c${++this.seq}`
    return await new Promise<Frame>((resolve, reject) => {
      // Timed out only if still unanswered once what arrived meanwhile was read (afterPendingIo).
      const timer = setTimeout(() => {
        const p = this.pending.get(id)
        if (p !== undefined) p.timer = afterPendingIo(() => { this.pending.delete(id); reject(new Error(`${type} timed out`)) })
      }, this.opts.requestTimeoutMs)
      this.pending.set(id, { resolve, reject, timer, ...(onReply !== undefined ? { onReply } : {}) })
      ws.send(JSON.stringify(payload === undefined ? { type, id } : { type, id, payload }))
    })
  }

  /**
   * A subscribe/unsubscribe sent once the connection is `connected`, that is
   * after the resubscription of a new connection: sent earlier, it could be
   * overtaken by (or lost with) the resubscription. If the connection drops
   * before the reply, it is sent again on the next one.
   */
  private async command (type: 'subscribe' | 'unsubscribe', eventTypes: string[]): Promise<Frame> {
    for (;;) {
      // Rejects once the client stops, with the reason (e.g. SESSION_REVOKED).
      await this.connect()
      const ws = this.ws
      // Dropped again before this ran: wait for the next connection.
      if (ws === null) continue
      try {
        return await this.send(ws, type, { eventTypes })
      } catch (err) {
        if (err instanceof HeraldError || this.ws === ws) throw err
      }
    }
  }

  private async open (): Promise<void> {
    const first = this._state === 'disconnected'
    this.setState(first ? 'connecting' : 'reconnecting')
    const reason: TokenRequest['reason'] = this.tokenRefused ? 'refused' : first ? 'connect' : 'reconnect'
    this.tokenRefused = false
    let token: string | null | undefined
    try {
      token = await this.opts.getToken({ reason, failures: this.failures })
    } catch (err) {
      // Most likely the app's token endpoint is unreachable for a while: keep trying.
      this.emit('error', asError(err))
      this.attemptFailed(null)
      return this.schedule({ code: ClientCloseCodes.NO_SOCKET, reason: 'getToken failed' }, this.backoff())
    }
    if (this._state === 'closed') return
    if (token === null || token === undefined) {
      return this.halt({ code: ClientCloseCodes.NO_SOCKET, reason: 'no token' }, new HeraldError('NO_TOKEN', 'getToken returned no token: the client stops'))
    }
    const sep = this.opts.url.includes('?') ? '&' : '?'
    let ws: WebSocketLike
    try {
      ws = new this.opts.WebSocket(`${this.opts.url}${sep}token=${encodeURIComponent(token)}`)
    } catch (err) {
      this.emit('error', asError(err))
      this.attemptFailed(null)
      return this.schedule({ code: ClientCloseCodes.NO_SOCKET, reason: 'could not open' }, this.backoff())
    }
    this.ws = ws
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return
      const wd = this.wd
      if (wd !== null) {
        wd.lastRx = Date.now()
        // Any frame answers the watchdog's probe: back to waiting for silence.
        if (wd.probing) { wd.probing = false; this.armWatchdog(wd.idleMs) }
      }
      this.onFrame(ev.data)
    }
    ws.onerror = () => {}
    ws.onclose = (ev) => { if (this.ws === ws) this.onClose(ev.code, ev.reason) }
    // Node's `ws` shows a refused handshake's HTTP response; browsers (and
    // undici's WebSocket) show only a 1006 close, handled in onClose.
    const on = (ws as { on?: (ev: string, fn: (req: unknown, res: RefusalResponse) => void) => unknown }).on
    if (typeof on === 'function') on.call(ws, 'unexpected-response', (_req, res) => this.readRefusal(ws, res))
    // Cleared by the welcome and by detach(): if it fires, `ws` is current and unwelcomed.
    // Timed out only if still unwelcomed once what arrived meanwhile was read (afterPendingIo).
    this.connectTimer = setTimeout(() => {
      this.connectTimer = afterPendingIo(() => {
        const code = ClientCloseCodes.CONNECT_TIMEOUT
        this.attemptFailed(code)
        this.drop(ws, { code, reason: `no welcome within ${this.opts.connectTimeoutMs} ms` }, this.backoff())
      })
    }, this.opts.connectTimeoutMs)
  }

  /** Reads the refusal's JSON body (bounded), then ends the attempt. */
  private readRefusal (ws: WebSocketLike, res: RefusalResponse): void {
    let body = ''
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      const current = this.ws === ws
      if (current) this.detach()
      // Without a listener `ws` would abort the handshake itself; with one it waits for us.
      kill(ws)
      if (!current) return
      let error = { code: 'HTTP_ERROR', message: `handshake refused with HTTP ${res.statusCode ?? 0}` }
      try {
        const parsed = JSON.parse(body) as { error?: { code?: unknown, message?: unknown } }
        if (typeof parsed.error?.code === 'string') error = { code: parsed.error.code, message: String(parsed.error.message ?? parsed.error.code) }
      } catch {}
      const ra = res.headers['retry-after']
      this.onRefused(res.statusCode ?? 0, error, retryAfterMs(Array.isArray(ra) ? ra[0] : ra))
    }
    res.setEncoding?.('utf8')
    res.on('data', (chunk) => { if (body.length < 8192) body += String(chunk) })
    res.on('end', finish)
    res.on('error', finish)
    res.on('aborted', finish)
  }

  /**
   * A handshake refused before the upgrade: the policy for the error code
   * (src/protocol/close-codes.ts, shown in the error registry), by status for
   * a code it does not list.
   * SESSION_REVOKED stops with `revoked`; a refused token (401) asks getToken
   * for a fresh one, up to maxAuthRefusals in a row; 403 (origin, role) stops,
   * since retrying cannot help; 429 waits Retry-After plus jitter; DRAINING
   * and NODE_FULL (503) retry soon, through the load balancer to another
   * node; the rest back off as for a dropped connection.
   */
  private onRefused (status: number, error: { code: string, message: string }, retryAfter: number | null): void {
    // The status says why: reported through `disconnect` (and `error` when it stops), not as HANDSHAKE_FAILED.
    this.attemptFailed(null)
    const info = { code: ClientCloseCodes.ABNORMAL, reason: `${status} ${error.code}: ${error.message}`, status, error }
    const policy = refusalReconnect(status, error.code)
    if (policy !== 'new-token') this.authRefusals = 0
    if (policy === 'stop') {
      const revoked = error.code === 'SESSION_REVOKED'
      if (revoked) this.emit('revoked', error.message)
      return this.halt(info, new HeraldError(error.code, error.message), !revoked)
    }
    if (policy === 'new-token') {
      if (++this.authRefusals >= this.opts.maxAuthRefusals) {
        return this.halt(info, new HeraldError(error.code, `${error.message} (refused ${this.authRefusals} times in a row, with a new token from getToken each time)`))
      }
      this.tokenRefused = true
    }
    return this.schedule(info, this.delayFor(policy, retryAfter))
  }

  /**
   * How long to wait before the next attempt under `policy` (never `stop`).
   * `failures`, attempts in a row that ended before a welcome, tells a first
   * refusal from a streak: "try another node" goes at once only the first
   * time, so that a cluster whose every node is full or draining is not
   * hammered; a new token after a close (4001) goes at once, a refused one
   * backs off.
   */
  private delayFor (policy: Exclude<Reconnect, 'stop'>, retryAfter: number | null = null): number {
    switch (policy) {
      case 'soon': return this.failures <= this.opts.soonRetries ? this.opts.random() * this.opts.drainJitterMs : this.backoff()
      case 'new-token': return this.failures === 0 ? this.opts.random() * this.opts.baseDelayMs : this.backoff()
      // Many clients are refused together when a limit is hit: spread them past Retry-After.
      case 'rate-limited': return retryAfter !== null
        ? retryAfter + this.opts.random() * Math.max(this.opts.baseDelayMs, retryAfter / 4)
        : Math.max(this.opts.rateLimitDelayMs, this.backoff())
      case 'backoff': return this.backoff()
    }
  }

  private onFrame (data: unknown): void {
    let f: Frame
    try { f = JSON.parse(typeof data === 'string' ? data : String(data)) as Frame } catch { return }
    this.emit('frame', f)
    if (f.id !== undefined) {
      // A reply. One nobody waits for (to the watchdog's ping, whose arrival
      // is all that counts, or to a request that timed out) has nobody to
      // tell, even an error: the `error` event is for frames of no request.
      const p = this.pending.get(f.id)
      if (p === undefined) return
      this.pending.delete(f.id)
      clearTimeout(p.timer)
      if (f.type === 'error') p.reject(new HeraldError(f.payload?.code ?? 'ERROR', f.payload?.message ?? 'error'))
      else {
        try { p.onReply?.(f) } catch (err) { this.emit('error', asError(err)) }
        p.resolve(f)
      }
      return
    }
    switch (f.type) {
      case 'welcome': void this.onWelcome(f.payload as Welcome); break
      case 'event': this.onMessage('event', f.payload as Placed); break
      case 'notification': this.onMessage('notification', f.payload as Placed); break
      case 'auth_expiring': void this.refresh(); break
      case 'session_revoked': this.emit('revoked', String(f.payload?.reason ?? 'revoked')); break
      case 'error': this.emit('error', new HeraldError(f.payload?.code ?? 'ERROR', f.payload?.message ?? 'error')); break
    }
  }

  private async onWelcome (w: Welcome): Promise<void> {
    const ws = this.ws!
    this.welcome = w
    if (this.connectTimer !== null) clearTimeout(this.connectTimer)
    this.connectTimer = null
    this.startWatchdog(w.heartbeatInterval)
    const since = this.sinceFor(w)
    this.emit('welcome', w)
    // A listener may have closed the client.
    if (this.ws !== ws) return
    const reconnect = this.connects > 0
    try {
      // Every kept pattern passed checkPatterns: one subscribe restores them
      // all, and resumes every stream from where the client was (from the
      // welcome's positions on a first connect: nothing published between
      // the welcome and the subscribe is missed).
      const payload = { ...(this.desired.size > 0 ? { eventTypes: [...this.desired] } : {}), ...(since !== null ? { since } : {}) }
      if (Object.keys(payload).length > 0) await this.send(ws, 'subscribe', payload, since === null ? undefined : (f) => this.resumed(f.payload as Subscribed, reconnect))
    } catch (err) {
      if (this.ws !== ws) return
      // Never `connected` while the server holds fewer patterns than the
      // client keeps: report, drop this connection and try again with backoff
      // (a later attempt may work: rate limit passed, another node).
      const e = asError(err)
      this.emit('error', e)
      const limited = err instanceof HeraldError && err.code === 'RATE_LIMITED'
      return this.drop(ws, { code: ClientCloseCodes.RESTORE_FAILED, reason: `could not restore subscriptions: ${e.message}` }, limited ? Math.max(this.opts.rateLimitDelayMs, this.backoff()) : this.backoff())
    }
    if (this.ws !== ws || ws.readyState !== OPEN) return
    this.attempt = 0
    this.failures = 0
    this.failuresReported = false
    this.authRefusals = 0
    this.connects++
    this.setState('connected')
  }

  /**
   * What to resume from on a new connection: per stream it reads (the
   * welcome's positions), the last position processed, else the welcome's.
   * Messages of those streams are held until the reply (resumed()). Null:
   * history is off.
   */
  private sinceFor (w: Welcome): Record<string, StreamPosition> | null {
    const tops = w.positions
    if (tops === undefined) return null
    for (const s of [...this.last.keys()]) if (!Object.hasOwn(tops, s)) this.forget(s)
    const since: Record<string, StreamPosition> = {}
    for (const [s, top] of Object.entries(tops)) {
      const at = this.last.get(s) ?? { epoch: top.epoch, offset: top.offset }
      this.last.set(s, at)
      since[s] = at
      this.unsure.delete(s)
    }
    this.buffering = new Map(Object.keys(since).map((s) => [s, []]))
    return since
  }

  private forget (s: string): void {
    this.last.delete(s)
    this.unplaced.delete(s)
    this.unsure.delete(s)
  }

  /**
   * An event or notification. Of a stream the client reads: once, in
   * stream order. A message at or below the last position is one the client
   * has (a replay overlapping live delivery); one without a position (the
   * node delivered it during a Redis outage) is delivered, remembered by id,
   * and the next positioned one of its stream resumes from the last position
   * (whatever the outage kept from this node arrives then); another epoch
   * means that stream's history was lost: `recovered` false.
   */
  private onMessage (kind: 'event' | 'notification', p: Placed): void {
    const s = p.stream
    if (typeof s !== 'string' || !this.last.has(s)) return this.deliver(kind, p)
    if (typeof p.offset !== 'number' || typeof p.epoch !== 'string') {
      let ids = this.unplaced.get(s)
      if (ids === undefined) this.unplaced.set(s, ids = new Set())
      ids.add(p.id)
      // Bounded: an outage that delivers more than this has exceeded what a replay returns anyway.
      if (ids.size > MAX_UNPLACED) ids.delete(ids.values().next().value!)
      this.unsure.add(s)
      return this.deliver(kind, p)
    }
    const held = this.buffering?.get(s)
    if (held !== undefined) { held.push({ kind, p }); return }
    const l = this.last.get(s)!
    if (p.epoch !== l.epoch) {
      // Still unsure after an outage: what this node delivered without a
      // position may be in the new epoch, and the next message resumes from here.
      this.last.set(s, { epoch: p.epoch, offset: p.offset })
      this.emit('recovered', { recovered: false, unrecovered: [s], reconnect: false })
      if (!this.seenUnplaced(s, p.id)) this.deliver(kind, p)
      return
    }
    if (p.offset <= l.offset) return
    if (this.unsure.delete(s) && this.ws !== null) return this.resumeOpen(this.ws, s, l, { kind, p })
    this.last.set(s, { epoch: p.epoch, offset: p.offset })
    if (!this.seenUnplaced(s, p.id)) this.deliver(kind, p)
  }

  private deliver (kind: 'event' | 'notification', p: Placed): void {
    if (kind === 'event') this.emit('event', p as unknown as HeraldEvent)
    else this.emit('notification', p as unknown as HeraldNotification)
  }

  private seenUnplaced (s: string, id: string): boolean {
    return this.unplaced.get(s)?.delete(id) === true
  }

  /** A resume of one stream on the open connection, from `from`, `first` (which showed the need) held with what follows until the reply. */
  private resumeOpen (ws: WebSocketLike, s: string, from: StreamPosition, first: { kind: 'event' | 'notification', p: Placed }): void {
    (this.buffering ??= new Map()).set(s, [first])
    this.send(ws, 'subscribe', { since: { [s]: from } }, (f) => this.resumed(f.payload as Subscribed, false)).catch((err: unknown) => {
      if (this.ws !== ws) return
      // Reconnecting resumes every stream from its last position.
      this.emit('error', asError(err))
      this.drop(ws, { code: ClientCloseCodes.RESTORE_FAILED, reason: `could not resume ${s}: ${asError(err).message}` }, this.backoff())
    })
  }

  /**
   * The reply of a subscribe with `since`: the replayed messages and the live
   * ones that came meanwhile are all held, and all at or below the position
   * the reply gives; delivered in stream order, each once.
   */
  private resumed (r: Subscribed, reconnect: boolean): void {
    for (const [s, to] of Object.entries(r.positions ?? {})) {
      const held = this.buffering?.get(s) ?? []
      this.buffering?.delete(s)
      held.sort((a, b) => a.p.offset! - b.p.offset!)
      let at = this.last.get(s)
      for (const { kind, p } of held) {
        if (p.epoch !== to.epoch || (at !== undefined && at.epoch === p.epoch && p.offset! <= at.offset)) continue
        at = { epoch: p.epoch, offset: p.offset! }
        if (!this.seenUnplaced(s, p.id)) this.deliver(kind, p)
      }
      if (at === undefined || at.epoch !== to.epoch || at.offset < to.offset) at = { epoch: to.epoch, offset: to.offset }
      this.last.set(s, at)
    }
    if (this.buffering?.size === 0) this.buffering = null
    this.emit('recovered', { recovered: r.recovered === true, unrecovered: r.unrecovered ?? [], reconnect })
  }

  /**
   * A half-open socket (peer gone without a FIN, a stopped process, a dead
   * NAT entry) never closes by itself. The server's heartbeat pings are
   * protocol frames the WebSocket API does not show, so silence for
   * heartbeatInterval plus a margin is answered with an application `ping`;
   * if nothing at all arrives within pongTimeoutMs, the socket is dropped and
   * the client reconnects: a dead connection is noticed within
   * heartbeatInterval + margin + pongTimeoutMs of the last frame (about 48 s
   * with the server's default 30 s). A busy connection never pings: any frame
   * counts. Each ping counts toward the server's message rate limit, at most
   * one per idle heartbeat interval.
   */
  private startWatchdog (heartbeatInterval: number): void {
    if (!this.opts.watchdog) return
    const hb = Number.isFinite(heartbeatInterval) && heartbeatInterval > 0 ? heartbeatInterval : 30_000
    const idleMs = hb + Math.max(1000, hb / 4)
    this.wd = { idleMs, pongMs: this.opts.pongTimeoutMs ?? Math.max(2000, Math.min(hb, 10_000)), lastRx: Date.now(), probing: false }
    this.armWatchdog(idleMs)
  }

  private armWatchdog (ms: number): void {
    if (this.watchdogTimer !== null) clearTimeout(this.watchdogTimer)
    this.watchdogTimer = setTimeout(() => this.watchdogTick(), ms)
  }

  /** Runs only while the watchdog's connection is current: detach() clears its timer and state. */
  private watchdogTick (): void {
    const wd = this.wd!
    const ws = this.ws!
    const quiet = Date.now() - wd.lastRx
    if (wd.probing) {
      return this.drop(ws, { code: CloseCodes.HEARTBEAT_TIMEOUT, reason: `heartbeat timeout: nothing received for ${quiet} ms` }, this.backoff())
    }
    if (quiet < wd.idleMs) return this.armWatchdog(wd.idleMs - quiet)
    wd.probing = true
    // Not a request: its reply is not awaited (onFrame drops it), any frame will do.
    try { ws.send(JSON.stringify({ type: 'ping', id: `w${++this.seq}` })) } catch {}
    this.armWatchdog(wd.pongMs)
  }

  private async refresh (): Promise<void> {
    try {
      const token = await this.opts.getToken({ reason: 'expiring', failures: 0 })
      // No session any more: the server closes with 4001 at exp and the reconnect stops.
      if (token === null || token === undefined) return
      const r = await this.request('refresh', { token })
      this.emit('refreshed', String(r.payload?.expiresAt))
    } catch (err) {
      // The server closes with 4001 at exp; the reconnect then fetches a token.
      this.emit('error', asError(err))
    }
  }

  /** The current socket closed (ws.onclose ignores forgotten ones), so the client is not `closed`. */
  private onClose (code: number, reason: string): void {
    const welcomed = this.welcome !== null
    this.detach()
    this.failPending(new Error(`connection closed (${code})`))
    // Browsers hide why a handshake failed (refused token or origin, limit, node down).
    if (!welcomed) this.attemptFailed(code)
    // The close-code table's policy (src/protocol/close-codes.ts), by range for a code it does not list.
    const policy = closeReconnect(code)
    if (policy === 'stop') {
      // 4004: signing in again is the user's business (`revoked` came with session_revoked); 4003: an operator's decision.
      return this.halt({ code, reason }, new HeraldError(closeCodeName(code) ?? 'CLOSED', reason), false)
    }
    // new-token: open() asks getToken before every attempt.
    return this.schedule({ code, reason }, this.delayFor(policy))
  }

  /**
   * Counts an attempt that ended before a `welcome` (getToken is told). From
   * REPORT_FAILURES_AFTER on, the first failure whose cause the client cannot
   * see (`bareClose`: a close code without a status; the others are reported
   * on their own) is reported once per streak as HANDSHAKE_FAILED.
   */
  private attemptFailed (bareClose: number | null): void {
    this.failures++
    if (bareClose === null || this.failuresReported || this.failures < REPORT_FAILURES_AFTER) return
    this.failuresReported = true
    this.emit('error', new HeraldError('HANDSHAKE_FAILED', `${this.failures} connection attempts in a row ended before a welcome (last close ${bareClose}); still retrying, asking getToken before each attempt`))
  }

  /** Gives up on the current socket, still open (or opening), and schedules the next attempt. */
  private drop (ws: WebSocketLike, info: Omit<DisconnectInfo, 'delayMs'>, delayMs: number): void {
    this.detach()
    kill(ws, info.code, info.reason.slice(0, 120))
    this.failPending(new Error(`connection closed (${info.code})`))
    this.schedule(info, delayMs)
  }

  /**
   * Forgets the current socket: its late events are ignored from now on. Every
   * way to `closed` passes here first, so a current socket means not closed.
   */
  private detach (): void {
    this.ws = null
    this.welcome = null
    // What was held is read again on the next connection, from the same positions.
    this.buffering = null
    if (this.connectTimer !== null) clearTimeout(this.connectTimer)
    if (this.watchdogTimer !== null) clearTimeout(this.watchdogTimer)
    this.connectTimer = null
    this.watchdogTimer = null
    this.wd = null
  }

  /** Stops for good after the server said retrying cannot help. */
  private halt (info: Omit<DisconnectInfo, 'delayMs'>, reason: Error, report = true): void {
    this.detach()
    this.clearRetry()
    this.stopReason = reason
    if (report) this.emit('error', reason)
    this.emit('disconnect', { ...info, delayMs: null })
    this.failPending(reason)
    this.setState('closed')
  }

  private backoff (): number {
    const cap = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** Math.min(this.attempt, 20))
    this.attempt++
    return this.opts.random() * cap
  }

  private schedule (info: Omit<DisconnectInfo, 'delayMs'>, delayMs: number): void {
    // A listener of an event emitted on the way here (`error`, `revoked`) may have closed the client.
    if (this._state === 'closed') return
    this.emit('disconnect', { ...info, delayMs })
    this.setState('reconnecting')
    this.clearRetry()
    this.retryTimer = setTimeout(() => { this.retryTimer = null; if (this._state !== 'closed') void this.open() }, delayMs)
  }

  private clearRetry (): void {
    if (this.retryTimer !== null) clearTimeout(this.retryTimer)
    this.retryTimer = null
  }

  private failPending (err: Error): void {
    for (const [id, p] of this.pending) { clearTimeout(p.timer); p.reject(err); this.pending.delete(id) }
  }

  private setState (s: ClientState): void {
    const prev = this._state
    if (prev === s) return
    this._state = s
    this.emit('state', s, prev)
  }

  private emit<K extends keyof ClientEvents> (event: K, ...args: Parameters<ClientEvents[K]>): void {
    for (const fn of [...(this.listeners[event] ?? [])] as Array<(...a: unknown[]) => void>) {
      try { fn(...args) } catch { /* a listener's bug must not break the connection */ }
    }
  }
}

/** Retry-After in ms: delta-seconds or an HTTP date; null when absent or unreadable. */
function retryAfterMs (v: string | undefined): number | null {
  if (v === undefined || v.trim() === '') return null
  if (/^\d+$/.test(v.trim())) return Number(v.trim()) * 1000
  const at = Date.parse(v)
  return Number.isNaN(at) ? null : Math.max(0, at - Date.now())
}
