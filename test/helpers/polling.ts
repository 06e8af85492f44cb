// A raw engine.io (protocol 4) long-polling client over node:http, for what
// socket.io-client will not do: stop polling while the session stays open,
// open sessions it never authenticates, come from a chosen loopback address.
import http from 'node:http'

/** Engine.io v4 joins the packets of one HTTP body with a record separator. */
const SEPARATOR = '\x1e'

export interface HttpReply { status: number, body: string }

export class PollingSession {
  /** engine.io packets received so far, in order (type digit first: 4 message, 2 ping, 6 noop, 1 close) */
  readonly packets: string[] = []

  constructor (readonly base: string, readonly sid: string, private readonly agent: http.Agent) {}

  /** One GET: waits for what the server has queued (it answers at once when there is something). */
  async poll (timeoutMs = 5000): Promise<HttpReply> {
    const r = await request(this.base, 'GET', `/socket.io/?EIO=4&transport=polling&sid=${this.sid}`, this.agent, undefined, timeoutMs)
    if (r.status === 200) this.packets.push(...r.body.split(SEPARATOR))
    return r
  }

  /** Polls until a packet matching pred has arrived; returns it. */
  async until (pred: (packet: string) => boolean, timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const found = this.packets.find(pred)
      if (found !== undefined) return found
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`no matching packet within ${timeoutMs} ms; got ${JSON.stringify(this.packets.map((p) => p.slice(0, 120)))}`)
      const r = await this.poll(left)
      if (r.status !== 200) throw new Error(`poll answered ${r.status} ${r.body}`)
    }
  }

  /** One POST of engine.io packets (e.g. `40{"token":"…"}`, `3` for a pong). */
  async send (...packets: string[]): Promise<HttpReply> {
    return await request(this.base, 'POST', `/socket.io/?EIO=4&transport=polling&sid=${this.sid}`, this.agent, packets.join(SEPARATOR))
  }
}

export interface Handshake { status: number, body: string, session: PollingSession | null }

/**
 * An engine.io polling handshake (no token: Socket.IO sends it later, in
 * CONNECT). `localAddress` picks the loopback address the node sees.
 */
export async function handshake (base: string, opts: { localAddress?: string, agent?: http.Agent } = {}): Promise<Handshake> {
  const agent = opts.agent ?? new http.Agent({ keepAlive: true, maxSockets: 2, ...(opts.localAddress !== undefined ? { localAddress: opts.localAddress } : {}) })
  const r = await request(base, 'GET', '/socket.io/?EIO=4&transport=polling', agent)
  if (r.status !== 200 || !r.body.startsWith('0')) return { ...r, session: null }
  const { sid } = JSON.parse(r.body.slice(1)) as { sid: string }
  return { ...r, session: new PollingSession(base, sid, agent) }
}

async function request (base: string, method: string, path: string, agent: http.Agent, body?: string, timeoutMs = 5000): Promise<HttpReply> {
  return await new Promise((resolve, reject) => {
    const req = http.request(base + path, { method, agent, headers: body !== undefined ? { 'content-type': 'text/plain;charset=UTF-8' } : {} }, (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => { text += c })
      res.on('end', () => { clearTimeout(timer); resolve({ status: res.statusCode ?? 0, body: text }) })
      res.on('error', reject)
    })
    const timer = setTimeout(() => req.destroy(new Error(`${method} ${path} did not answer within ${timeoutMs} ms`)), timeoutMs)
    req.on('error', (err) => { clearTimeout(timer); reject(err) })
    req.end(body)
  })
}
