import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyError, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import { errorBody, HeraldError } from '../errors.js'
import { ID_RULE } from '../protocol/identifiers.js'
import { describe } from '../protocol/validation.js'

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

/** A schema failure in words (src/protocol/validation.ts, as for frames): where, and what the rule is, never a regex. */
export function schemaErrorFormatter (errors: FastifySchemaValidationError[], dataVar: string): Error {
  return new Error(describe(errors as Parameters<typeof describe>[0], dataVar).message)
}

/**
 * Fastify's router refuses some URLs before any route or error handler runs
 * (a path parameter past maxParamLength, broken percent-encoding) and answers
 * them in its own shape unless given this (the `frameworkErrors` option).
 */
export function frameworkErrors (err: FastifyError, _req: FastifyRequest, reply: FastifyReply): void {
  if (err.code === 'FST_ERR_MAX_PARAM_LENGTH') {
    void reply.code(400).send(errorBody('VALIDATION', `a path parameter is too long: ids are ${ID_RULE}`))
  } else if (err.code === 'FST_ERR_BAD_URL') {
    void reply.code(400).send(errorBody('VALIDATION', 'the URL path is not valid percent-encoding'))
  } else if ((err.statusCode ?? 500) < 500) {
    void reply.code(err.statusCode!).send(errorBody('VALIDATION', err.message))
  } else {
    reply.log.error({ err }, 'unhandled framework error')
    void reply.code(500).send(errorBody('INTERNAL'))
  }
}

/**
 * Requests Node's parser refuses (malformed, headers too large, too slow) never
 * reach Fastify: they are answered here, in the contract's shape, and logged
 * by code only (the error carries the raw request bytes, tokens included).
 */
export function clientErrorHandler (this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const status = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : err.code === 'HPE_HEADER_OVERFLOW' ? 431 : 400
  const message = status === 408 ? 'the request was not received in time' : status === 431 ? 'the request headers are too large' : 'the request is not valid HTTP'
  this.log.debug({ err: { code: err.code, message: err.message } }, 'client error')
  if (socket.writable) {
    const body = JSON.stringify(errorBody('VALIDATION', message))
    socket.write(`HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n\r\n${body}`)
  }
  socket.destroy()
}
