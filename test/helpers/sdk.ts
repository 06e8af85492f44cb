// Shared by the SDK suites (test/client): a HeraldClient on Node's `ws` with
// everything it emits recorded, and waiting for its states without polling.
import type { Test } from 'tap'
import WebSocket from 'ws'
import { HeraldClient, type ClientOptions, type ClientState, type DisconnectInfo, type Frame, type HeraldEvent, type HeraldNotification, type TokenRequest, type Welcome } from '../../src/client/index.js'

let uniq = 0
/** A user id no other test of the process uses. */
export const user = (name: string): string => `${name}-${++uniq}`

/** An SDK client with everything it emits, and every getToken call, recorded. */
export interface Probe {
  client: HeraldClient
  states: ClientState[]
  events: HeraldEvent[]
  notifications: HeraldNotification[]
  welcomes: Welcome[]
  disconnects: Array<DisconnectInfo & { at: number }>
  errors: Array<Error & { code?: string }>
  revoked: string[]
  refreshed: string[]
  frames: Frame[]
  tokens: TokenRequest[]
}

/**
 * A client closed with the test. Retries are fast (baseDelayMs 50, maxDelayMs
 * 200) unless opts say otherwise, so reconnect paths take little test time.
 */
export function sdk (t: Test, opts: Partial<ClientOptions> & Pick<ClientOptions, 'url' | 'getToken'>): Probe {
  const tokens: TokenRequest[] = []
  const client = new HeraldClient({
    WebSocket: WebSocket as unknown as ClientOptions['WebSocket'],
    baseDelayMs: 50,
    maxDelayMs: 200,
    ...opts,
    getToken: (req) => { tokens.push(req); return opts.getToken(req) },
  })
  const p: Probe = { client, states: [], events: [], notifications: [], welcomes: [], disconnects: [], errors: [], revoked: [], refreshed: [], frames: [], tokens }
  client.on('state', (s) => p.states.push(s))
  client.on('event', (e) => p.events.push(e))
  client.on('notification', (n) => p.notifications.push(n))
  client.on('welcome', (w) => p.welcomes.push(w))
  client.on('disconnect', (d) => p.disconnects.push({ ...d, at: Date.now() }))
  client.on('error', (e) => p.errors.push(e))
  client.on('revoked', (r) => p.revoked.push(r))
  client.on('refreshed', (x) => p.refreshed.push(x))
  client.on('frame', (f) => p.frames.push(f))
  t.teardown(() => client.close())
  return p
}

/** Resolves once the client is in `state` (at once if it is); rejects after timeoutMs, naming the state it was in. */
export async function untilState (client: HeraldClient, state: ClientState, timeoutMs = 5000): Promise<void> {
  if (client.state === state) return
  let off = (): void => {}
  let timer: NodeJS.Timeout | undefined
  try {
    await new Promise<void>((resolve, reject) => {
      off = client.on('state', (s) => { if (s === state) resolve() })
      timer = setTimeout(() => reject(new Error(`client not ${state} within ${timeoutMs} ms (still ${client.state})`)), timeoutMs)
    })
  } finally {
    off()
    clearTimeout(timer)
  }
}
