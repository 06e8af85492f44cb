/**
 * Counts by key (sockets per IP address, say), for a node's local bounds: a
 * key is dropped when its count comes back to zero, so the map holds only
 * what is counted now, however many addresses came and went.
 */
export class Counts {
  private readonly by = new Map<string, number>()

  of (key: string): number { return this.by.get(key) ?? 0 }

  add (key: string): void { this.by.set(key, this.of(key) + 1) }

  /** One fewer for `key`; never below zero. */
  remove (key: string): void {
    const n = this.of(key) - 1
    if (n <= 0) this.by.delete(key)
    else this.by.set(key, n)
  }

  /** Keys counted now. */
  get size (): number { return this.by.size }
}
