// What the gateway-event suites share: observers (a user's other connection,
// an admin) subscribed to session.* and security.*, and what every gateway
// event must carry.
import type { Test } from 'tap'
import { connect, type Frame, type TestClient } from '../helpers/client.js'
import type { NodeProc } from '../helpers/node.js'
import { adminToken, TEST_API_KEY, TEST_SECRET, userToken } from '../helpers/tokens.js'

export const FAMILIES = ['session.*', 'security.*']

let uniq = 0
export const name = (s: string): string => `${s}-${process.pid}-${++uniq}`

/** A gateway event frame of `type` whose event passes `pred`. */
export const gw = (type: string, pred: (e: any) => boolean = () => true) => (f: Frame): boolean =>
  f.type === 'event' && f.payload?.type === type && f.payload?.data?.source === 'gateway' && pred(f.payload)

/** Every token a suite hands out, to look for later where none may be. */
export class Secrets {
  readonly values: string[] = [TEST_SECRET, TEST_API_KEY]
  add (s: string): string { this.values.push(s); return s }
  user (sub: string, sid?: string, extra?: Parameters<typeof userToken>[2]): string { return this.add(userToken(sub, sid, extra)) }
  admin (sub?: string): string { return this.add(adminToken(sub)) }
  /** The secrets (and a token's signature, its most secret part) found in `text`. */
  foundIn (text: string): string[] {
    return this.values.filter((v) => text.includes(v) || (v.split('.').length === 3 && text.includes(v.split('.')[2]!)))
  }
}

/** A connection subscribed to the gateway's families, closed with `t`. */
export async function observer (t: Test, url: string, token: string, headers: Record<string, string> = {}): Promise<TestClient> {
  const c = await connect(url, { token, headers })
  t.teardown(() => c.close())
  await c.subscribe(FAMILIES)
  return c
}

/** The fields every gateway event carries: the source, the node that saw it, and its audience. */
export function carries (t: Test, e: any, node: NodeProc, userId: string | undefined, what: string): void {
  t.equal(e.data.source, 'gateway', `${what}: data.source gateway`)
  t.equal(e.data.node, node.serverId, `${what}: data.node is the node that saw it`)
  if (userId === undefined) t.notOk('userId' in e, `${what}: no userId (admins only)`)
  else t.equal(e.userId, userId, `${what}: the user's event`)
}

/** No secret in anything the clients received or the nodes logged. */
export function noSecrets (t: Test, secrets: Secrets, clients: TestClient[], nodes: NodeProc[]): void {
  const received = clients.flatMap((c) => c.frames.map((f) => JSON.stringify(f)))
  t.ok(received.some((s) => s.includes('"source":"gateway"')), 'gateway events were received')
  t.same(secrets.foundIn(received.join('\n')), [], 'no token or secret in any delivered frame')
  t.same(secrets.foundIn(nodes.flatMap((n) => n.lines).join('\n')), [], 'no token or secret in any log line')
}
