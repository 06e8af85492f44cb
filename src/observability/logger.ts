import type { FastifyServerOptions } from 'fastify'
import { stdSerializers, type DestinationStream } from 'pino'

// Query strings are dropped from logged URLs: `?token=` must never reach a log.
const pathOnly = (url: string | undefined): string | undefined => url?.split('?')[0]

/** Fastify logger options: pino JSON, tokens and credentials redacted. */
export function loggerOptions (level: string, stream?: DestinationStream): NonNullable<FastifyServerOptions['logger']> {
  return {
    level,
    ...(stream ? { stream } : {}),
    redact: {
      paths: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["sec-websocket-protocol"]', 'headers.authorization', 'token', '*.token'],
      censor: '[redacted]',
    },
    serializers: {
      // @fastify/websocket logs an upgrade to a route without a WebSocket handler as { path: url }.
      path: (url: unknown) => typeof url === 'string' ? pathOnly(url) : url,
      req (req: { method?: string, url?: string, ip?: string, headers?: Record<string, unknown> }) {
        return { method: req.method, url: pathOnly(req.url), remoteAddress: req.ip, upgrade: req.headers?.upgrade }
      },
      // Node's parser errors carry the request as it arrived (`rawPacket`:
      // request line with ?token=, Authorization header): an error's bytes
      // are never logged, only their size.
      err (err: Error) {
        const out = stdSerializers.err(err)
        if (typeof out !== 'object' || out === null) return out
        for (const [k, v] of Object.entries(out)) {
          if (ArrayBuffer.isView(v) || v instanceof ArrayBuffer) out[k] = `[${v.byteLength} bytes]`
        }
        return out
      },
    },
  } as NonNullable<FastifyServerOptions['logger']>
}
