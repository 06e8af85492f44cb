// Baseline: uWebSockets.js (@trufflesuite/uws-js-unofficial, uWS.js v20.30),
// the native server, doing what ws-baseline.ts does: every client gets every
// message of one Redis channel, through uWS's own topic publish (one C++ call
// per message for all subscribers). Its binaries are built for Node 16/18/20
// ABIs: the bench runs it with a Node 20 binary (UWS_NODE), not Node 22.
import { createRequire } from 'node:module'
import { Redis } from 'ioredis'

const require = createRequire(import.meta.url)
// The binary itself, not the package's entry: that falls back to a Node
// implementation when no binary fits, and the fallback is not the baseline.
const uws = require(`@trufflesuite/uws-js-unofficial/binaries/uws_${process.platform}_${process.arch}_${process.versions.modules}.node`) as typeof import('@trufflesuite/uws-js-unofficial')

const app = uws.App()
app.ws('/*', {
  compression: uws.DISABLED,
  maxPayloadLength: 16 * 1024,
  maxBackpressure: 64 * 1024 * 1024,
  idleTimeout: 0,
  open: (ws) => {
    ws.subscribe('bench')
    ws.send('{"type":"welcome"}')
  },
})
app.get('/*', (res) => { res.end('ok') })

const sub = new Redis(process.env.REDIS_URL!)
sub.on('error', (err) => { console.error('redis:', err.message) })
sub.subscribe('bench').catch((err) => { console.error(err); process.exit(1) })
sub.on('message', (_ch: string, msg: string) => { app.publish('bench', msg) })

app.listen('127.0.0.1', Number(process.env.PORT ?? 0), (token) => {
  if (!token) { console.error('uWS could not listen'); process.exit(1) }
  process.send?.({ ready: true, port: uws.us_socket_local_port(token) })
})
process.on('SIGTERM', () => process.exit(0))
