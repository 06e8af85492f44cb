// What any page read back (a stream's messages, an endpoint's dead letters)
// may weigh: about MAX_READ_BYTES. Items may be 64 KiB each (an event's
// largest), and a page of 1,000 of them was a 64 MB answer, held whole in
// Redis, in the node and on the wire. A page ends with the item that brings
// it to the bound, so it always holds one and a reader always advances; the
// Redis scripts stop at the same item (streams-redis.ts).

export const MAX_READ_BYTES = 1024 * 1024

/** How many of `sizes` (bytes, in order) one page takes, and whether it stopped at the bound rather than at their end. */
export function pageEnd (sizes: Iterable<number>): { taken: number, full: boolean } {
  let bytes = 0
  let taken = 0
  for (const size of sizes) {
    if (bytes >= MAX_READ_BYTES) break
    bytes += size
    taken++
  }
  return { taken, full: bytes >= MAX_READ_BYTES }
}
