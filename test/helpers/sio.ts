// A real socket.io-client that records everything the server emits (and the
// disconnects), so tests await what they expect with a time bound.
import { io, type ManagerOptions, type Socket, type SocketOptions } from 'socket.io-client'
import t from 'tap'

export interface SioRecord { event: string, payload: any, at: number }

export type SioOptions = Partial<ManagerOptions & SocketOptions> & { extraHeaders?: Record<string, string> }

export class SioClient {
  readonly records: SioRecord[] = []
  readonly disconnects: Array<{ reason: string, at: number }> = []
  readonly connectErrors: Array<{ message: string, data: any, at: number }> = []
  private waiters: Array<() => void> = []

  constructor (readonly socket: Socket) {
    socket.onAny((event: string, payload: unknown) => {
      this.records.push({ event, payload, at: Date.now() })
      this.wake()
    })
    socket.on('disconnect', (reason: string) => {
      this.disconnects.push({ reason, at: Date.now() })
      this.wake()
    })
    socket.on('connect_error', (err: Error & { data?: unknown }) => {
      this.connectErrors.push({ message: err.message, data: err.data, at: Date.now() })
      this.wake()
    })
  }

  /** The first record (from index `from` on) matching pred; waits up to timeoutMs. */
  async next (pred: (r: SioRecord) => boolean, timeoutMs = 5000, from = 0): Promise<SioRecord> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const i = this.records.findIndex((r, idx) => idx >= from && pred(r))
      if (i >= 0) return this.records[i]!
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for a Socket.IO event; last: ${JSON.stringify(this.records.slice(-5).map((r) => [r.event, r.payload]))}; disconnects: ${JSON.stringify(this.disconnects)}; connect errors: ${JSON.stringify(this.connectErrors)}; active: ${this.socket.active}`)
      await this.sleepUntilWoken(left)
    }
  }

  async nextOf (event: string, timeoutMs = 5000, from = 0): Promise<any> {
    return (await this.next((r) => r.event === event, timeoutMs, from)).payload
  }

  /** Waits for the n-th disconnect (1-based). */
  async disconnected (n = 1, timeoutMs = 5000): Promise<{ reason: string, at: number }> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      if (this.disconnects.length >= n) return this.disconnects[n - 1]!
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no disconnect #${n} within ${timeoutMs} ms; last: ${JSON.stringify(this.records.slice(-5).map((r) => [r.event, r.payload]))}`)
      await this.sleepUntilWoken(left)
    }
  }

  count (pred: (r: SioRecord) => boolean): number { return this.records.filter(pred).length }

  /** A protocol request: the acknowledgement receives the reply envelope {type, payload}. */
  async request (type: string, payload?: unknown, timeoutMs = 5000): Promise<{ type: string, payload: any }> {
    const s = this.socket.timeout(timeoutMs)
    return payload === undefined ? await s.emitWithAck(type) : await s.emitWithAck(type, payload)
  }

  async subscribe (eventTypes: string[]): Promise<string[]> {
    const r = await this.request('subscribe', { eventTypes })
    if (r.type !== 'subscribed') throw new Error(`subscribe failed: ${JSON.stringify(r)}`)
    return r.payload.eventTypes as string[]
  }

  close (): void { this.socket.close() }

  private async sleepUntilWoken (ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms)
      this.waiters.push(() => { clearTimeout(t); resolve() })
    })
  }

  private wake (): void {
    const w = this.waiters
    this.waiters = []
    for (const f of w) f()
  }
}

// Every client this helper made is closed when the test file ends, whatever
// the test did with it: a client a regression admitted where a refusal was
// expected must fail the test, not keep the process (and the file) alive.
const made = new Set<SioClient>()
t.teardown(() => { for (const c of made) c.close() })

/** A new Manager per client (forceNew); no automatic reconnection unless asked. */
export function sio (url: string, opts: SioOptions = {}): SioClient {
  const c = new SioClient(io(url, { forceNew: true, reconnection: false, ...opts }))
  made.add(c)
  return c
}

export type SioAttempt =
  | { ok: true, client: SioClient, welcome: any }
  | { ok: false, client: SioClient, message: string, data: any, error: Error & { data?: any, description?: any, type?: string } }

/** Connects and resolves on `welcome` (accepted) or the first connect_error (refused). */
export async function sioAttempt (url: string, opts: SioOptions = {}, timeoutMs = 10_000): Promise<SioAttempt> {
  const client = sio(url, opts)
  let timer: NodeJS.Timeout | undefined
  try {
    return await new Promise<SioAttempt>((resolve, reject) => {
      timer = setTimeout(() => { client.close(); reject(new Error(`no welcome nor connect_error within ${timeoutMs} ms`)) }, timeoutMs)
      const onWelcome = (w: unknown): void => {
        client.socket.off('connect_error', onError)
        resolve({ ok: true, client, welcome: w })
      }
      const onError = (err: Error & { data?: any }): void => {
        client.socket.off('welcome', onWelcome)
        client.close()
        resolve({ ok: false, client, message: err.message, data: err.data, error: err })
      }
      client.socket.once('welcome', onWelcome)
      client.socket.once('connect_error', onError)
    })
  } finally {
    clearTimeout(timer)
  }
}

/** Connects and waits for `welcome`; throws if refused. */
export async function sioConnect (url: string, opts: SioOptions = {}, timeoutMs = 10_000): Promise<{ client: SioClient, welcome: any }> {
  const a = await sioAttempt(url, opts, timeoutMs)
  if (!a.ok) throw new Error(`Socket.IO connection refused: ${a.message} ${JSON.stringify(a.data)}`)
  return { client: a.client, welcome: a.welcome }
}
