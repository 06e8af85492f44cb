import { createHash } from 'node:crypto'
import type { FastifyRequest } from 'fastify'
import type { Actor } from '../admin/actions.js'
import type { Herald } from '../context.js'
import { HeraldError } from '../errors.js'
import { channels as diag } from '../observability/channels.js'

declare module 'fastify' {
  interface FastifyRequest {
    /** who called the API, set by serviceAuth */
    actor: Actor | null
  }
}

/** An API key is named by a short digest prefix in audit events, never by itself. */
const digestName = (key: string): string => 'key-' + createHash('sha256').update(key).digest('hex').slice(0, 8)

// Only keys the node accepted are kept (the configured ones, a handful): one
// hash per request (the constant-time check) rather than two.
const names = new Map<string, string>()
function keyName (key: string): string {
  let name = names.get(key)
  if (name === undefined) { name = digestName(key); names.set(key, name) }
  return name
}

/**
 * Services authenticate with an API key or a JWT carrying one of `roles`.
 * Both ride in `Authorization: Bearer`; an API key is tried first. Routes run
 * it as their `onRequest` hook, before the body is read: parsing and checking
 * a 1 MiB body of nested arrays costs a node a tenth of a second, which nobody
 * without a credential may make it spend (nor learn the schema from).
 */
export function serviceAuth (h: Herald, roles: readonly string[] = ['service']) {
  return async function authenticate (req: FastifyRequest): Promise<void> {
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(req.headers.authorization ?? '')
    if (!m) return fail(h, 'CREDENTIAL_MISSING')
    const credential = m[1]!
    if (h.apiKeyValid(credential)) { req.actor = { kind: 'api-key', id: keyName(credential) }; return }
    let identity
    try {
      identity = await h.verifier.verify(credential)
    } catch {
      return fail(h, 'CREDENTIAL_INVALID')
    }
    if (!identity.roles.some((r) => roles.includes(r))) return fail(h, 'ROLE_FORBIDDEN', `this route requires the role ${roles.join(' or ')}`)
    req.actor = { kind: identity.roles.includes('admin') && roles.includes('admin') ? 'admin' : 'service', id: identity.userId }
  }
}

function fail (h: Herald, code: 'CREDENTIAL_MISSING' | 'CREDENTIAL_INVALID' | 'ROLE_FORBIDDEN', message?: string): never {
  if (diag.authFailure.hasSubscribers) diag.authFailure.publish({ serverId: h.config.serverId, endpoint: 'api', reason: code })
  throw new HeraldError(code, message)
}
