import { createBackend } from '../backend/backend.js'
import { inTime } from '../backend/deadline.js'
import type { Config } from './index.js'

// `REDIS_URL=… npm start` on several ports with no key material must make a
// cluster whose printed tokens and API key work on every node. Each node
// generates its own at boot; the first to reach Redis stores its own, and
// every node uses what is stored. Development only: production refuses to
// start without key material, so it never gets here.

const DEADLINE_MS = 5000
// Kept a day past the last boot, so a dev cluster that restarts keeps its tokens.
const TTL_MS = 24 * 3600_000

/**
 * Adopts the cluster's development secret and API key. Resolves false when Redis
 * could not be reached: the node keeps its own keys, which no other node has.
 */
export async function shareDevKeys (config: Config): Promise<boolean> {
  if (config.redis === null || (!config.jwt.generated && !config.apiKeysGenerated)) return true
  const backend = createBackend(config)
  try {
    const work = (async () => {
      await backend.connect()
      const mine: Record<string, string> = {}
      if (config.jwt.generated) mine.jwtSecret = config.jwt.secret!
      if (config.apiKeysGenerated) mine.apiKey = config.apiKeys[0]!
      return await backend.settings.adopt('dev:keys', mine, TTL_MS)
    })()
    const stored = await inTime(work, DEADLINE_MS, () => new Error('timed out'))
    if (config.jwt.generated && stored.jwtSecret !== undefined) config.jwt.secret = stored.jwtSecret
    if (config.apiKeysGenerated && stored.apiKey !== undefined) config.apiKeys = [stored.apiKey]
    return true
  } catch {
    return false
  } finally {
    await backend.close()
  }
}
