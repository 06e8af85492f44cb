import type { FastifyServerOptions } from 'fastify'
import type { DestinationStream } from 'pino'

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
      req (req: { method?: string, url?: string, ip?: string, headers?: Record<string, unknown> }) {
        return { method: req.method, url: pathOnly(req.url), remoteAddress: req.ip, upgrade: req.headers?.upgrade }
      },
    },
  } as NonNullable<FastifyServerOptions['logger']>
}
