import type { EndpointRecord, WebhookEndpointSource } from '../backend/webhooks.js'
import { PatternIndex, parseEventType, parsePattern } from '../protocol/patterns.js'

/** How often the version of the endpoint list is read: a change holds everywhere within a second. */
export const REFRESH_MS = 250

/** A notification has no type: endpoints match it as this one. */
export const NOTIFICATION_TYPE = 'notification'

/**
 * The webhook endpoints as one process sees them: read from the backend,
 * kept while its version stays (one cheap read every REFRESH_MS), indexed by
 * pattern with the subscriptions' matcher. Nodes and the publisher
 * library's direct mode each keep one; the publish path matches against it.
 */
export class EndpointDirectory {
  private list: EndpointRecord[] = []
  private byId = new Map<string, EndpointRecord>()
  private index = new PatternIndex<string>()
  private version = -1
  private first: Promise<void> | null = null
  private running: Promise<void> | null = null
  private timer: NodeJS.Timeout | null = null
  private stopped = false

  constructor (private readonly source: WebhookEndpointSource, private readonly onError: (err: Error) => void = () => {}) {}

  /** true once the list was read at least once: a publish then needs no wait. */
  get known (): boolean { return this.version >= 0 }

  /** Resolves once the list was read at least once (and starts the refresh); rejects while it never could be. */
  async ready (): Promise<void> {
    if (this.version >= 0) return
    this.first ??= this.refresh().finally(() => { this.first = null })
    this.start()
    await this.first
  }

  /** Reads the list again now if its version moved (a change made through this process is seen at once). */
  async refresh (): Promise<void> {
    this.running ??= this.load().finally(() => { this.running = null })
    await this.running
  }

  private start (): void {
    if (this.timer !== null || this.stopped) return
    this.timer = setInterval(() => { this.refresh().catch(this.onError) }, REFRESH_MS)
    this.timer.unref()
  }

  stop (): void {
    this.stopped = true
    if (this.timer !== null) clearInterval(this.timer)
    this.timer = null
  }

  private async load (): Promise<void> {
    const v = await this.source.version()
    if (v === this.version) return
    const list = await this.source.endpoints()
    const index = new PatternIndex<string>()
    for (const e of list) {
      if (!e.enabled) continue
      for (const p of e.eventTypes) {
        const segs = parsePattern(p)
        if (segs !== null) index.add(segs, e.id)
      }
    }
    this.list = list
    this.byId = new Map(list.map((e) => [e.id, e]))
    this.index = index
    this.version = v
  }

  /** Ids of the enabled endpoints one of whose patterns matches `type`. */
  match (type: string): string[] {
    if (this.list.length === 0) return []
    const segs = parseEventType(type)
    if (segs === null) return []
    const out = new Set<string>()
    this.index.forEachMatch(segs, (id) => out.add(id))
    return [...out]
  }

  get (id: string): EndpointRecord | undefined { return this.byId.get(id) }

  all (): readonly EndpointRecord[] { return this.list }
}
