// Small sets of fields the nodes of a cluster agree on, first writer wins:
// the development secret and API key that nodes started without key material
// share (src/config/dev-keys.ts). Memory (settings-memory.ts) and Redis
// (settings-redis.ts) implementations run test/backend/settings.test.ts.

export interface SharedSettings {
  /**
   * Stores each of `fields` that `name` does not hold yet (a field already
   * stored is kept: the first writer wins it), keeps `name` for `ttlMs` from
   * now, and resolves with every field it holds.
   */
  adopt (name: string, fields: Record<string, string>, ttlMs: number): Promise<Record<string, string>>
}
