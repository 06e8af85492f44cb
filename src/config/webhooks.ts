import { Type } from '@sinclair/typebox'
import { MAX_WEBHOOKS, WEBHOOK_ID_PATTERN, WEBHOOK_ID_RULE, WebhookCreate } from '../protocol/schema.js'
import { inputCheck } from '../protocol/validation.js'
import { checkSecret, checkUrl, type SeedEndpoint } from '../webhooks/endpoints.js'
import { AddressPolicy } from '../webhooks/ssrf.js'

// WEBHOOKS: endpoints seeded from configuration, a JSON array. Each is what
// POST /api/webhooks takes, with the operator's own id, and a secret (one
// made up at boot could not be shown to anyone).
const Seed = Type.Object({
  ...WebhookCreate.properties,
  id: Type.String({ pattern: WEBHOOK_ID_PATTERN, description: WEBHOOK_ID_RULE }),
  secret: Type.String({ maxLength: 100 }),
}, { additionalProperties: false })
const Seeds = Type.Array(Seed, { maxItems: MAX_WEBHOOKS })
const check = inputCheck(Seeds)

/** The seeds, or an Error whose message says what is wrong (the caller names the variable). */
export function parseSeeds (json: string, rules: { allowPrivate: string[], allowHttp: boolean }): SeedEndpoint[] {
  let v: unknown
  try { v = JSON.parse(json) } catch { throw new Error('must be a JSON array of {id, url, eventTypes, secret, enabled?, description?}; it is not JSON') }
  const why = check(v)
  if (why !== null) throw new Error(`must be a JSON array of {id, url, eventTypes, secret, enabled?, description?}: ${why}`)
  const seeds = v as SeedEndpoint[]
  const policy = new AddressPolicy(rules.allowPrivate)
  const ids = new Set<string>()
  seeds.forEach((s, i) => {
    if (ids.has(s.id)) throw new Error(`has the id ${JSON.stringify(s.id)} twice`)
    ids.add(s.id)
    try {
      checkUrl(s.url, { policy, allowHttp: rules.allowHttp, secretOverlapMs: 0 })
      checkSecret(s.secret, `[${i}].secret`)
    } catch (err) {
      throw new Error(`[${i}] (${s.id}): ${(err as Error).message}`)
    }
  })
  return seeds
}
