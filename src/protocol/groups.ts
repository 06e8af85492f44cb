// Group names (`group:<name>`: a conversation, a team, a room). A name travels
// in Redis channel and key names (`herald:{g:<name>}`), in URL paths and in
// stream names, so it is held to a small alphabet: no braces (which would cut
// a Redis Cluster hash tag short), no slashes, no spaces.

export const MAX_GROUP_LENGTH = 128

/** As a JSON Schema pattern. */
export const GROUP_PATTERN = `^[A-Za-z0-9_.:-]{1,${MAX_GROUP_LENGTH}}$`

/** Said in refusals and descriptions. */
export const GROUP_RULE = `1-${MAX_GROUP_LENGTH} letters, digits, underscores, dots, colons or hyphens`

const GROUP = new RegExp(GROUP_PATTERN)

export const isGroupName = (v: unknown): v is string => typeof v === 'string' && v.length <= MAX_GROUP_LENGTH && GROUP.test(v)

/**
 * Event types no client may publish, whatever its `publish` claim says: what
 * the gateway and the services behind it say about sign-ins, security,
 * sessions, operators and the system. A client that could publish them could
 * impersonate its own backend.
 */
export const RESERVED_PREFIXES = ['authentication', 'security', 'session', 'admin', 'system'] as const

export function isReservedType (type: string): boolean {
  const dot = type.indexOf('.')
  const first = dot < 0 ? type : type.slice(0, dot)
  return (RESERVED_PREFIXES as readonly string[]).includes(first)
}
