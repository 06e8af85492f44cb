// Herald client SDK for the raw WebSocket protocol (docs/protocol.md).
// Runs in browsers and in Node: it uses only the standard WebSocket API (pass
// `WebSocket` from the `ws` package on Node 20) and no Node built-ins.

export type ClientState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'closed'

export interface HeraldEvent { id: string, type: string, timestamp: string, userId?: string, sessionId?: string, data: Record<string, unknown> }
export interface HeraldNotification { id: string, level: string, title: string, message: string, data?: Record<string, unknown>, timestamp: string }
export interface Welcome { connectionId: string, serverId: string, userId: string, sessionId: string | null, expiresAt: string | null, heartbeatInterval: number }
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
  /** patterns to hold from the first connect on */
  eventTypes?: string[]
  /** full-jitter exponential backoff: delay = random(0, min(maxDelayMs, baseDelayMs * 2^attempt)) */
  baseDelayMs?: number
  maxDelayMs?: number
  /** after a 1001 (node draining): reconnect within random(0, drainJitterMs) */
  drainJitterMs?: number
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
  /** the close code; 1006 for a refused handshake; the client's own 4009 when it gave up on a silent socket, 4000 when restoring subscriptions failed */
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
}

type Listener<K extends keyof ClientEvents> = ClientEvents[K]

export class HeraldError extends Error {
  /** patterns the server refused, on an INVALID_PATTERN error the client reports after restoring subscriptions */
  patterns?: string[]
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
/** Close codes the client reports for sockets it gave up on itself. */
const GAVE_UP = 4009
const RESUBSCRIBE_FAILED = 4000
/** Handshakes failing in a row (status unknown) before one `error` says so. */
const REPORT_FAILURES_AFTER = 3

const asError = (err: unknown): Error => err instanceof Error ? err : new Error(String(err))

/**
 * A Herald connection that keeps itself up: an explicit state machine,
 * full-jitter reconnects keyed on the close code or handshake refusal, in-band
 * token refresh, a dead-connection watchdog, and resubscription after every
 * reconnect.
 */
export class HeraldClient {
  private _state: ClientState = 'disconnected'
  private ws: WebSocketLike | null = null
  /** the current socket has had its `welcome` */
  private welcomed = false
  private readonly listeners: { [K in keyof ClientEvents]?: Array<Listener<K>> } = {}
  /**
   * The patterns the client holds: confirmed by the server (or, before the
   * first connect(), waiting to be), and restored after every reconnect.
   */
  private readonly desired = new Set<string>()
  private readonly pending = new Map<string, { resolve: (f: Frame) => void, reject: (e: Error) => void, timer: ReturnType<typeof setTimeout> }>()
  private seq = 0
  private attempt = 0
  private opened = 0
  private failures = 0
  private authRefusals = 0
  private tokenRefused = false
  private lastRx = 0
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private connectTimer: ReturnType<typeof setTimeout> | null = null
  private watchdogTimer: ReturnType<typeof setTimeout> | null = null
  /** the watchdog of the current connection; probeSentAt: a `ping` awaits any frame */
  private wd: { ws: WebSocketLike, idleMs: number, pongMs: number, probeSentAt: number | null } | null = null
  private ready: Promise<Welcome> | null = null
  /** why the client stopped, for a connect() still waiting */
  private stopReason: Error | null = null
  private readonly opts: Required<Omit<ClientOptions, 'eventTypes' | 'WebSocket' | 'pongTimeoutMs'>> & { WebSocket: WebSocketFactory, pongTimeoutMs?: number }
  /** the last welcome of the current connection */
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
      drainJitterMs: options.drainJitterMs ?? 5000,
      rateLimitDelayMs: options.rateLimitDelayMs ?? 10_000,
      requestTimeoutMs: options.requestTimeoutMs ?? 10_000,
      connectTimeoutMs: options.connectTimeoutMs ?? 10_000,
      watchdog: options.watchdog ?? true,
      ...(options.pongTimeoutMs !== undefined ? { pongTimeoutMs: options.pongTimeoutMs } : {}),
      maxAuthRefusals: options.maxAuthRefusals ?? 3,
      random: options.random ?? Math.random,
    }
    for (const t of options.eventTypes ?? []) this.desired.add(t)
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
    if (ws !== null && ws.readyState <= OPEN) ws.close(1000, 'client closed')
  }

  /**
   * Adds patterns and resolves with all patterns the server holds. They count
   * as held (and are restored after reconnects) only once the server accepted
   * them; a refusal rejects with HeraldError and changes nothing. While a
   * connection is on its way the call waits for it. Before the first connect()
   * they are kept and sent with the first connection; any the server refuses
   * then are dropped and reported as an `error` (see restore()).
   */
  async subscribe (eventTypes: string[]): Promise<string[]> {
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

  /** The patterns the client keeps (restored on reconnect). */
  get subscriptions (): string[] { return [...this.desired] }

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

  private async send (ws: WebSocketLike, type: string, payload?: Record<string, unknown>): Promise<Frame> {
    const id = `c${++this.seq}`
    return await new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`${type} timed out`)) }, this.opts.requestTimeoutMs)
      this.pending.set(id, { resolve, reject, timer })
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
      await this.whenConnected()
      const ws = this.ws
      if (ws === null) throw new Error(`not connected (${this._state})`)
      try {
        return await this.send(ws, type, { eventTypes })
      } catch (err) {
        if (err instanceof HeraldError || this.ws === ws) throw err
      }
    }
  }

  private async whenConnected (): Promise<void> {
    if (this._state === 'connected' && this.ws !== null && this.ws.readyState === OPEN) return
    if (this._state === 'closed') throw new Error('client closed')
    await new Promise<void>((resolve, reject) => {
      const off = this.on('state', (s) => {
        if (s === 'connected') { off(); resolve() } else if (s === 'closed') { off(); reject(new Error('client closed')) }
      })
    })
  }

  private async open (): Promise<void> {
    this.setState(this.connects === 0 && this._state === 'disconnected' ? 'connecting' : 'reconnecting')
    const reason: TokenRequest['reason'] = this.tokenRefused ? 'refused' : this.opened === 0 ? 'connect' : 'reconnect'
    this.opened++
    this.tokenRefused = false
    let token: string | null | undefined
    try {
      token = await this.opts.getToken({ reason, failures: this.failures })
    } catch (err) {
      // Most likely the app's token endpoint is unreachable for a while: keep trying.
      this.emit('error', asError(err))
      this.failures++
      return this.schedule({ code: 0, reason: 'getToken failed' }, this.backoff())
    }
    if (this._state === 'closed') return
    if (token === null || token === undefined) {
      return this.halt({ code: 0, reason: 'no token' }, new HeraldError('NO_TOKEN', 'getToken returned no token: the client stops'))
    }
    const sep = this.opts.url.includes('?') ? '&' : '?'
    let ws: WebSocketLike
    try {
      ws = new this.opts.WebSocket(`${this.opts.url}${sep}token=${encodeURIComponent(token)}`)
    } catch (err) {
      this.emit('error', asError(err))
      this.failures++
      return this.schedule({ code: 0, reason: 'could not open' }, this.backoff())
    }
    this.ws = ws
    this.welcome = null
    this.welcomed = false
    ws.onmessage = (ev) => {
      if (this.ws !== ws) return
      this.lastRx = Date.now()
      // Any frame answers the watchdog's probe: back to waiting for silence.
      if (this.wd !== null && this.wd.probeSentAt !== null) { this.wd.probeSentAt = null; this.armWatchdog(this.wd.idleMs) }
      this.onFrame(ev.data)
    }
    ws.onerror = () => {}
    ws.onclose = (ev) => { if (this.ws === ws) this.onClose(ev.code, ev.reason) }
    // Node's `ws` shows a refused handshake's HTTP response; browsers (and
    // undici's WebSocket) show only a 1006 close, handled in onClose.
    const on = (ws as { on?: (ev: string, fn: (req: unknown, res: RefusalResponse) => void) => unknown }).on
    if (typeof on === 'function') on.call(ws, 'unexpected-response', (_req, res) => this.readRefusal(ws, res))
    this.connectTimer = setTimeout(() => {
      if (this.ws === ws && !this.welcomed) this.drop(ws, { code: GAVE_UP, reason: `no welcome within ${this.opts.connectTimeoutMs} ms` }, this.backoff())
    }, this.opts.connectTimeoutMs)
  }

  /** Reads the refusal's JSON body (bounded), then ends the attempt. */
  private readRefusal (ws: WebSocketLike, res: RefusalResponse): void {
    let body = ''
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      const terminate = (ws as { terminate?: () => void }).terminate
      if (this.ws !== ws) { terminate?.call(ws); return }
      this.detach()
      // Without a listener `ws` would abort the handshake itself; with one it waits for us.
      if (typeof terminate === 'function') terminate.call(ws)
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
   * The policy for a handshake refused before the upgrade (brief §4):
   * SESSION_REVOKED stops with `revoked`; another 401 asks getToken for a
   * fresh token and retries, up to maxAuthRefusals in a row; 403 (origin,
   * role) stops, since retrying cannot help; 429 waits Retry-After plus
   * jitter; 503 and the rest back off as for a dropped connection.
   */
  private onRefused (status: number, error: { code: string, message: string }, retryAfter: number | null): void {
    this.failures++
    this.failPending(new Error(`connection refused (${status})`))
    if (this._state === 'closed') return
    const info = { code: 1006, reason: `${status} ${error.code}: ${error.message}`, status, error }
    if (status !== 401) this.authRefusals = 0
    if (status === 401 && error.code === 'SESSION_REVOKED') {
      this.emit('revoked', error.message)
      return this.halt(info, new HeraldError(error.code, error.message), false)
    }
    if (status === 401) {
      if (++this.authRefusals >= this.opts.maxAuthRefusals) {
        return this.halt(info, new HeraldError(error.code, `${error.message} (refused ${this.authRefusals} times in a row, with a new token from getToken each time)`))
      }
      this.tokenRefused = true
      return this.schedule(info, this.backoff())
    }
    if (status === 403) return this.halt(info, new HeraldError(error.code, error.message))
    if (status === 429) {
      // Many clients are refused together when a limit is hit: spread them past Retry-After.
      const delay = retryAfter !== null
        ? retryAfter + this.opts.random() * Math.max(this.opts.baseDelayMs, retryAfter / 4)
        : Math.max(this.opts.rateLimitDelayMs, this.backoff())
      return this.schedule(info, delay)
    }
    return this.schedule(info, this.backoff())
  }

  private onFrame (data: unknown): void {
    let f: Frame
    try { f = JSON.parse(typeof data === 'string' ? data : String(data)) as Frame } catch { return }
    this.emit('frame', f)
    if (f.id !== undefined) {
      const p = this.pending.get(f.id)
      if (p !== undefined) {
        this.pending.delete(f.id)
        clearTimeout(p.timer)
        if (f.type === 'error') p.reject(new HeraldError(f.payload?.code ?? 'ERROR', f.payload?.message ?? 'error'))
        else p.resolve(f)
        return
      }
      if (f.id.startsWith('w')) return // the watchdog's pong: its arrival is all that counts
    }
    switch (f.type) {
      case 'welcome': void this.onWelcome(f.payload as Welcome); break
      case 'event': this.emit('event', f.payload as HeraldEvent); break
      case 'notification': this.emit('notification', f.payload as HeraldNotification); break
      case 'auth_expiring': void this.refresh(); break
      case 'session_revoked': this.emit('revoked', String(f.payload?.reason ?? 'revoked')); break
      case 'error': this.emit('error', new HeraldError(f.payload?.code ?? 'ERROR', f.payload?.message ?? 'error')); break
    }
  }

  private async onWelcome (w: Welcome): Promise<void> {
    const ws = this.ws!
    this.welcome = w
    this.welcomed = true
    if (this.connectTimer !== null) clearTimeout(this.connectTimer)
    this.connectTimer = null
    this.emit('welcome', w)
    this.startWatchdog(ws, w.heartbeatInterval)
    try {
      await this.restore(ws)
    } catch (err) {
      if (this.ws !== ws) return
      // Never `connected` while the server holds fewer patterns than the
      // client keeps: report, drop this connection and try again with backoff
      // (a later attempt may work: rate limit passed, another node).
      const e = asError(err)
      this.emit('error', e)
      const limited = err instanceof HeraldError && err.code === 'RATE_LIMITED'
      return this.drop(ws, { code: RESUBSCRIBE_FAILED, reason: `could not restore subscriptions: ${e.message}` }, limited ? Math.max(this.opts.rateLimitDelayMs, this.backoff()) : this.backoff())
    }
    if (this.ws !== ws || ws.readyState !== OPEN) return
    this.attempt = 0
    this.failures = 0
    this.authRefusals = 0
    this.connects++
    this.setState('connected')
  }

  /**
   * Sends the kept patterns on a new connection. The server takes a subscribe
   * all or nothing, so one pattern it refuses as INVALID_PATTERN (possible
   * only for patterns given before the first connect) would cost all the
   * others on every reconnect: the batch is split in halves until the refused
   * patterns are isolated; those are dropped from the kept set and reported
   * once as an `error` (HeraldError INVALID_PATTERN with `patterns`), and the
   * rest are held. Any other failure (TOO_MANY_SUBSCRIPTIONS, RATE_LIMITED, a
   * timeout) is thrown: the caller drops the connection and retries.
   */
  private async restore (ws: WebSocketLike): Promise<void> {
    if (this.desired.size === 0) return
    const refused: string[] = []
    const attempt = async (list: string[]): Promise<void> => {
      try {
        await this.send(ws, 'subscribe', { eventTypes: list })
      } catch (err) {
        if (!(err instanceof HeraldError) || err.code !== 'INVALID_PATTERN') throw err
        if (list.length === 1) { refused.push(list[0]!); return }
        const half = Math.ceil(list.length / 2)
        await attempt(list.slice(0, half))
        await attempt(list.slice(half))
      }
    }
    await attempt([...this.desired])
    if (refused.length === 0) return
    for (const t of refused) this.desired.delete(t)
    const e = new HeraldError('INVALID_PATTERN', `the server refused ${JSON.stringify(refused)}; dropped from the subscriptions`)
    e.patterns = refused
    this.emit('error', e)
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
  private startWatchdog (ws: WebSocketLike, heartbeatInterval: number): void {
    if (!this.opts.watchdog) return
    const hb = Number.isFinite(heartbeatInterval) && heartbeatInterval > 0 ? heartbeatInterval : 30_000
    const idleMs = hb + Math.max(1000, hb / 4)
    this.wd = { ws, idleMs, pongMs: this.opts.pongTimeoutMs ?? Math.max(2000, Math.min(hb, 10_000)), probeSentAt: null }
    this.lastRx = Date.now()
    this.armWatchdog(idleMs)
  }

  private armWatchdog (ms: number): void {
    if (this.watchdogTimer !== null) clearTimeout(this.watchdogTimer)
    this.watchdogTimer = setTimeout(() => this.watchdogTick(), ms)
  }

  private watchdogTick (): void {
    const wd = this.wd
    if (wd === null || this.ws !== wd.ws) return
    if (wd.probeSentAt !== null) {
      return this.drop(wd.ws, { code: GAVE_UP, reason: `heartbeat timeout: nothing received for ${Date.now() - this.lastRx} ms` }, this.backoff())
    }
    const quiet = Date.now() - this.lastRx
    if (quiet < wd.idleMs) return this.armWatchdog(wd.idleMs - quiet)
    wd.probeSentAt = Date.now()
    try { wd.ws.send(JSON.stringify({ type: 'ping', id: `w${++this.seq}` })) } catch {}
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

  private onClose (code: number, reason: string): void {
    const welcomed = this.welcomed
    this.detach()
    if (!welcomed) this.failures++
    this.failPending(new Error(`connection closed (${code})`))
    if (this._state === 'closed') return
    if (!welcomed && this.failures === REPORT_FAILURES_AFTER) {
      // Browsers hide why a handshake failed (refused token or origin, limit, node down).
      this.emit('error', new HeraldError('HANDSHAKE_FAILED', `${this.failures} connection attempts in a row ended before a welcome (last close ${code}); still retrying, asking getToken before each attempt`))
    }
    switch (code) {
      case 4004: // session revoked: signing in again is the user's business
      case 4003: // forbidden (or replaced by a newer connection): retrying would not help
        return this.halt({ code, reason }, new HeraldError(code === 4004 ? 'SESSION_REVOKED' : 'FORBIDDEN', reason), false)
      case 1001: // node draining: go elsewhere soon, spread out
        return this.schedule({ code, reason }, this.opts.random() * this.opts.drainJitterMs)
      case 4001: // token expired: open() fetches a new one
        return this.schedule({ code, reason }, this.opts.random() * this.opts.baseDelayMs)
      case 4029: // rate limited: back off harder
        return this.schedule({ code, reason }, Math.max(this.opts.rateLimitDelayMs, this.backoff()))
      default:
        return this.schedule({ code, reason }, this.backoff())
    }
  }

  /** Gives up on a socket that is still open (or opening) and schedules the next attempt. */
  private drop (ws: WebSocketLike, info: Omit<DisconnectInfo, 'delayMs'>, delayMs: number): void {
    const welcomed = this.welcomed
    this.detach()
    if (!welcomed) this.failures++
    // `ws` would wait up to 30 s for a closing handshake the dead peer never answers.
    const terminate = (ws as { terminate?: () => void }).terminate
    try {
      if (typeof terminate === 'function') terminate.call(ws)
      else ws.close(info.code, info.reason.slice(0, 120))
    } catch {}
    this.failPending(new Error(`connection closed (${info.code})`))
    if (this._state === 'closed') return
    this.schedule(info, delayMs)
  }

  /** Forgets the current socket: its late events are ignored from now on. */
  private detach (): void {
    this.ws = null
    this.welcomed = false
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
