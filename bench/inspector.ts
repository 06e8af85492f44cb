// A server under test can run with its inspector on a loopback port
// (--inspect=127.0.0.1:0): the bench then drives it over the Chrome DevTools
// Protocol, to collect garbage before a memory reading, read its heap, or
// profile its CPU over exactly the window under load.
import type { ChildProcess } from 'node:child_process'
import WebSocket from 'ws'

/**
 * The inspector's address, read from the process's piped stderr; the rest of
 * its stderr is passed on to ours.
 */
export function inspectorUrl (proc: ChildProcess): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = ''
    const t = setTimeout(() => reject(new Error('no inspector URL on stderr')), 30_000)
    proc.stderr!.on('data', (d: Buffer) => {
      const text = d.toString()
      for (const line of text.split('\n')) if (line !== '' && !/Debugger (listening|attached|ending)|For help, see/.test(line)) process.stderr.write(`\n${line}`)
      buf += text
      const m = /Debugger listening on (ws:\/\/\S+)/.exec(buf)
      if (m !== null) { clearTimeout(t); resolve(m[1]!) }
    })
  })
}

/**
 * A session to an inspector. Kept open across commands: the CPU profiler
 * belongs to the session that started it.
 */
export async function session (url: string): Promise<{ send: <T>(method: string, params?: object) => Promise<T>, close: () => void }> {
  const ws = new WebSocket(url)
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject) })
  let next = 1
  const waiting = new Map<number, { resolve: (v: any) => void, reject: (e: Error) => void }>()
  ws.on('message', (data: Buffer) => {
    const m = JSON.parse(data.toString()) as { id?: number, result?: unknown, error?: { message: string } }
    const w = m.id !== undefined ? waiting.get(m.id) : undefined
    if (w === undefined) return
    waiting.delete(m.id!)
    if (m.error !== undefined) w.reject(new Error(m.error.message))
    else w.resolve(m.result)
  })
  return {
    send: async <T>(method: string, params: object = {}): Promise<T> => await new Promise<T>((resolve, reject) => {
      const id = next++
      waiting.set(id, { resolve, reject })
      ws.send(JSON.stringify({ id, method, params }))
    }),
    close: () => ws.close(),
  }
}

/** `timeDeltas[i]`: µs from the sample before to sample i */
export interface CpuProfile { nodes: Array<{ id: number, callFrame: { functionName: string, url: string, lineNumber: number } }>, samples: number[], timeDeltas: number[] }

/**
 * A CPU profile's samples by the function they were taken in (`fn file:line`,
 * paths shortened to the package or dist/) and by what `what` files them
 * under, given the function's name and script URL.
 */
export function selfTime (profile: CpuProfile, what: (fn: string, url: string, where: string) => string): { byFn: Map<string, number>, byWhat: Map<string, number> } {
  const counts = new Map<number, number>()
  for (const id of profile.samples) counts.set(id, (counts.get(id) ?? 0) + 1)
  const byFn = new Map<string, number>()
  const byWhat = new Map<string, number>()
  for (const n of profile.nodes) {
    const c = counts.get(n.id) ?? 0
    if (c === 0) continue
    const url = n.callFrame.url
    const where = url.replace(/^.*\/node_modules\//, '').replace(/^file:\/\/.*\/dist\//, 'dist/')
    const fn = n.callFrame.functionName || '(anonymous)'
    const key = `${fn} ${where}${where ? ':' + (n.callFrame.lineNumber + 1) : ''}`
    byFn.set(key, (byFn.get(key) ?? 0) + c)
    const w = what(fn, url, where)
    byWhat.set(w, (byWhat.get(w) ?? 0) + c)
  }
  return { byFn, byWhat }
}
