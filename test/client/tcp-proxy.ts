// A TCP forwarder in front of one node, for the SDK suites: it lets a test
// cut a client's connection (the client sees 1006, as after a network blip,
// while the node stays up) and refuse new ones for a while, so the SDK's
// reconnect path can be driven without killing shared nodes.
import net from 'node:net'

export interface TcpProxy {
  port: number
  /** ws://127.0.0.1:<port> */
  ws: string
  /** connections currently piped */
  open (): number
  /** destroys every piped connection (both sides) */
  cut (): void
  /** while held, new connections are closed at once; existing ones are cut */
  hold (): void
  release (): void
  close (): Promise<void>
}

export async function startProxy (targetPort: number): Promise<TcpProxy> {
  const pairs = new Set<[net.Socket, net.Socket]>()
  let held = false
  const server = net.createServer((client) => {
    client.on('error', () => {})
    if (held) { client.destroy(); return }
    const upstream = net.connect({ port: targetPort, host: '127.0.0.1' })
    upstream.on('error', () => {})
    const pair: [net.Socket, net.Socket] = [client, upstream]
    pairs.add(pair)
    const end = (): void => { pairs.delete(pair); client.destroy(); upstream.destroy() }
    client.on('close', end)
    upstream.on('close', end)
    client.pipe(upstream)
    upstream.pipe(client)
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const port = (server.address() as net.AddressInfo).port
  const cut = (): void => { for (const [a, b] of [...pairs]) { a.destroy(); b.destroy() } }
  return {
    port,
    ws: `ws://127.0.0.1:${port}`,
    open: () => pairs.size,
    cut,
    hold () { held = true; cut() },
    release () { held = false },
    async close () {
      cut()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
