// The publish routes log their requests from LOG_LEVEL debug: at info (the
// default) a service publishing thousands a second would write two lines a
// publish. Other routes log as before, and the publish routes' errors still
// reach the log.
import { Writable } from 'node:stream'
import t from 'tap'
import { startApp } from '../helpers/app.js'
import { waitFor } from '../helpers/wait.js'

class Capture extends Writable {
  readonly records: Array<Record<string, any>> = []
  private partial = ''
  override _write (chunk: Buffer | string, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const parts = (this.partial + chunk.toString()).split('\n')
    this.partial = parts.pop()!
    for (const p of parts) if (p.length > 0) this.records.push(JSON.parse(p) as Record<string, any>)
    cb()
  }
}

const requestLines = (c: Capture, url: string): Array<Record<string, any>> =>
  c.records.filter((r) => (r.msg === 'incoming request' && r.req?.url === url) || (r.msg === 'request completed' && c.records.some((x) => x.reqId === r.reqId && x.req?.url === url)))

for (const level of ['info', 'debug'] as const) {
  t.test(`LOG_LEVEL ${level}`, async (t) => {
    const capture = new Capture()
    const node = await startApp({ LOG_LEVEL: level }, { logStream: capture })
    t.teardown(() => node.close())
    for (let i = 0; i < 5; i++) t.equal((await node.api('/api/events', { body: { type: 'system.log.check' } })).status, 202)
    t.equal((await node.api('/api/events/batch', { body: { events: [{ type: 'system.log.check' }] } })).status, 200)
    t.equal((await node.api('/api/notifications/users/log-user', { body: { level: 'info', title: 't', message: 'm' } })).status, 202)
    t.equal((await node.api('/api/stats')).status, 200)
    // The stats request's completion is the last line written: everything before it is in.
    await waitFor('the stats request logged', () => requestLines(capture, '/api/stats').length, (n) => n === 2)
    const publishing = [...requestLines(capture, '/api/events'), ...requestLines(capture, '/api/events/batch'), ...requestLines(capture, '/api/notifications/users/log-user')]
    if (level === 'info') t.equal(publishing.length, 0, 'no request lines for publishes at info')
    else t.equal(publishing.length, 14, 'two lines for each of the 7 publishes at debug')
  })
}
