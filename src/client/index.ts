// Herald client SDK for the raw WebSocket protocol (docs/protocol.md).
// Runs in browsers and in Node: it uses only the standard WebSocket API (pass
// `WebSocket` from the `ws` package on Node 20) and no Node built-ins.

export type ClientState = 'disconnected' | 'connecting' | 'connected' | 'reconnecting' | 'closed'

export interface HeraldEvent { id: string, type: string, timestamp: string, userId?: string, sessionId?: string, data: Record<string, unknown> }
export interface HeraldNotification { id: string, level: string, title: string, message: string, data?: Record<string, unknown>, timestamp: string }
export interface Welcome { connectionId: string, serverId: string, userId: string, sessionId: string | null, expiresAt: string | null, heartbeatInterval: number }
export interface Frame { type: string, id?: string, payload?: any }

/** Minimal WebSocket surface the SDK needs; the browser's and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number
  send (data: string): void
  close (code?: number, reason?: string): void
  onopen: ((ev: unknown) => void) | null
  onmessage: ((ev: { data: unknown }) => void) | null
  onclose: ((ev: { code: number, reason: string }) => void) | null
  onerror: ((ev: unknown) => void) | null
}
export type WebSocketFactory = new (url: string) => WebSocketLike

export interface ClientOptions {
  /** ws(s)://host:port/ws/events (or /ws/admin) */
  url: string
  /** called before every connect and when the server says the token is expiring */
  getToken: () => string | Promise<string>
  /** the WebSocket constructor; defaults to globalThis.WebSocket */
  WebSocket?: WebSocketFactory
  /** patterns to hold from the first connect on */
  eventTypes?: string[]
  /** full-jitter exponential backoff: delay = random(0, min(maxDelayMs, baseDelayMs * 2^attempt)) */
  baseDelayMs?: number
  maxDelayMs?: number
  /** after a 1001 (node draining): reconnect within random(0, drainJitterMs) */
  drainJitterMs?: number
  /** floor of the backoff after 4029 (rate limited) */
  rateLimitDelayMs?: number
  requestTimeoutMs?: number
  /** source of randomness for the backoff, [0, 1) */
  random?: () => number
}

export interface ClientEvents {
  state: (state: ClientState, previous: ClientState) => void
  welcome: (w: Welcome) => void
  event: (e: HeraldEvent) => void
  notification: (n: HeraldNotification) => void
  /** the session was revoked (4004); the client stops */
  revoked: (reason: string) => void
  /** the token was refreshed in-band */
  refreshed: (expiresAt: string) => void
  /** a socket closed; the client may reconnect after `delayMs` (null: it stopped) */
  disconnect: (info: { code: number, reason: string, delayMs: number | null }) => void
  /** an `error` frame not tied to a request, or a local failure */
  error: (err: Error & { code?: string }) => void
  /** every frame, for tools and debugging */
  frame: (f: Frame) => void
}

type Listener<K extends keyof ClientEvents> = ClientEvents[K]

export class HeraldError extends Error {
  constructor (readonly code: string, message: string) { super(message); this.name = 'HeraldError' }
}

const OPEN = 1

/**
 * A Herald connection that keeps itself up: an explicit state machine,
 * full-jitter reconnects keyed on the close code, in-band token refresh, and
 * resubscription after every reconnect.
 */
export class HeraldClient {
  private _state: ClientState = 'disconnected'
  private ws: WebSocketLike | null = null
  private readonly listeners: { [K in keyof ClientEvents]?: Array<Listener<K>> } = {}
  private readonly desired = new Set<string>()
  private readonly pending = new Map<string, { resolve: (f: Frame) => void, reject: (e: Error) => void, timer: ReturnType<typeof setTimeout> }>()
  private seq = 0
  private attempt = 0
  private retryTimer: ReturnType<typeof setTimeout> | null = null
  private readonly opts: Required<Omit<ClientOptions, 'eventTypes' | 'WebSocket'>> & { WebSocket: WebSocketFactory }
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

  /** Resolves once connected (welcome received and subscriptions restored). */
  async connect (): Promise<Welcome> {
    if (this._state === 'closed') throw new Error('client closed')
    const ready = new Promise<Welcome>((resolve, reject) => {
      const offState = this.on('state', (s) => {
        if (s === 'connected') { offState(); resolve(this.welcome!) } else if (s === 'closed') { offState(); reject(new Error('client closed before connecting')) }
      })
    })
    if (this._state === 'disconnected') void this.open()
    return await ready
  }

  /** Closes for good (1000); no reconnect. */
  close (): void {
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryTimer = null
    const ws = this.ws
    this.ws = null
    this.setState('closed')
    this.failPending(new Error('client closed'))
    if (ws !== null && ws.readyState <= OPEN) ws.close(1000, 'client closed')
  }

  /** Adds patterns; they are restored after every reconnect. Resolves with all patterns held. */
  async subscribe (eventTypes: string[]): Promise<string[]> {
    for (const t of eventTypes) this.desired.add(t)
    if (this._state !== 'connected') return [...this.desired]
    const r = await this.request('subscribe', { eventTypes })
    return r.payload.eventTypes as string[]
  }

  async unsubscribe (eventTypes: string[]): Promise<string[]> {
    for (const t of eventTypes) this.desired.delete(t)
    if (this._state !== 'connected') return [...this.desired]
    const r = await this.request('unsubscribe', { eventTypes })
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
    const id = `c${++this.seq}`
    return await new Promise<Frame>((resolve, reject) => {
      const timer = setTimeout(() => { this.pending.delete(id); reject(new Error(`${type} timed out`)) }, this.opts.requestTimeoutMs)
      this.pending.set(id, { resolve, reject, timer })
      ws.send(JSON.stringify(payload === undefined ? { type, id } : { type, id, payload }))
    })
  }

  private async open (): Promise<void> {
    this.setState(this.connects === 0 && this._state === 'disconnected' ? 'connecting' : 'reconnecting')
    let token: string
    try {
      token = await this.opts.getToken()
    } catch (err) {
      this.emit('error', err instanceof Error ? err : new Error(String(err)))
      return this.schedule(0, 'getToken failed', this.backoff())
    }
    if (this._state === 'closed') return
    const sep = this.opts.url.includes('?') ? '&' : '?'
    let ws: WebSocketLike
    try {
      ws = new this.opts.WebSocket(`${this.opts.url}${sep}token=${encodeURIComponent(token)}`)
    } catch (err) {
      this.emit('error', err instanceof Error ? err : new Error(String(err)))
      return this.schedule(0, 'could not open', this.backoff())
    }
    this.ws = ws
    this.welcome = null
    ws.onmessage = (ev) => { if (this.ws === ws) this.onFrame(ev.data) }
    ws.onerror = () => {}
    ws.onclose = (ev) => { if (this.ws === ws) this.onClose(ev.code, ev.reason) }
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
    this.welcome = w
    this.emit('welcome', w)
    try {
      if (this.desired.size > 0) await this.request('subscribe', { eventTypes: [...this.desired] })
    } catch (err) {
      this.emit('error', err instanceof Error ? err : new Error(String(err)))
    }
    if (this.ws === null || this.ws.readyState !== OPEN) return
    this.attempt = 0
    this.connects++
    this.setState('connected')
  }

  private async refresh (): Promise<void> {
    try {
      const token = await this.opts.getToken()
      const r = await this.request('refresh', { token })
      this.emit('refreshed', String(r.payload?.expiresAt))
    } catch (err) {
      // The server closes with 4001 at exp; the reconnect then fetches a token.
      this.emit('error', err instanceof Error ? err : new Error(String(err)))
    }
  }

  private onClose (code: number, reason: string): void {
    this.ws = null
    this.failPending(new Error(`connection closed (${code})`))
    if (this._state === 'closed') return
    switch (code) {
      case 4004: // session revoked: signing in again is the user's business
      case 4003: // forbidden (or replaced by a newer connection): retrying would not help
        this.emit('disconnect', { code, reason, delayMs: null })
        this.setState('closed')
        return
      case 1001: // node draining: go elsewhere soon, spread out
        return this.schedule(code, reason, this.opts.random() * this.opts.drainJitterMs)
      case 4001: // token expired: open() fetches a new one
        return this.schedule(code, reason, this.opts.random() * this.opts.baseDelayMs)
      case 4029: // rate limited: back off harder
        return this.schedule(code, reason, Math.max(this.opts.rateLimitDelayMs, this.backoff()))
      default:
        return this.schedule(code, reason, this.backoff())
    }
  }

  private backoff (): number {
    const cap = Math.min(this.opts.maxDelayMs, this.opts.baseDelayMs * 2 ** Math.min(this.attempt, 20))
    this.attempt++
    return this.opts.random() * cap
  }

  private schedule (code: number, reason: string, delayMs: number): void {
    this.emit('disconnect', { code, reason, delayMs })
    this.setState('reconnecting')
    if (this.retryTimer) clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => { this.retryTimer = null; if (this._state !== 'closed') void this.open() }, delayMs)
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
