// Idempotency keys of client publishes: a client that did not see its
// `published` (a dropped connection, a timeout) sends the same publish with
// the same `key` again, and it lands once, whichever node the retry reaches.
// A key is claimed before the publish and holds its receipt after, for
// PUBLISH_KEY_TTL. A claim whose publish never finished (its node died) lapses
// after PENDING_MS, so a retry is not refused for the whole TTL. Memory
// (publish-keys-memory.ts) and Redis (publish-keys-redis.ts) run the contract
// suite test/backend/publish-keys.test.ts.
//
// On Redis, one string per key under the user's hash tag,
// `<prefix>{u:<id>}:pk:<key>`: `~` while pending, then the receipt (JSON).

/** How long a claim waits for its publish before another attempt may take it. */
export const PENDING_MS = 30_000

export type Claim =
  | { readonly state: 'new' }
  | { readonly state: 'pending' }
  | { readonly state: 'done', readonly receipt: string }

export interface PublishKeys {
  /** Takes `key` of `userId` for a publish ('new'), or says who has it. */
  claim (userId: string, key: string, pendingMs: number): Promise<Claim>
  /** The publish is done: its receipt answers retries for `ttlMs`. */
  settle (userId: string, key: string, receipt: string, ttlMs: number): Promise<void>
  /** The publish failed: a retry may try again at once. */
  release (userId: string, key: string): Promise<void>
}

export const PENDING = '~'

export const publishKey = (prefix: string, userId: string, key: string): string => `${prefix}{u:${userId}}:pk:${key}`
