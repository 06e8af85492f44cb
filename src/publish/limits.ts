// The size of client frames: a `publish` (an agent's log batch) may be larger
// than any other frame.

/**
 * The largest frame a transport accepts at all, and what a frame over
 * MAX_MESSAGE_BYTES but within it gets: a `publish` up to MAX_PUBLISH_BYTES
 * is served, anything else is closed 1009 as an oversized frame always was.
 */
export const transportLimit = (limits: { messageBytes: number, publishBytes: number }): number => Math.max(limits.messageBytes, limits.publishBytes)

export type SizeVerdict = 'ok' | 'too-large-publish' | 'close'

/** Judges a frame of `bytes` whose type is `type`. */
export function frameLimit (limits: { messageBytes: number, publishBytes: number }, type: unknown, bytes: number): SizeVerdict {
  if (type === 'publish') return bytes > limits.publishBytes ? 'too-large-publish' : 'ok'
  return bytes > limits.messageBytes ? 'close' : 'ok'
}
