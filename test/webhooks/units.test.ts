// The parts of webhook delivery that need no node: the address policy, the
// sender's refusals at connect time (IP literals, IPv4-mapped IPv6, names
// resolving to loopback), the retry schedule, and the signature against the
// standardwebhooks package's own signer.
import t from 'tap'
import { Webhook } from 'standardwebhooks'
import { Sender } from '../../src/webhooks/delivery.js'
import { MAX_ATTEMPTS, nextDelay, parseRetryAfter, RETRY_MULTIPLIERS } from '../../src/webhooks/schedule.js'
import { newSecret, sign, signatures } from '../../src/webhooks/signing.js'
import { AddressPolicy } from '../../src/webhooks/ssrf.js'
import { startReceiver } from '../helpers/receiver.js'

t.test('the address policy: public unicast only, unless allowlisted; metadata never', async (t) => {
  const none = new AddressPolicy()
  for (const a of ['127.0.0.1', '10.1.2.3', '172.16.0.1', '192.168.1.1', '169.254.169.254', '169.254.1.1', '100.64.0.1', '0.0.0.0', '255.255.255.255', '224.0.0.1',
    '::1', '::', 'fe80::1', 'fd00::1', 'fd00:ec2::254', '::ffff:127.0.0.1', '::ffff:10.0.0.1', '64:ff9b::7f00:1', '2002:7f00:1::1', '2001:db8::1']) {
    t.not(none.refusal(a), null, `${a} refused`)
  }
  for (const a of ['8.8.8.8', '1.1.1.1', '2606:4700:4700::1111', '::ffff:8.8.8.8']) t.equal(none.refusal(a), null, `${a} allowed`)
  t.match(none.refusal('::ffff:127.0.0.1'), /loopback/, 'an IPv4-mapped address is judged as its IPv4 address')
  const some = new AddressPolicy(['127.0.0.0/8', '10.0.0.0/8', 'fd00::/8', '169.254.0.0/16'])
  for (const a of ['127.0.0.1', '::ffff:127.0.0.1', '10.9.9.9', 'fd12::1']) t.equal(some.refusal(a), null, `${a} allowlisted`)
  t.not(some.refusal('192.168.1.1'), null, 'what the list does not cover stays refused')
  t.match(some.refusal('169.254.169.254'), /metadata/, 'a metadata address stays refused inside an allowlisted range')
  t.match(some.refusal('100.100.100.200'), /metadata/)
  t.throws(() => new AddressPolicy(['10.0.0.0/33']))
})

t.test('the sender refuses a private destination where it connects: IP literals, IPv4-mapped IPv6, names resolving to loopback', async (t) => {
  const rx = await startReceiver(t)
  const sender = new Sender({ policy: new AddressPolicy(), allowHttp: true, timeoutMs: 2000, userAgent: 'test' })
  t.teardown(() => sender.close())
  for (const host of ['127.0.0.1', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', 'localhost', '127.1', '0x7f.0.0.1']) {
    const r = await sender.post(`http://${host}:${rx.port}/hook`, {}, '{}')
    t.match(r, { outcome: 'blocked' }, `${host}: blocked (${r.error ?? ''})`)
  }
  t.equal(rx.received.length, 0, 'the receiver on 127.0.0.1 never got a request')
  const allowed = new Sender({ policy: new AddressPolicy(['127.0.0.0/8']), allowHttp: true, timeoutMs: 2000, userAgent: 'test' })
  t.teardown(() => allowed.close())
  t.match(await allowed.post(`http://localhost:${rx.port}/hook`, {}, '{}'), { outcome: 'success', status: 200 }, 'allowlisted: delivered by name')
  t.match(await allowed.post(`http://[::ffff:127.0.0.1]:${rx.port}/hook`, {}, '{}'), { outcome: 'success' }, 'and by an IPv4-mapped literal')
  const httpsOnly = new Sender({ policy: new AddressPolicy(['127.0.0.0/8']), allowHttp: false, timeoutMs: 2000, userAgent: 'test' })
  t.match(await httpsOnly.post(`http://127.0.0.1:${rx.port}/hook`, {}, '{}'), { outcome: 'blocked', error: /plain http/ })
  t.match(await allowed.post(`http://user:pw@127.0.0.1:${rx.port}/hook`, {}, '{}'), { outcome: 'blocked', error: /credentials/ })
})

t.test('the retry schedule: exponential, jittered, more than 24 hours, Retry-After honoured up to a day', async (t) => {
  t.equal(MAX_ATTEMPTS, 8)
  const total = (r: number): number => RETRY_MULTIPLIERS.reduce((s, _m, i) => s + nextDelay(i + 1, 5000, undefined, () => r)!, 0)
  t.ok(total(0) >= 24 * 3600_000, `the last attempt at the earliest ${(total(0) / 3600_000).toFixed(2)} h after the first`)
  t.ok(total(0.5) > 27 * 3600_000 && total(0.5) < 28 * 3600_000, `nominally ${(total(0.5) / 3600_000).toFixed(2)} h`)
  t.same([1, 2, 3].map((n) => nextDelay(n, 5000, undefined, () => 0.5)), [5000, 300_000, 1_800_000])
  t.equal(nextDelay(8, 5000), null, 'after the eighth attempt, none')
  t.ok(nextDelay(1, 5000, undefined, () => 0)! >= 4500 && nextDelay(1, 5000, undefined, () => 0.999)! <= 5500, '±10 %')
  t.equal(nextDelay(1, 5000, 120_000, () => 0.5), 120_000, 'Retry-After later than the schedule wins')
  t.equal(nextDelay(3, 5000, 1000, () => 0.5), 1_800_000, 'an earlier one does not')
  t.equal(nextDelay(1, 5000, 10 * 86_400_000, () => 0.5), 86_400_000, 'at most a day')
  t.equal(parseRetryAfter('120', 0), 120_000)
  t.equal(parseRetryAfter(new Date(60_000).toUTCString(), 0), 60_000)
  t.equal(parseRetryAfter('soon', 0), undefined)
})

t.test('signatures match the standardwebhooks package\'s signer', async (t) => {
  const secret = newSecret()
  const body = '{"id":"e1","type":"a.b","data":{"x":"é"}}'
  const at = new Date(1_700_000_000_000)
  t.equal(sign(secret, 'msg_1', 1_700_000_000, body), new Webhook(secret).sign('msg_1', at, body))
  const other = newSecret()
  t.equal(signatures([{ secret, expiresAt: null }, { secret: other, expiresAt: 10 }, { secret: other, expiresAt: 5 }], 6, 'msg_1', 1_700_000_000, body).split(' ').length, 2, 'secrets past their overlap sign no more')
})
