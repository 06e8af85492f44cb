import type { FastifyInstance, FastifyError } from 'fastify'
import { errorBody, HeraldError } from '../errors.js'

/** Every HTTP error leaves as { error: { code, message } }, codes from the one registry. */
export function installErrorHandlers (app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | HeraldError, req, reply) => {
    if (err instanceof HeraldError) {
      if (err.statusCode >= 500) req.log.warn({ code: err.code, message: err.message }, 'request failed')
      return reply.code(err.statusCode).send(errorBody(err.code, err.message))
    }
    if (err.validation) return reply.code(400).send(errorBody('VALIDATION', err.message))
    const status = err.statusCode ?? 500
    if (status < 500) {
      // Fastify's own client errors (bad JSON body, too large, unsupported media type).
      return reply.code(status).send(errorBody('VALIDATION', err.message))
    }
    req.log.error({ err }, 'unhandled error')
    return reply.code(500).send(errorBody('INTERNAL'))
  })
  app.setNotFoundHandler((req, reply) => reply.code(404).send(errorBody('NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`)))
}
