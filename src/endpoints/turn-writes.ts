import type { Delivery } from '../events/hub.js'

/**
 * Deliveries to one socket within an event-loop turn leave in one write, and
 * sockets that were sent the same run of events in a turn share one buffer.
 *
 * Every frame written in the turn is logged once, in order. A socket's queue
 * is a run of that log (first index, count) for as long as it was sent every
 * frame since its first, which is what a broadcast gives every subscriber;
 * only a socket that skipped one keeps its own list. At the end of the turn
 * (one setImmediate for the node) each distinct run is concatenated once and
 * the same buffer is written to every socket that holds it.
 *
 * Measured at 1.1M deliveries/s to 1,000 subscribers: a write request per
 * frame (corking the socket) spent a fifth of the CPU in GC, and a copy per
 * socket (Buffer.concat of its own list) over 40% in copying.
 */
export interface TurnQueue {
  /** index in the turn's log of the first frame queued; -1 when nothing is */
  qFirst: number
  qCount: number
  /** the socket's own frames, once its run has a gap */
  qOwn: Buffer[] | null
  qBytes: number
  /** writes what is queued as one buffer; called at the end of the turn, or before anything else is sent */
  flush (): void
}

// A socket's queue is written as soon as it holds this much, not at the end of
// the turn: the kernel takes it while the turn goes on, and what the node
// holds for a socket says how far the client is behind, not how much the turn
// has produced (ws-connection.ts congested()).
export const FLUSH_AT_BYTES = 64 * 1024

const log: Buffer[] = []
let lastDelivery: Delivery | null = null
const queued: TurnQueue[] = []
const runs = new Map<number, Buffer>()
let scheduled = false
let writeMs = 0

function endTurn (): void {
  const start = performance.now()
  scheduled = false
  for (const q of queued) q.flush()
  queued.length = 0
  log.length = 0
  runs.clear()
  lastDelivery = null
  writeMs = performance.now() - start
}

/**
 * How long the last turn's writes took, ms: about one write per socket that
 * had deliveries, whatever their number. What sizes the next turn's
 * delivery work (src/events/intake.ts).
 */
export const lastWriteMs = (): number => writeMs

/** Queues `d`'s WebSocket frame on `q` for the end of this turn. */
export function enqueue (q: TurnQueue, d: Delivery): void {
  // The hub hands every recipient of one event the same Delivery, one event
  // after another: a new Delivery is the next frame of the log.
  if (d !== lastDelivery) { lastDelivery = d; log.push(d.wsFrame()) }
  const i = log.length - 1
  const frame = log[i]!
  if (q.qFirst < 0) {
    q.qFirst = i
    q.qCount = 1
    queued.push(q)
    if (!scheduled) { scheduled = true; setImmediate(endTurn) }
  } else if (q.qOwn === null && i === q.qFirst + q.qCount) {
    q.qCount++
  } else {
    (q.qOwn ??= log.slice(q.qFirst, q.qFirst + q.qCount)).push(frame)
  }
  q.qBytes += frame.length
  // Sockets sent the same frames reach the threshold on the same frame, so the
  // early runs are shared like the others.
  if (q.qBytes >= FLUSH_AT_BYTES) q.flush()
}

/** Takes what `q` has queued as one buffer (null if nothing), leaving it empty. */
export function take (q: TurnQueue): Buffer | null {
  if (q.qFirst < 0) return null
  const { qFirst: first, qCount: count, qOwn: own, qBytes: bytes } = q
  q.qFirst = -1
  q.qCount = 0
  q.qOwn = null
  q.qBytes = 0
  if (own !== null) return Buffer.concat(own, bytes)
  if (count === 1) return log[first]!
  const key = first * 2 ** 26 + count
  let run = runs.get(key)
  if (run === undefined) { run = Buffer.concat(log.slice(first, first + count), bytes); runs.set(key, run) }
  return run
}
