// The one rule for the ids a caller names: a token's sub and sid, the API's
// path parameters and bodies (userId, sessionId, connectionId), and /ws/admin
// payloads. Ids travel in Redis channel names and message headers and end up
// in logs, so no control characters (tab and newline included); their length
// counts characters (code points), as JSON Schema's maxLength does. No lone
// surrogate either (half of a UTF-16 pair, \p{Cs}): encoded to UTF-8 for
// Redis it becomes U+FFFD, so "\ud800" and "\ufffd" would name one channel,
// one stream, one slot key: one user would get another's events.

export const MAX_ID_LENGTH = 256

/** As a JSON Schema pattern (Ajv compiles it with the `u` flag, like ID below). */
export const ID_PATTERN = `^[^\\p{Cc}\\p{Cs}]{1,${MAX_ID_LENGTH}}$`

/** Said in the refusals that name an id. */
export const ID_RULE = `1-${MAX_ID_LENGTH} characters without control characters or unpaired surrogates`

const ID = new RegExp(ID_PATTERN, 'u')

// Two UTF-16 units per character at most: anything longer fails without a regex run.
export const isId = (v: unknown): v is string => typeof v === 'string' && v.length <= 2 * MAX_ID_LENGTH && ID.test(v)
