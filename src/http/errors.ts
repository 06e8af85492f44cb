import { STATUS_CODES } from 'node:http'
import type { Socket } from 'node:net'
import type { FastifyInstance, FastifyError, FastifyReply, FastifyRequest, FastifySchemaValidationError } from 'fastify'
import { errorBody, Errors, HeraldError, type ErrorCode } from '../errors.js'
import { ID_RULE } from '../protocol/identifiers.js'
import { describe } from '../protocol/validation.js'

// Fastify's own refusals, each with its specific code: VALIDATION is for a
// request that breaks its schema, not for every 4xx.
const FASTIFY_CODES: Record<string, { code: ErrorCode, message?: string }> = {
  // Fastify raises the same error for a body holding a `__proto__` key or a
  // `constructor` with a `prototype` (refused: prototype pollution).
  FST_ERR_CTP_INVALID_JSON_BODY: { code: 'BAD_JSON', message: 'the request body is not valid JSON, or has a "__proto__" key or a "constructor" with a "prototype" (refused)' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { code: 'BAD_JSON', message: 'the request body is empty; application/json needs a JSON value' },
  FST_ERR_CTP_BODY_TOO_LARGE: { code: 'PAYLOAD_TOO_LARGE' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'the request body must be application/json' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { code: 'MALFORMED_REQUEST', message: 'the request body does not match its Content-Length' },
  FST_ERR_BAD_URL: { code: 'MALFORMED_REQUEST', message: 'the URL path is not valid percent-encoding' },
  // Path parameters are ids: one past the router's length limit breaks the id rule.
  FST_ERR_MAX_PARAM_LENGTH: { code: 'VALIDATION', message: `a path parameter is too long: ids are ${ID_RULE}` },
}

// For a client error Fastify may raise that the table does not name yet.
const BY_STATUS: Record<number, ErrorCode> = { 404: 'NOT_FOUND', 408: 'REQUEST_TIMEOUT', 413: 'PAYLOAD_TOO_LARGE', 415: 'UNSUPPORTED_MEDIA_TYPE', 431: 'HEADERS_TOO_LARGE' }

/** A 4xx Fastify raised itself, in the contract's shape, with its specific code. */
function clientError (err: FastifyError, reply: FastifyReply): FastifyReply {
  const known = err.code !== undefined && Object.hasOwn(FASTIFY_CODES, err.code) ? FASTIFY_CODES[err.code]! : undefined
  if (known !== undefined) return reply.code(Errors[known.code].status).send(errorBody(known.code, known.message))
  return reply.code(err.statusCode!).send(errorBody(BY_STATUS[err.statusCode!] ?? 'MALFORMED_REQUEST', err.message))
}

/** Every HTTP error leaves as { error: { code, message } }, codes from the one registry. */
export function installErrorHandlers (app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError | HeraldError, req, reply) => {
    if (err instanceof HeraldError) {
      if (err.statusCode >= 500) req.log.warn({ code: err.code, message: err.message }, 'request failed')
      return reply.code(err.statusCode).send(errorBody(err.code, err.message))
    }
    if (err.validation) return reply.code(400).send(errorBody('VALIDATION', err.message))
    if ((err.statusCode ?? 500) < 500) return clientError(err, reply)
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
export function frameworkErrors (err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  // An upgrade the router refuses (GET /ws/%E0 with Upgrade: websocket) is on
  // a socket Node's HTTP server no longer answers on, and @fastify/websocket
  // closes only the upgrades its hooks saw, which run after the router: each
  // one held a descriptor for good, until the node had none left.
  if (req.raw.headers.upgrade !== undefined) closeOnceAnswered(reply)
  if ((err.statusCode ?? 500) < 500) {
    void clientError(err, reply)
  } else {
    reply.log.error({ err }, 'unhandled framework error')
    void reply.code(500).send(errorBody('INTERNAL'))
  }
}

function closeOnceAnswered (reply: FastifyReply): void {
  const socket = reply.raw.socket
  if (socket !== null) reply.raw.once('finish', () => endThenClose(socket))
}

/**
 * Requests Node's parser refuses (malformed, headers too large, too slow) never
 * reach Fastify: they are answered here, in the contract's shape, and logged
 * by code only (the error carries the raw request bytes, tokens included).
 */
export function clientErrorHandler (this: FastifyInstance, err: NodeJS.ErrnoException, socket: Socket): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const code: ErrorCode = err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 'REQUEST_TIMEOUT' : err.code === 'HPE_HEADER_OVERFLOW' ? 'HEADERS_TOO_LARGE' : 'MALFORMED_REQUEST'
  const status = Errors[code].status
  this.log.debug({ err: { code: err.code, message: err.message } }, 'client error')
  if (socket.writable) writeResponse(socket, status, errorBody(code))
  else socket.destroy()
}

/**
 * An error response written straight to a socket Node's HTTP server no longer
 * answers on (a parser error, an upgrade), which is then closed.
 */
export function writeResponse (socket: Socket, status: number, body: ReturnType<typeof errorBody>, headers?: Record<string, string>): void {
  const text = JSON.stringify(body)
  let head = `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\nContent-Length: ${Buffer.byteLength(text)}\r\nContent-Type: application/json; charset=utf-8\r\nConnection: close\r\n`
  if (headers !== undefined) for (const [k, v] of Object.entries(headers)) head += `${k}: ${v}\r\n`
  endThenClose(socket, `${head}\r\n${text}`)
}

/**
 * Ends a socket Node's HTTP server does not manage, after `last`: closed once
 * written (destroyed at once, the answer could be lost); a peer that reads
 * nothing may keep it from being written: 2 s, then closed.
 */
function endThenClose (socket: Socket, last = ''): void {
  // Node takes its own error listener off a socket it hands over (upgrade,
  // CONNECT): a reset while the answer is written must not be an uncaught error.
  if (socket.listenerCount('error') === 0) socket.on('error', () => socket.destroy())
  socket.once('finish', () => socket.destroy())
  socket.end(last)
  if (!socket.destroyed) setTimeout(() => socket.destroy(), 2000).unref()
}
