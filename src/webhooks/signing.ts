import { createHmac, randomBytes } from 'node:crypto'
import type { SecretRecord } from '../backend/webhooks.js'

// Standard Webhooks (standardwebhooks.com, v1): the signed content is
// "<webhook-id>.<webhook-timestamp>.<body>", HMAC-SHA256 with the secret's
// key (the base64 after `whsec_`), sent as `v1,<base64>`; several, space
// separated, while a rotated secret still overlaps.

export const SECRET_PREFIX = 'whsec_'
/** Random bytes in a generated secret: within the specification's 24-64. */
const SECRET_BYTES = 32

export function newSecret (): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString('base64')
}

/** The key a secret stands for; throws (with the rule) when it is no `whsec_` secret of 24-64 bytes. */
export function secretKey (secret: string): Buffer {
  const b64 = secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : ''
  const key = /^[A-Za-z0-9+/]+={0,2}$/.test(b64) && b64.length % 4 === 0 ? Buffer.from(b64, 'base64') : Buffer.alloc(0)
  if (key.length < 24 || key.length > 64) throw new RangeError('a secret is whsec_ followed by the base64 of 24 to 64 random bytes')
  return key
}

export const SECRET_RULE = 'whsec_ followed by the base64 of 24 to 64 random bytes'

// Keys decoded once per secret, not per delivery (a node signs thousands a second).
const keys = new Map<string, Buffer>()

export function sign (secret: string, webhookId: string, timestamp: number, body: string): string {
  let key = keys.get(secret)
  if (key === undefined) {
    key = secretKey(secret)
    if (keys.size >= 4096) keys.clear()
    keys.set(secret, key)
  }
  return 'v1,' + createHmac('sha256', key).update(`${webhookId}.${timestamp}.${body}`).digest('base64')
}

/** The `webhook-signature` header: one signature per secret still in force at `now` (ms). */
export function signatures (secrets: readonly SecretRecord[], now: number, webhookId: string, timestamp: number, body: string): string {
  return secrets.filter((s) => s.expiresAt === null || s.expiresAt > now).map((s) => sign(s.secret, webhookId, timestamp, body)).join(' ')
}
