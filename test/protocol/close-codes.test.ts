// The reconnect policy as data: each close code's, the ranges for codes the
// table does not list (centrifuge's reading), and the policy for a refused
// handshake, from the error registry or, for a code it does not know, the
// HTTP status. The SDK acts on these (test/client/sdk*.test.ts drive it).
import t from 'tap'
import { Errors } from '../../src/errors.js'
import { closeCodeName, CloseCodes, CloseCodeTable, closeReconnect, RefusalReconnect, refusalReconnect, type Reconnect } from '../../src/protocol/close-codes.js'

t.test('every listed close code has its policy', async (t) => {
  const expected: Record<number, Reconnect> = {
    1000: 'backoff', 1001: 'soon', 1002: 'backoff', 1003: 'backoff', 1007: 'backoff', 1008: 'backoff', 1009: 'backoff', 1011: 'backoff',
    4001: 'new-token', 4003: 'stop', 4004: 'stop', 4008: 'backoff', 4009: 'backoff', 4029: 'rate-limited',
  }
  t.same(Object.values(CloseCodeTable).map((c) => c.code).sort(), Object.keys(expected).map(Number).sort(), 'the codes the node sends')
  for (const [code, policy] of Object.entries(expected)) t.equal(closeReconnect(Number(code)), policy, `${code}: ${policy}`)
  t.equal(CloseCodes.DRAINING, 1001, 'CloseCodes keeps its names and numbers')
  t.equal(closeCodeName(4004), 'SESSION_REVOKED')
  t.equal(closeCodeName(4500), undefined)
})

t.test('codes the table does not list go by range: 3500-3999 and 4500-4999 stop, the rest reconnect', async (t) => {
  const cases: Array<[number, Reconnect]> = [
    [1005, 'backoff'], [1006, 'backoff'], [1012, 'backoff'], [1013, 'backoff'], [2999, 'backoff'],
    [3000, 'backoff'], [3499, 'backoff'], [3500, 'stop'], [3999, 'stop'],
    [4000, 'backoff'], [4002, 'backoff'], [4499, 'backoff'], [4500, 'stop'], [4901, 'stop'], [4999, 'stop'],
    [5000, 'backoff'], [0, 'backoff'],
  ]
  for (const [code, policy] of cases) t.equal(closeReconnect(code), policy, `${code}: ${policy}`)
})

t.test('a refused handshake: the registry\'s policy for its code, else the status\'s', async (t) => {
  const cases: Array<[number, string, Reconnect]> = [
    [503, 'DRAINING', 'soon'], [503, 'NODE_FULL', 'soon'], [503, 'BACKEND_UNAVAILABLE', 'backoff'],
    [429, 'CONNECTION_LIMIT', 'rate-limited'],
    [401, 'TOKEN_MISSING', 'new-token'], [401, 'TOKEN_INVALID', 'new-token'], [401, 'TOKEN_EXPIRED', 'new-token'],
    [401, 'SESSION_REVOKED', 'stop'], [403, 'ORIGIN_FORBIDDEN', 'stop'], [403, 'ROLE_FORBIDDEN', 'stop'],
    // A code this client does not know (a newer node, a proxy's page): the status decides.
    [401, 'HTTP_ERROR', 'new-token'], [403, 'SOMETHING_NEW', 'stop'], [429, 'HTTP_ERROR', 'rate-limited'],
    [502, 'HTTP_ERROR', 'backoff'], [500, 'INTERNAL', 'backoff'], [426, 'UPGRADE_REQUIRED', 'backoff'],
    // Names of Object.prototype are not registry entries.
    [401, 'constructor', 'new-token'], [503, '__proto__', 'backoff'], [403, 'toString', 'stop'],
  ]
  for (const [status, code, policy] of cases) t.equal(refusalReconnect(status, code), policy, `${status} ${code}: ${policy}`)
  for (const [code, policy] of Object.entries(RefusalReconnect)) {
    t.ok(code in Errors, `${code} is a registry code`)
    t.equal(Errors[code as keyof typeof Errors].reconnect, policy, `the registry shows ${code}'s policy`)
  }
})

t.test('the registry: every code names itself, has a status and says whether it is retryable', async (t) => {
  for (const [name, e] of Object.entries(Errors)) {
    t.equal(e.code, name, `${name}: code`)
    t.ok(e.status >= 400 && e.status < 600, `${name}: status ${e.status}`)
    t.type(e.retryable, 'boolean', `${name}: retryable`)
    t.ok(e.message.length > 0 && e.when.length > 0, `${name}: message and when`)
    // A handshake the SDK retries unchanged is retryable; one it stops on or renews the token for is not.
    if (e.reconnect === 'soon' || e.reconnect === 'rate-limited' || e.reconnect === 'backoff') t.ok(e.retryable, `${name}: ${e.reconnect} goes with retryable`)
    if (e.reconnect === 'stop' || e.reconnect === 'new-token') t.notOk(e.retryable, `${name}: ${e.reconnect} goes with not retryable`)
  }
})
