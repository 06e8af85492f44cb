// A WebSocket client cut down to what a load generator needs: the upgrade
// request, the status, unmasked text frames in, masked text frames and pongs
// out. What a server does for it is what it does for any client; what the
// generator spends is a fraction of the `ws` client's (no random key and
// accept check, no stream machinery per socket), which on a machine whose
// cores the servers share is CPU the servers get back.
import net from 'node:net'

export interface RawHandlers {
  /** a text frame from the server; `send` writes one back */
  text (text: string, send: (text: string) => void): void
  /** the server answered the upgrade with another status */
  refused (status: number): void
  /** the TCP connection closed, unless refused (`code`: the close frame's, if one came) */
  closed (code: number | null, err: Error | null): void
}

const KEY = 'aGVyYWxkLWJlbmNoLWtleQ=='

/** Opens `url` (ws://host:port/path?query); returns a function that ends it. */
export function openRaw (url: string, h: RawHandlers): () => void {
  const u = new URL(url)
  const sock = net.connect(Number(u.port), u.hostname)
  sock.setNoDelay(true)
  sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`)
  const send = (text: string): void => {
    const payload = Buffer.from(text)
    const len = payload.length
    // Masked with a zero key, which leaves the payload as it is.
    const head = len < 126 ? Buffer.from([0x81, 0x80 | len, 0, 0, 0, 0]) : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff, 0, 0, 0, 0])
    sock.write(Buffer.concat([head, payload]))
  }
  let upgraded = false
  let refused = false
  let code: number | null = null
  let failure: Error | null = null
  let pending: Buffer | null = null
  sock.on('data', (chunk: Buffer) => {
    let buf = pending === null ? chunk : Buffer.concat([pending, chunk])
    pending = null
    if (!upgraded) {
      const end = buf.indexOf('\r\n\r\n')
      if (end < 0) { pending = buf; return }
      const status = Number(buf.toString('latin1', 9, 12))
      if (status !== 101) { refused = true; sock.destroy(); h.refused(status); return }
      upgraded = true
      buf = buf.subarray(end + 4)
    }
    let at = 0
    while (buf.length - at >= 2) {
      const opcode = buf[at]! & 0x0f
      let len = buf[at + 1]! & 0x7f
      let hdr = 2
      if (len === 126) { if (buf.length - at < 4) break; len = buf.readUInt16BE(at + 2); hdr = 4 } else if (len === 127) { if (buf.length - at < 10) break; len = Number(buf.readBigUInt64BE(at + 2)); hdr = 10 }
      if (buf.length - at < hdr + len) break
      const body = buf.subarray(at + hdr, at + hdr + len)
      at += hdr + len
      if (opcode === 1) h.text(body.toString(), send)
      else if (opcode === 9) sock.write(Buffer.concat([Buffer.from([0x8a, 0x80 | len, 0, 0, 0, 0]), body]))
      else if (opcode === 8) { code = len >= 2 ? body.readUInt16BE(0) : 1005; sock.destroy(); return }
    }
    if (at < buf.length) pending = buf.subarray(at)
  })
  sock.on('error', (err) => { failure = err })
  sock.on('close', () => { if (!refused) h.closed(code, failure) })
  return () => sock.destroy()
}
