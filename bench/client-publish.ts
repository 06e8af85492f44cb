// Client publish and groups (a scenario of `npm run bench`; alone:
// `node --import tsx bench/client-publish.ts [--smoke]`). In one run, on one
// machine, every part its own process, one node on its own Redis with the
// message rate limit raised out of the way:
//
//   - publishes/s the node accepts from WebSocket clients (`publish`, each
//     answered `published`), against its HTTP API's 202s/s (POST
//     /api/events), the same number in flight, in alternating rounds;
//   - fan-out to the same subscribers, all members of one group and
//     subscribed to its type: deliveries/s of group events against
//     broadcast (system.*) events, offered alike, in alternating rounds.
import { fork, type ChildProcess } from 'node:child_process'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { next, runAlone, sleep, stop, track } from './procs.js'
import { API_KEY, ROOT, SECRET, startNode, startRedis, TSX, type Node } from './webhooks.js'

export interface ClientPublishResult {
  accept: { inFlight: number, rounds: Array<{ via: 'ws' | 'http', perSec: number, errors: number }>, wsPerSec: number, httpPerSec: number, ratio: number }
  fanout: { subscribers: number, rounds: Array<{ to: 'group' | 'broadcast', deliveriesPerSec: number, publishesPerSec: number }>, groupPerSec: number, broadcastPerSec: number, ratio: number }
}

const GROUP = 'bench-room'
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }

function loadgen (): ChildProcess {
  return track(fork(join(ROOT, 'bench/load/client-publish.ts'), [], { execArgv: TSX, stdio: ['ignore', 'ignore', 'inherit', 'ipc'] }))
}

/** One timed run of a load generator; resolves with what it counted. */
async function timed (job: Record<string, unknown>): Promise<{ count: number, errors: number, seconds: number }> {
  const p = loadgen()
  try {
    const ready = next(p, (m) => m.ready === true, `${String(job.role)} ready`)
    const done = next<{ done: { count: number, errors: number, seconds: number } }>(p, (m) => m.done !== undefined, `${String(job.role)} done`, 300_000)
    p.send({ job })
    await ready
    return (await done).done
  } finally {
    await stop(p)
  }
}

export async function clientPublishBench (o: { smoke: boolean, progress?: (s: string) => void }): Promise<ClientPublishResult> {
  const progress = o.progress ?? (() => {})
  const ms = o.smoke ? 1000 : 5000
  const rounds = o.smoke ? 1 : 2
  const clients = 16
  const window = 4
  const subscriberCount = o.smoke ? 100 : 2000
  const redis = await startRedis()
  let node: Node | null = null
  let subs: ChildProcess | null = null
  try {
    node = await startNode(redis.url)
    const common = { secret: SECRET, apiKey: API_KEY, group: GROUP, offset: 0 }

    const accept: ClientPublishResult['accept']['rounds'] = []
    for (let r = 0; r < rounds; r++) {
      progress(`publish: ${clients * window} client publishes in flight, round ${r + 1}`)
      const w = await timed({ ...common, role: 'publish', url: node.ws, count: clients, window, ms, type: 'bench.client' })
      accept.push({ via: 'ws', perSec: w.count / w.seconds, errors: w.errors })
      progress(`publish: ${clients * window} API publishes in flight, round ${r + 1}`)
      const h = await timed({ ...common, role: 'http', url: `${node.http}/api/events`, concurrency: clients * window, ms, type: 'bench.api' })
      accept.push({ via: 'http', perSec: h.count / h.seconds, errors: h.errors })
    }
    const wsPerSec = median(accept.filter((x) => x.via === 'ws').map((x) => x.perSec))
    const httpPerSec = median(accept.filter((x) => x.via === 'http').map((x) => x.perSec))

    progress(`publish: ${subscriberCount} group members connecting`)
    subs = loadgen()
    const subsReady = next(subs, (m) => m.ready === true, 'subscribers ready', 300_000)
    subs.send({ job: { ...common, role: 'subscribe', url: node.ws, count: subscriberCount } })
    await subsReady
    const received = async (): Promise<number> => {
      const r = next<{ received: number }>(subs!, (m) => m.received !== undefined, 'subscriber count')
      subs!.send({ count: true })
      return (await r).received
    }
    const fan: ClientPublishResult['fanout']['rounds'] = []
    for (let r = 0; r < rounds; r++) {
      for (const to of ['group', 'broadcast'] as const) {
        progress(`publish: fan-out to ${subscriberCount} subscribers, ${to}, round ${r + 1}`)
        const body = JSON.stringify(to === 'group' ? { type: 'bench.tick', group: GROUP, data: { pad: 'x'.repeat(100) } } : { type: 'system.tick', data: { pad: 'x'.repeat(100) } })
        const before = await received()
        const t0 = Date.now()
        const sent = await timed({ ...common, role: 'http', url: `${node.http}/api/events`, concurrency: 16, ms, body, type: '' })
        // What was published is delivered: wait until the count stops growing.
        let last = -1
        let now = await received()
        while (now !== last) { last = now; await sleep(200); now = await received() }
        fan.push({ to, deliveriesPerSec: (now - before) / ((Date.now() - t0 - 200) / 1000), publishesPerSec: sent.count / sent.seconds })
      }
    }
    const groupPerSec = median(fan.filter((x) => x.to === 'group').map((x) => x.deliveriesPerSec))
    const broadcastPerSec = median(fan.filter((x) => x.to === 'broadcast').map((x) => x.deliveriesPerSec))
    return {
      accept: { inFlight: clients * window, rounds: accept, wsPerSec, httpPerSec, ratio: wsPerSec / httpPerSec },
      fanout: { subscribers: subscriberCount, rounds: fan, groupPerSec, broadcastPerSec, ratio: groupPerSec / broadcastPerSec },
    }
  } finally {
    if (subs !== null) await stop(subs)
    if (node !== null) await stop(node.proc)
    redis.client.disconnect()
    await stop(redis.proc)
  }
}

const k = (n: number): string => n >= 10_000 ? `${(n / 1000).toFixed(0)}k` : n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n.toFixed(0)

export function clientPublishMarkdown (r: ClientPublishResult): string[] {
  return [
    '## Client publish and groups', '',
    `One node on its own Redis, MAX_MESSAGES_PER_MINUTE raised out of the way. Publishes accepted: ${r.accept.inFlight} in flight from WebSocket clients (\`publish\` → \`published\`, 16 users) against as many through the HTTP API (\`POST /api/events\` → 202), alternating rounds, medians.`, '',
    '| via | publishes/s |', '|---|---|',
    `| WebSocket \`publish\` | ${k(r.accept.wsPerSec)} |`,
    `| HTTP API | ${k(r.accept.httpPerSec)} |`,
    `| **client vs API** | **${r.accept.ratio.toFixed(2)}×** |`, '',
    `Fan-out to ${r.fanout.subscribers} subscribers, all members of one group and subscribed to its type: group events against broadcast (\`system.*\`) events, published alike through the API, alternating rounds, medians.`, '',
    '| to | deliveries/s | publishes/s (rounds) |', '|---|---|---|',
    `| group | ${k(r.fanout.groupPerSec)} | ${r.fanout.rounds.filter((x) => x.to === 'group').map((x) => k(x.publishesPerSec)).join(', ')} |`,
    `| broadcast | ${k(r.fanout.broadcastPerSec)} | ${r.fanout.rounds.filter((x) => x.to === 'broadcast').map((x) => k(x.publishesPerSec)).join(', ')} |`,
    `| **group vs broadcast** | **${r.fanout.ratio.toFixed(2)}×** | |`, '',
  ]
}

if (process.argv[1] === fileURLToPath(import.meta.url)) runAlone('client publish', clientPublishBench, clientPublishMarkdown)
