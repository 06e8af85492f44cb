/**
 * Fails the commands waiting on something that went away (the broker closed,
 * the publish connection dropped) instead of leaving them to wait for ever.
 *
 * Not `Promise.race([command, gone])` on one long-lived `gone` promise: every
 * race leaves a reaction on `gone` that lives until `gone` settles, so a node
 * would keep a little of every command it ever sent (nodejs/node#17469). Here
 * a settled command takes its entry with it.
 */
export class Tripwire {
  private waiting = new Set<(err: Error) => void>()

  guard<T> (command: Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.waiting.add(reject)
      command.then(
        (v) => { this.waiting.delete(reject); resolve(v) },
        (err: unknown) => { this.waiting.delete(reject); reject(err) },
      )
    })
  }

  /** Rejects everything waiting now; later commands are not affected. */
  trip (err: Error): void {
    const waiting = this.waiting
    this.waiting = new Set()
    for (const reject of waiting) reject(err)
  }
}
