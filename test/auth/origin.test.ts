import t from 'tap'
import { createOriginCheck } from '../../src/auth/origin.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

function expectAll (t: Test, check: (o: string | undefined) => boolean, allowed: string[], refused: string[]): void {
  for (const o of allowed) t.equal(check(o), true, `allows ${JSON.stringify(o)}`)
  for (const o of refused) t.equal(check(o), false, `refuses ${JSON.stringify(o)}`)
}

// Things that are not an Origin header value of scheme://host[:port].
const GARBAGE = [
  '', ' ', 'null', 'undefined', '*', 'app.example.com', '//app.example.com', 'https://', 'https:', 'https:app.example.com',
  'https:/app.example.com', 'https:///app.example.com', 'https:\\\\app.example.com', 'https://app.example.com/', 'https://app.example.com/path',
  'https://app.example.com?', 'https://app.example.com?x=1', 'https://app.example.com#', 'https://app.example.com#frag',
  'https://user@app.example.com', 'https://user:pw@app.example.com', 'https://evil.io@app.example.com', 'https://app.example.com@evil.io',
  ' https://app.example.com', 'https://app.example.com ', 'https://app.example.com\t', 'https://app.exam\tple.com', 'https://app.example.com\n',
  'https://app.example.com:', 'https://app.example.com:abc', 'https://app.example.com:99999', 'https://app.example.com:-1',
  'ftp://app.example.com', 'ws://app.example.com', 'wss://app.example.com', 'file://app.example.com', 'javascript:alert(1)', 'data:text/html,x',
  'https://*.example.com', 'https://%2A.example.com', 'https://[::1', '\u0000', 'x'.repeat(5000),
]

t.test('null allows every origin', async (t) => {
  const check = createOriginCheck(null)
  expectAll(t, check, [undefined as unknown as string, 'https://anything.example', 'null', 'garbage'], [])
})

t.test('an empty list allows only clients without Origin', async (t) => {
  const check = createOriginCheck([])
  t.equal(check(undefined), true, 'no Origin: servers and agents')
  expectAll(t, check, [], ['https://app.example.com', 'http://localhost:3000', 'null', ...GARBAGE])
})

t.test('exact entries', async (t) => {
  const check = createOriginCheck(['https://app.example.com', 'http://localhost:3000', 'http://127.0.0.1:8080', 'http://[::1]:5173'])
  t.equal(check(undefined), true, 'no Origin allowed')
  expectAll(t, check,
    ['https://app.example.com', 'HTTPS://APP.EXAMPLE.COM', 'https://App.Example.com', 'http://localhost:3000', 'http://127.0.0.1:8080', 'http://[::1]:5173'],
    [
      'http://app.example.com', 'https://app.example.com:8443', 'https://sub.app.example.com', 'https://example.com', 'https://app.example.co',
      'https://app.example.com.evil.io', 'https://evilapp.example.com', 'http://localhost', 'http://localhost:3001', 'https://localhost:3000',
      'http://127.0.0.1', 'http://127.0.0.1:80', 'http://[::1]:5174', 'http://[::2]:5173', 'null', ...GARBAGE,
    ])
})

t.test('wildcard entries', async (t) => {
  const check = createOriginCheck(['https://*.example.com'])
  t.equal(check(undefined), true)
  expectAll(t, check,
    ['https://app.example.com', 'https://a.b.example.com', 'https://x-y.example.com', 'https://APP.EXAMPLE.COM', 'https://app.example.com:443'],
    [
      'https://example.com', 'https://.example.com', 'https://evil-example.com', 'https://evilexample.com', 'http://app.example.com',
      'https://app.example.com:8443', 'null', 'https://app.example.com.evil.io', 'https://app.example.com/', 'https://example.com.evil.io',
      'https://app.example.co', 'https://app.example.comm', 'https://app-example.com', 'https://app.example.org', ...GARBAGE,
    ])
})

t.test('ports: explicit ports pin, default ports normalise', async (t) => {
  const pinned = createOriginCheck(['https://app.example.com:8443', 'http://*.dev.example:8080'])
  expectAll(t, pinned,
    ['https://app.example.com:8443', 'http://a.dev.example:8080', 'http://a.b.dev.example:8080'],
    ['https://app.example.com', 'https://app.example.com:443', 'https://app.example.com:8444', 'http://app.example.com:8443',
      'http://a.dev.example', 'http://a.dev.example:80', 'http://a.dev.example:8081', 'https://a.dev.example:8080', 'http://dev.example:8080'])

  const defaults = createOriginCheck(['https://x.com:443', 'http://y.com:80', 'https://*.z.com:443'])
  expectAll(t, defaults,
    ['https://x.com', 'https://x.com:443', 'http://y.com', 'http://y.com:80', 'https://a.z.com', 'https://a.z.com:443'],
    ['https://x.com:80', 'http://x.com', 'http://x.com:443', 'https://y.com', 'http://y.com:443', 'https://y.com:80', 'https://z.com', 'http://a.z.com'])

  const implicit = createOriginCheck(['https://x.com', 'http://y.com'])
  expectAll(t, implicit, ['https://x.com:443', 'http://y.com:80'], ['https://x.com:8443', 'http://y.com:8080', 'https://x.com:80'])
})

t.test('several entries are independent', async (t) => {
  const check = createOriginCheck(['https://*.a.example', 'https://b.example', 'http://*.c.example:3000'])
  expectAll(t, check,
    ['https://x.a.example', 'https://b.example', 'http://x.c.example:3000'],
    ['https://a.example', 'https://x.b.example', 'http://b.example', 'http://x.c.example', 'https://x.c.example:3000', 'https://x.a.example:3000'])
})

t.test('invalid entries are refused when the check is built', async (t) => {
  for (const bad of ['https://x.com:99999', 'not an origin', 'https://1.2.3.999']) {
    t.throws(() => createOriginCheck([bad]), `entry ${JSON.stringify(bad)}`)
  }
})
