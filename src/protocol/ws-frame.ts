import * as ws from 'ws'

// ws's own framing (Sender.frame), which its types do not declare (ws is
// pinned; test/dependencies/internals.test.ts checks the frames it makes).
// Taken from the ESM entry's named export: the default export carries
// `Sender` only once something has also loaded ws as CommonJS, which
// depended on import order.
const frame = (ws as unknown as { Sender: { frame: (data: Buffer, o: object) => Buffer[] } }).Sender.frame
const TEXT_FRAME = { fin: true, rsv1: false, opcode: 1, mask: false, readOnly: false }

/**
 * A complete unmasked WebSocket text frame (header + payload) in one buffer,
 * built once and written as is to every recipient's socket: the framing work
 * of a delivery does not grow with the number of recipients.
 */
export function textFrame (payload: Buffer): Buffer {
  const parts = frame(payload, TEXT_FRAME)
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts)
}
