import WebSocket from 'ws'

export interface Frame { type: string, id?: string, payload?: any }

export interface Refusal { status: number, headers: Record<string, string | string[] | undefined>, body: any }

/**
 * A real `ws` client that records every frame, so tests await what they
 * expect (with a time bound) instead of sleeping.
 */
export class TestClient {
  readonly frames: Frame[] = []
  closeInfo: { code: number, reason: string } | null = null
  private waiters: Array<() => void> = []
  private seq = 0
  readonly closed: Promise<{ code: number, reason: string }>

  constructor (readonly ws: WebSocket) {
    ws.on('message', (data, isBinary) => {
      if (!isBinary) this.frames.push(JSON.parse(data.toString()) as Frame)
      this.wake()
    })
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString() }
        resolve(this.closeInfo)
        this.wake()
      })
    })
    ws.on('error', () => {})
  }

  /** The first recorded frame (from `from` on) matching pred; waits up to timeoutMs. */
  async next (pred: (f: Frame) => boolean = () => true, timeoutMs = 5000, from = 0): Promise<Frame> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const i = this.frames.findIndex((f, idx) => idx >= from && pred(f))
      if (i >= 0) return this.frames[i]!
      if (this.closeInfo) throw new Error(`closed (${this.closeInfo.code} ${this.closeInfo.reason}) before the expected frame; got ${JSON.stringify(this.frames.slice(-5))}`)
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for a frame; last frames: ${JSON.stringify(this.frames.slice(-5))}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left)
        this.waiters.push(() => { clearTimeout(t); resolve() })
      })
    }
  }

  async nextOfType (type: string, timeoutMs = 5000): Promise<Frame> {
    return await this.next((f) => f.type === type, timeoutMs)
  }

  /** Waits until n frames match pred; returns them in arrival order. */
  async collect (pred: (f: Frame) => boolean, n: number, timeoutMs = 10_000): Promise<Frame[]> {
    await this.next(() => this.frames.filter(pred).length >= n, timeoutMs)
    return this.frames.filter(pred)
  }

  send (obj: unknown): void { this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj)) }

  /** Sends a request with a fresh id and resolves with the reply carrying that id. */
  async request (type: string, payload?: unknown, timeoutMs = 5000): Promise<Frame> {
    const id = `r${++this.seq}`
    this.send(payload === undefined ? { type, id } : { type, id, payload })
    return await this.next((f) => f.id === id, timeoutMs)
  }

  async subscribe (eventTypes: string[]): Promise<Frame> {
    const r = await this.request('subscribe', { eventTypes })
    if (r.type !== 'subscribed') throw new Error(`subscribe failed: ${JSON.stringify(r)}`)
    return r
  }

  /** Resolves once no frame matching pred arrived... never used for timing claims; see events. */
  count (pred: (f: Frame) => boolean): number { return this.frames.filter(pred).length }

  async close (): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return
    this.ws.close(1000)
    await Promise.race([this.closed, new Promise((r) => setTimeout(r, 2000))])
    // readyState changed while we awaited; TypeScript narrowed it before the await.
    if ((this.ws.readyState as number) !== WebSocket.CLOSED) this.ws.terminate()
  }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}

/** Opens a connection and waits for `welcome`. */
export async function connect (url: string, opts: { token?: string, headers?: Record<string, string>, waitWelcome?: boolean } = {}): Promise<TestClient> {
  const u = opts.token !== undefined ? `${url}${url.includes('?') ? '&' : '?'}token=${encodeURIComponent(opts.token)}` : url
  const ws = new WebSocket(u, { headers: opts.headers })
  const client = new TestClient(ws)
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve())
    ws.once('unexpected-response', (_req, res) => reject(new Error(`refused with ${res.statusCode}`)))
    ws.once('error', reject)
  })
  if (opts.waitWelcome !== false) await client.nextOfType('welcome')
  return client
}

/** Attempts an upgrade that must be refused; resolves with the HTTP status and JSON body. */
export async function refusal (url: string, headers: Record<string, string> = {}): Promise<Refusal> {
  const ws = new WebSocket(url, { headers })
  return await new Promise((resolve, reject) => {
    ws.once('open', () => { ws.terminate(); reject(new Error('upgrade was accepted')) })
    ws.once('unexpected-response', (_req, res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { body += c })
      res.on('end', () => {
        let parsed: unknown = body
        try { parsed = JSON.parse(body) } catch {}
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: parsed })
        ws.terminate()
      })
    })
    ws.once('error', (err) => reject(err))
  })
}
