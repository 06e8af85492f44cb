import { createHmac, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { createSigner } from 'fast-jwt'
import t from 'tap'
import { createTokenVerifier, TokenRefused, type TokenVerifier } from '../../src/auth/verifier.js'
import type { Config } from '../../src/config/index.js'
import { Errors, HeraldError, type ErrorCode } from '../../src/errors.js'
import { waitFor } from '../helpers/wait.js'

type Test = Parameters<Parameters<typeof t.test>[0]>[0]

const SECRET = 'verifier-test-secret-0123456789abcdef'
const nowS = (): number => Math.floor(Date.now() / 1000)

const jwtConfig = (over: Partial<Config['jwt']> = {}): Config['jwt'] => ({ clockToleranceMs: 5000, generated: false, ...over })

const b64 = (v: unknown): string => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url')

/** A token built by hand, so headers and claims can be anything an attacker sends. */
function forge (header: Record<string, unknown>, payload: Record<string, unknown>, sign: (input: string) => string = () => ''): string {
  const input = `${b64(header)}.${b64(payload)}`
  return `${input}.${sign(input)}`
}
const hmac = (key: string | Buffer) => (input: string): string => createHmac('sha256', key).update(input).digest('base64url')

/** HS256 with exactly the given claims (fast-jwt's signer would rewrite iat and refuse odd exp values). */
const hs = (claims: Record<string, unknown>, key = SECRET): string => forge({ alg: 'HS256', typ: 'JWT' }, claims, hmac(key))

const pem = (k: KeyObject, type: 'spki' | 'pkcs8'): string => k.export({ type, format: 'pem' }).toString()

const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 })
const rsaOther = generateKeyPairSync('rsa', { modulusLength: 2048 })
const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const ecOther = generateKeyPairSync('ec', { namedCurve: 'P-256' })
const RSA_PUB = pem(rsa.publicKey, 'spki')
const EC_PUB = pem(ec.publicKey, 'spki')

const signWith = (key: KeyObject, algorithm: 'RS256' | 'ES256', claims: Record<string, unknown>, kid?: string): string =>
  createSigner({ key: pem(key, 'pkcs8'), algorithm, ...(kid !== undefined ? { kid } : {}) })(claims)

async function refused (t: Test, v: TokenVerifier, token: string, code: ErrorCode, what: string): Promise<void> {
  let caught: unknown
  try {
    const id = await v.verify(token)
    t.fail(`${what}: accepted as ${JSON.stringify(id)}`)
    return
  } catch (err) {
    caught = err
  }
  t.ok(caught instanceof HeraldError, `${what}: refused with a HeraldError (${String(caught)})`)
  t.equal((caught as HeraldError).code, code, `${what}: ${code}`)
  t.equal((caught as HeraldError).statusCode, Errors[code].status, `${what}: ${Errors[code].status}`)
}

const valid = (extra: Record<string, unknown> = {}): Record<string, unknown> =>
  ({ sub: 'alice', sid: 'sess-1', roles: ['user'], iat: nowS() - 10, exp: nowS() + 3600, ...extra })

t.test('HS256: identity fields', async (t) => {
  const v = createTokenVerifier(jwtConfig({ secret: SECRET }))
  const iat = nowS() - 30
  const exp = nowS() + 600
  const id = await v.verify(hs({ sub: 'alice', sid: 'sess-a', roles: ['user', 'admin'], iat, exp }))
  t.same(id, { userId: 'alice', sessionId: 'sess-a', roles: ['user', 'admin'], expiresAt: exp * 1000, issuedAt: iat * 1000 })

  const bare = await v.verify(hs({ sub: 'bob', exp }))
  t.same(bare, { userId: 'bob', sessionId: null, roles: [], expiresAt: exp * 1000, issuedAt: null }, 'no sid, roles or iat')

  // fast-jwt's own signer, with the iat it stamps and the exp it computes
  const signed = createSigner({ key: SECRET, expiresIn: 60_000 })({ sub: 'carol', sid: 'x', roles: [] })
  const c = await v.verify(signed)
  t.equal(c.userId, 'carol')
  t.ok(c.issuedAt !== null && Math.abs(c.issuedAt - Date.now()) < 5000, 'issuedAt in ms')
  t.ok(Math.abs(c.expiresAt - (Date.now() + 60_000)) < 5000, 'expiresAt in ms')
})

t.test('alg none is refused', async (t) => {
  const v = createTokenVerifier(jwtConfig({ secret: SECRET }))
  const claims = valid()
  const unsigned = createSigner({ algorithm: 'none' })(claims)
  t.match(unsigned, /\.$/, 'fast-jwt produced an unsigned token')
  await refused(t, v, unsigned, 'TOKEN_INVALID', 'alg none from fast-jwt')
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    await refused(t, v, forge({ alg, typ: 'JWT' }, claims), 'TOKEN_INVALID', `alg ${alg} without signature`)
    await refused(t, v, forge({ alg, typ: 'JWT' }, claims, hmac(SECRET)), 'TOKEN_INVALID', `alg ${alg} with an HMAC signature`)
  }
  await refused(t, v, forge({ typ: 'JWT' }, claims, hmac(SECRET)), 'TOKEN_INVALID', 'no alg at all')
  await refused(t, v, forge({ alg: ['HS256'], typ: 'JWT' }, claims, hmac(SECRET)), 'TOKEN_INVALID', 'alg not a string')
  await refused(t, v, forge({ alg: 'HS384', typ: 'JWT' }, claims, hmac(SECRET)), 'TOKEN_INVALID', 'an algorithm never configured')

  // control: the same forge with HS256 and the right secret passes, so the refusals above are about alg
  t.equal((await v.verify(forge({ alg: 'HS256', typ: 'JWT' }, claims, hmac(SECRET)))).userId, 'alice')
})

t.test('HS/RS algorithm confusion is refused', async (t) => {
  const claims = valid()
  const confused = forge({ alg: 'HS256', typ: 'JWT' }, claims, hmac(RSA_PUB))
  const onlyRsa = createTokenVerifier(jwtConfig({ publicKey: RSA_PUB }))
  await refused(t, onlyRsa, confused, 'TOKEN_INVALID', 'HS256 signed with the RSA PEM, RSA key configured')
  const noNewline = forge({ alg: 'HS256', typ: 'JWT' }, claims, hmac(RSA_PUB.trim()))
  await refused(t, onlyRsa, noNewline, 'TOKEN_INVALID', 'HS256 signed with the trimmed PEM')
  const der = forge({ alg: 'HS256', typ: 'JWT' }, claims, hmac(createPublicKey(RSA_PUB).export({ type: 'spki', format: 'der' })))
  await refused(t, onlyRsa, der, 'TOKEN_INVALID', 'HS256 signed with the DER key')

  // with an HS secret configured as well, the PEM still is not a valid HMAC key
  const both = createTokenVerifier(jwtConfig({ publicKey: RSA_PUB, secret: SECRET }))
  await refused(t, both, confused, 'TOKEN_INVALID', 'confusion with both configured')
  t.equal((await both.verify(hs(claims))).userId, 'alice', 'control: the real secret works')
  t.equal((await both.verify(signWith(rsa.privateKey, 'RS256', claims))).userId, 'alice', 'control: RS256 works')

  const onlyEc = createTokenVerifier(jwtConfig({ publicKey: EC_PUB }))
  await refused(t, onlyEc, forge({ alg: 'HS256', typ: 'JWT' }, claims, hmac(EC_PUB)), 'TOKEN_INVALID', 'HS256 signed with the EC PEM')
})

t.test('RS256 and ES256 with public keys', async (t) => {
  const claims = valid({ sub: 'rsa-user', roles: ['user', 'service'] })
  const viaRsa = createTokenVerifier(jwtConfig({ publicKey: RSA_PUB }))
  const id = await viaRsa.verify(signWith(rsa.privateKey, 'RS256', claims))
  t.same(id, { userId: 'rsa-user', sessionId: 'sess-1', roles: ['user', 'service'], expiresAt: (claims.exp as number) * 1000, issuedAt: (claims.iat as number) * 1000 })
  await refused(t, viaRsa, signWith(rsaOther.privateKey, 'RS256', claims), 'TOKEN_INVALID', 'RS256 by another RSA key')
  await refused(t, viaRsa, signWith(ec.privateKey, 'ES256', claims), 'TOKEN_INVALID', 'ES256 when only RSA configured')
  await refused(t, viaRsa, hs(claims), 'TOKEN_INVALID', 'HS256 when no secret configured')
  const ps = createSigner({ key: pem(rsa.privateKey, 'pkcs8'), algorithm: 'PS256' })(claims)
  await refused(t, viaRsa, ps, 'TOKEN_INVALID', 'PS256 (not pinned) with the right key')
  const rs512 = createSigner({ key: pem(rsa.privateKey, 'pkcs8'), algorithm: 'RS512' })(claims)
  await refused(t, viaRsa, rs512, 'TOKEN_INVALID', 'RS512 (not pinned) with the right key')

  const viaEc = createTokenVerifier(jwtConfig({ publicKey: EC_PUB }))
  const e = await viaEc.verify(signWith(ec.privateKey, 'ES256', { ...claims, sub: 'ec-user' }))
  t.equal(e.userId, 'ec-user')
  t.equal(e.sessionId, 'sess-1')
  await refused(t, viaEc, signWith(rsa.privateKey, 'RS256', claims), 'TOKEN_INVALID', 'RS256 when only ES256 configured')
  await refused(t, viaEc, signWith(ecOther.privateKey, 'ES256', claims), 'TOKEN_INVALID', 'ES256 by another P-256 key')

  // a signature for one token does not carry over to another payload
  const good = signWith(ec.privateKey, 'ES256', claims)
  const [h, , s] = good.split('.')
  await refused(t, viaEc, `${h}.${b64({ ...claims, sub: 'mallory' })}.${s}`, 'TOKEN_INVALID', 'payload swapped under an ES256 signature')
})

t.test('time claims', async (t) => {
  const v = createTokenVerifier(jwtConfig({ secret: SECRET }))
  await refused(t, v, hs({ sub: 'alice', iat: nowS() }), 'TOKEN_INVALID', 'missing exp')
  await refused(t, v, hs({ sub: 'alice', exp: String(nowS() + 600) }), 'TOKEN_INVALID', 'exp not a number')
  await refused(t, v, hs(valid({ exp: nowS() - 60 })), 'TOKEN_EXPIRED', 'expired a minute ago')
  await refused(t, v, hs(valid({ iat: nowS() - 7200, exp: nowS() - 3600 })), 'TOKEN_EXPIRED', 'expired an hour ago')
  const skewed = await v.verify(hs(valid({ exp: nowS() - 2 })))
  t.equal(skewed.userId, 'alice', 'expired 2 s ago is within the default 5 s tolerance')

  const strict = createTokenVerifier(jwtConfig({ secret: SECRET, clockToleranceMs: 0 }))
  await refused(t, strict, hs(valid({ exp: nowS() - 2 })), 'TOKEN_EXPIRED', 'expired 2 s ago with no tolerance')

  await refused(t, v, hs(valid({ iat: nowS() + 3600 })), 'TOKEN_INVALID', 'iat an hour in the future')
  await refused(t, v, hs(valid({ iat: nowS() + 60 })), 'TOKEN_INVALID', 'iat a minute in the future')
  t.equal((await v.verify(hs(valid({ iat: nowS() + 2 })))).userId, 'alice', 'iat 2 s ahead is within tolerance')
  await refused(t, v, hs(valid({ iat: 'yesterday' })), 'TOKEN_INVALID', 'iat not a number')
  await refused(t, v, hs(valid({ nbf: nowS() + 3600 })), 'TOKEN_INVALID', 'nbf an hour ahead')
  t.equal((await v.verify(hs(valid({ nbf: nowS() - 1 })))).userId, 'alice', 'nbf in the past')
})

t.test('time claims out of range are refused at verification, not accepted to break later', async (t) => {
  // fast-jwt compares exp/iat/nbf with the clock but checks no range: these
  // all passed it, and the node threw on the first toISOString of the exp.
  const v = createTokenVerifier(jwtConfig({ secret: SECRET }))
  const nowMs = Date.now()
  for (const [what, extra] of [
    ['exp Number.MAX_SAFE_INTEGER', { exp: Number.MAX_SAFE_INTEGER }],
    ['exp past the Date range', { exp: 8.64e12 + 1 }],
    ['exp 1e300', { exp: 1e300 }],
    ['exp in milliseconds', { exp: nowMs + 3600_000 }],
    ['exp in microseconds', { exp: (nowMs + 3600_000) * 1000 }],
    ['exp after year 9999', { exp: 253_402_300_800 }],
    ['iat Number.MAX_SAFE_INTEGER', { iat: Number.MAX_SAFE_INTEGER }],
    ['iat negative', { iat: -1 }],
    ['iat -1e300', { iat: -1e300 }],
    ['nbf Number.MAX_SAFE_INTEGER', { nbf: Number.MAX_SAFE_INTEGER }],
    ['nbf -1e300', { nbf: -1e300 }],
    ['nbf not a number', { nbf: 'now' }],
  ] as const) {
    await refused(t, v, hs(valid(extra)), 'TOKEN_INVALID', what)
  }
  // The far edge is a real date: accepted, and it reads back as one.
  const far = await v.verify(hs(valid({ exp: 253_402_300_799 })))
  t.equal(new Date(far.expiresAt).toISOString(), '9999-12-31T23:59:59.000Z', 'exp at the end of year 9999 is accepted and usable')
  const frac = await v.verify(hs(valid({ exp: nowS() + 600.5, iat: nowS() - 0.25, nbf: 0 })))
  t.equal(frac.expiresAt % 1000, 500, 'fractional seconds are NumericDates too')
  // The same rule for every key type: an RS256 token with an absurd exp.
  const viaRsa = createTokenVerifier(jwtConfig({ publicKey: RSA_PUB }))
  await refused(t, viaRsa, signWith(rsa.privateKey, 'RS256', valid({ exp: Number.MAX_SAFE_INTEGER })), 'TOKEN_INVALID', 'RS256 with exp Number.MAX_SAFE_INTEGER')
})

t.test('iss and aud when configured', async (t) => {
  const open = createTokenVerifier(jwtConfig({ secret: SECRET }))
  t.equal((await open.verify(hs(valid({ iss: 'anyone', aud: 'anything' })))).userId, 'alice', 'not configured: not checked')

  const v = createTokenVerifier(jwtConfig({ secret: SECRET, issuer: ['https://idp.example'], audience: ['herald', 'herald-admin'] }))
  const right = { iss: 'https://idp.example', aud: 'herald' }
  t.equal((await v.verify(hs(valid(right)))).userId, 'alice', 'right iss and aud')
  t.equal((await v.verify(hs(valid({ ...right, aud: ['other', 'herald-admin'] })))).userId, 'alice', 'aud array containing an allowed audience')
  await refused(t, v, hs(valid({ ...right, iss: 'https://evil.example' })), 'TOKEN_INVALID', 'wrong iss')
  await refused(t, v, hs(valid({ ...right, iss: 'https://idp.example/' })), 'TOKEN_INVALID', 'iss differing by a slash')
  await refused(t, v, hs(valid({ ...right, aud: 'other' })), 'TOKEN_INVALID', 'wrong aud')
  await refused(t, v, hs(valid({ ...right, aud: ['other'] })), 'TOKEN_INVALID', 'wrong aud array')
  await refused(t, v, hs(valid({ aud: 'herald' })), 'TOKEN_INVALID', 'missing iss')
  await refused(t, v, hs(valid({ iss: 'https://idp.example' })), 'TOKEN_INVALID', 'missing aud')

  const onlyIss = createTokenVerifier(jwtConfig({ secret: SECRET, issuer: ['https://idp.example'] }))
  t.equal((await onlyIss.verify(hs(valid({ iss: 'https://idp.example' })))).userId, 'alice')
  await refused(t, onlyIss, hs(valid()), 'TOKEN_INVALID', 'issuer configured, iss missing')
  const onlyAud = createTokenVerifier(jwtConfig({ secret: SECRET, audience: ['herald'] }))
  t.equal((await onlyAud.verify(hs(valid({ aud: 'herald' })))).userId, 'alice')
  await refused(t, onlyAud, hs(valid()), 'TOKEN_INVALID', 'audience configured, aud missing')

  // also for asymmetric keys
  const rs = createTokenVerifier(jwtConfig({ publicKey: RSA_PUB, issuer: ['https://idp.example'] }))
  await refused(t, rs, signWith(rsa.privateKey, 'RS256', valid()), 'TOKEN_INVALID', 'RS256 without iss')
  t.equal((await rs.verify(signWith(rsa.privateKey, 'RS256', valid({ iss: 'https://idp.example' })))).userId, 'alice')
})

t.test('signatures and malformed tokens', async (t) => {
  const v = createTokenVerifier(jwtConfig({ secret: SECRET }))
  await refused(t, v, hs(valid(), 'another-secret-that-is-long-enough-1234'), 'TOKEN_INVALID', 'wrong secret')
  const good = hs(valid())
  const [h, p, s] = good.split('.') as [string, string, string]
  await refused(t, v, `${h}.${b64(valid({ sub: 'mallory' }))}.${s}`, 'TOKEN_INVALID', 'payload tampered')
  await refused(t, v, `${h}.${p}.${s.slice(0, -2)}${s.endsWith('AA') ? 'BB' : 'AA'}`, 'TOKEN_INVALID', 'signature tampered')
  await refused(t, v, `${h}.${p}.`, 'TOKEN_INVALID', 'signature stripped')
  await refused(t, v, `${h}.${p}`, 'TOKEN_INVALID', 'two segments')
  await refused(t, v, `${good}.extra`, 'TOKEN_INVALID', 'four segments')
  await refused(t, v, ` ${good}`, 'TOKEN_INVALID', 'leading space')
  for (const bad of ['', 'abc', 'a.b', 'a.b.c', '..', '...', 'Bearer x.y.z', '{"alg":"HS256"}', '\u0000', 'x'.repeat(9000), `${h}.${'A'.repeat(9000)}.${s}`]) {
    await refused(t, v, bad, 'TOKEN_INVALID', `malformed ${JSON.stringify(bad.slice(0, 30))}`)
  }
  await refused(t, v, `${b64('not json')}.${p}.${s}`, 'TOKEN_INVALID', 'header not JSON')
  await refused(t, v, forge({ alg: 'HS256' }, ['sub', 'alice'] as unknown as Record<string, unknown>, hmac(SECRET)), 'TOKEN_INVALID', 'payload an array')
  const notJsonPayload = (() => { const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64('not json')}`; return `${input}.${hmac(SECRET)(input)}` })()
  await refused(t, v, notJsonPayload, 'TOKEN_INVALID', 'payload not JSON, validly signed')
  t.equal((await v.verify(good)).userId, 'alice', 'control: the untampered token passes')
})

t.test('sub, sid and roles claims', async (t) => {
  const v = createTokenVerifier(jwtConfig({ secret: SECRET }))
  const noSub = valid()
  delete noSub.sub
  await refused(t, v, hs(noSub), 'TOKEN_INVALID', 'missing sub')
  // The id rule (src/protocol/identifiers.ts), as the API and /ws/admin apply it.
  for (const sub of [123, '', 'a\nb', 'a\tb', 'a\u0000b', 'a\u001bb', 'a\u007fb', 'a\u0085b', 'u'.repeat(257), '😀'.repeat(257), null, ['alice'], { id: 'alice' }, true]) {
    await refused(t, v, hs(valid({ sub })), 'TOKEN_INVALID', `sub ${JSON.stringify(sub)?.slice(0, 20)}`)
  }
  t.equal((await v.verify(hs(valid({ sub: 'u'.repeat(256) })))).userId, 'u'.repeat(256), 'sub of 256 characters')
  t.equal((await v.verify(hs(valid({ sub: '😀'.repeat(256) })))).userId, '😀'.repeat(256), 'sub of 256 characters outside the BMP (512 UTF-16 units)')
  t.equal((await v.verify(hs(valid({ sub: 'ünïcødé user@example.com / 1' })))).userId, 'ünïcødé user@example.com / 1', 'spaces, slashes and accents are fine')
  for (const sid of [42, '', 's'.repeat(257), null, ['s'], 'a\tb', 'a\nb', 'a\u0000b']) {
    await refused(t, v, hs(valid({ sid })), 'TOKEN_INVALID', `sid ${JSON.stringify(sid)?.slice(0, 20)}`)
  }
  t.equal((await v.verify(hs(valid({ sid: 's'.repeat(256) })))).sessionId, 's'.repeat(256), 'sid of 256 characters')
  for (const roles of ['admin', 'user,admin', [1], ['admin', 2], { 0: 'admin' }, null, true, ['r'.repeat(65)], Array.from({ length: 65 }, (_, i) => `r${i}`)]) {
    await refused(t, v, hs(valid({ roles })), 'TOKEN_INVALID', `roles ${JSON.stringify(roles)?.slice(0, 30)}`)
  }
  t.same((await v.verify(hs(valid({ roles: [] })))).roles, [], 'empty roles array')
})

/** A JWKS endpoint on loopback; counts requests so the test can see it was used. `keys` may change (rotation); `up` false answers 503. */
async function jwksServer (t: Test, keys: unknown[]): Promise<{ url: string, hits: () => number, keys: unknown[], up: boolean }> {
  let hits = 0
  const idp = { url: '', hits: () => hits, keys, up: true }
  const server = http.createServer((req, res) => {
    hits++
    if (req.url !== '/idp/jwks.json') { res.writeHead(404).end('{}'); return }
    if (!idp.up) { res.writeHead(503).end('{}'); return }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: idp.keys }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => {
    server.closeAllConnections()
    await new Promise<void>((resolve) => server.close(() => resolve()))
  })
  idp.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/idp/jwks.json`
  return idp
}

t.test('JWKS', async (t) => {
  const rsaJwk = { ...createPublicKey(RSA_PUB).export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256', use: 'sig' }
  const ecJwk = { ...createPublicKey(EC_PUB).export({ format: 'jwk' }), kid: 'ec-1', alg: 'ES256', use: 'sig' }
  const idp = await jwksServer(t, [rsaJwk, ecJwk])
  const v = createTokenVerifier(jwtConfig({ jwksUrl: idp.url }))

  const claims = valid({ sub: 'jwks-user' })
  const id = await v.verify(signWith(rsa.privateKey, 'RS256', claims, 'rsa-1'))
  t.same(id, { userId: 'jwks-user', sessionId: 'sess-1', roles: ['user'], expiresAt: (claims.exp as number) * 1000, issuedAt: (claims.iat as number) * 1000 })
  t.ok(idp.hits() >= 1, 'the JWKS endpoint was fetched')
  t.equal((await v.verify(signWith(ec.privateKey, 'ES256', claims, 'ec-1'))).userId, 'jwks-user', 'ES256 by kid')

  await refused(t, v, signWith(rsa.privateKey, 'RS256', claims, 'unknown-kid'), 'TOKEN_INVALID', 'unknown kid')
  await refused(t, v, signWith(rsa.privateKey, 'RS256', claims), 'TOKEN_INVALID', 'no kid')
  await refused(t, v, signWith(rsaOther.privateKey, 'RS256', claims, 'rsa-1'), 'TOKEN_INVALID', 'known kid, another key')
  await refused(t, v, signWith(ec.privateKey, 'ES256', claims, 'rsa-1'), 'TOKEN_INVALID', 'ES256 naming the RSA kid')
  await refused(t, v, forge({ alg: 'HS256', typ: 'JWT', kid: 'rsa-1' }, claims, hmac(RSA_PUB)), 'TOKEN_INVALID', 'HS256 confusion naming a JWKS kid')
  await refused(t, v, signWith(rsa.privateKey, 'RS256', valid({ exp: nowS() - 60 }), 'rsa-1'), 'TOKEN_EXPIRED', 'expired RS256 from JWKS')
  await refused(t, v, forge({ alg: 'none', kid: 'rsa-1' }, claims), 'TOKEN_INVALID', 'alg none naming a JWKS kid')

  // An identity provider that does not serve its keys refuses, as a backend
  // outage (503) rather than a bad token (401): the client's token may be fine.
  const down = createTokenVerifier(jwtConfig({ jwksUrl: idp.url.replace('/idp/jwks.json', '/missing/jwks.json') }))
  await refused(t, down, signWith(rsa.privateKey, 'RS256', claims, 'rsa-1'), 'BACKEND_UNAVAILABLE', 'JWKS answering 404')
})

t.test('JWKS: unknown kids cannot make a node hammer the identity provider', async (t) => {
  const rsaJwk = { ...createPublicKey(RSA_PUB).export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256', use: 'sig' }
  const idp = await jwksServer(t, [rsaJwk])
  const v = createTokenVerifier(jwtConfig({ jwksUrl: idp.url }))
  const claims = valid({ sub: 'jwks-flood' })
  t.equal((await v.verify(signWith(rsa.privateKey, 'RS256', claims, 'rsa-1'))).userId, 'jwks-flood')
  const base = idp.hits()

  // 200 tokens, each naming a different made-up kid, as fast as they come.
  const codes = await Promise.all(Array.from({ length: 200 }, async (_x, i) => {
    try { await v.verify(signWith(rsa.privateKey, 'RS256', claims, `bogus-${i}`)); return 'accepted' } catch (err) { return (err as HeraldError).code }
  }))
  t.notOk(codes.includes('accepted'), 'none accepted')
  t.ok(codes.every((c) => c === 'TOKEN_INVALID' || c === 'BACKEND_UNAVAILABLE'), 'each refused as an unknown key or a busy provider')
  t.ok(idp.hits() - base <= 4, `200 unknown kids cost ${idp.hits() - base} fetches, not 200`)

  // The same unknown kid again: refused from memory, no fetch.
  const before = idp.hits()
  for (let i = 0; i < 20; i++) await refused(t, v, signWith(rsa.privateKey, 'RS256', claims, 'bogus-0'), 'TOKEN_INVALID', 'a kid known to be missing')
  t.equal(idp.hits(), before, 'no fetch for a kid known to be missing')
  // Known keys keep working throughout, without a fetch.
  t.equal((await v.verify(signWith(rsa.privateKey, 'RS256', valid({ sub: 'jwks-ok' }), 'rsa-1'))).userId, 'jwks-ok', 'a cached kid still verifies')
  t.equal(idp.hits(), before)
})

t.test('JWKS: a provider outage is a 503 that does not stick to the token once it is back', async (t) => {
  const rsaJwk = { ...createPublicKey(RSA_PUB).export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256', use: 'sig' }
  let up = false
  const server = http.createServer((_req, res) => {
    if (!up) { res.writeHead(503).end('{}'); return }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [rsaJwk] }))
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(async () => { server.closeAllConnections(); await new Promise<void>((resolve) => server.close(() => resolve())) })
  const v = createTokenVerifier(jwtConfig({ jwksUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json` }))
  const tok = signWith(rsa.privateKey, 'RS256', valid({ sub: 'jwks-outage' }), 'rsa-1')
  await refused(t, v, tok, 'BACKEND_UNAVAILABLE', 'provider down: 503')
  up = true
  t.equal((await v.verify(tok)).userId, 'jwks-outage', 'the same token verifies as soon as the provider is back')
})

t.test('JWKS: one fetch caches every key of the set', async (t) => {
  const rsaJwk = { ...createPublicKey(RSA_PUB).export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256', use: 'sig' }
  const ecJwk = { ...createPublicKey(EC_PUB).export({ format: 'jwk' }), kid: 'ec-1' } // no alg: taken from kty/crv
  const encJwk = { ...createPublicKey(pem(rsaOther.publicKey, 'spki')).export({ format: 'jwk' }), kid: 'enc-1', use: 'enc' }
  const idp = await jwksServer(t, [rsaJwk, ecJwk, encJwk, { kty: 'oct', k: 'c2VjcmV0', kid: 'hmac-1' }, 'junk', { kid: 'broken', kty: 'RSA', n: 'AA', e: 'AQAB' }])
  const v = createTokenVerifier(jwtConfig({ jwksUrl: idp.url }))
  t.equal((await v.verify(signWith(rsa.privateKey, 'RS256', valid(), 'rsa-1'))).userId, 'alice')
  t.equal(idp.hits(), 1, 'one fetch')
  t.equal((await v.verify(signWith(ec.privateKey, 'ES256', valid({ sub: 'ec' }), 'ec-1'))).userId, 'ec', 'the other key of the set')
  t.equal(idp.hits(), 1, 'came from the same fetch')
  // Keys that are not signing keys of our algorithms are not used, and unusable entries do not spoil the set.
  await refused(t, v, signWith(rsaOther.privateKey, 'RS256', valid(), 'enc-1'), 'TOKEN_INVALID', 'an encryption key')
  await refused(t, v, forge({ alg: 'HS256', kid: 'hmac-1' }, valid(), hmac('secret')), 'TOKEN_INVALID', 'a symmetric JWK')
  await refused(t, v, signWith(ec.privateKey, 'ES256', valid(), 'rsa-1'), 'TOKEN_INVALID', 'ES256 naming the RSA kid')
})

t.test('JWKS: random kids every 20 ms never lock out a rotated kid, and cost one fetch a second', { timeout: 30_000 }, async (t) => {
  const rsaJwk = { ...createPublicKey(RSA_PUB).export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256', use: 'sig' }
  const idp = await jwksServer(t, [rsaJwk])
  const v = createTokenVerifier(jwtConfig({ jwksUrl: idp.url }))
  t.equal((await v.verify(signWith(rsa.privateKey, 'RS256', valid(), 'rsa-1'))).userId, 'alice')

  // The attacker: a token naming a new made-up kid every 20 ms, for as long as the test runs.
  const outcomes: string[] = []
  let n = 0
  const attack = setInterval(() => {
    v.verify(signWith(rsaOther.privateKey, 'RS256', valid(), `random-${n++}`)).then(() => outcomes.push('accepted'), (err: HeraldError) => outcomes.push(err.code))
  }, 20)
  t.teardown(() => clearInterval(attack))
  const attackStart = Date.now()
  const hitsAtStart = idp.hits()
  await new Promise((resolve) => setTimeout(resolve, 500))

  // The identity provider rotates: rsa-2 is published, then tokens signed with it arrive.
  const rotated = { ...createPublicKey(pem(rsaOther.publicKey, 'spki')).export({ format: 'jwk' }), kid: 'rsa-2', alg: 'RS256', use: 'sig' }
  idp.keys = [rsaJwk, rotated]
  const waits: number[] = []
  for (let i = 0; i < 6; i++) {
    const started = Date.now()
    const id = await v.verify(signWith(rsaOther.privateKey, 'RS256', valid({ sub: `rotated-${i}` }), 'rsa-2'))
    waits.push(Date.now() - started)
    t.equal(id.userId, `rotated-${i}`, `attempt ${i + 1} with the rotated kid verifies during the flood`)
    await new Promise((resolve) => setTimeout(resolve, 150))
  }
  // And the current kid throughout.
  t.equal((await v.verify(signWith(rsa.privateKey, 'RS256', valid({ sub: 'current' }), 'rsa-1'))).userId, 'current')
  clearInterval(attack)
  const seconds = (Date.now() - attackStart) / 1000
  const fetches = idp.hits() - hitsAtStart
  t.comment(`MEASURED ${n} random kids over ${seconds.toFixed(1)} s: ${fetches} fetches; the rotated kid waited ${waits.join(', ')} ms`)
  t.ok(fetches <= Math.ceil(seconds) + 2, `${n} random kids cost ${fetches} fetches in ${seconds.toFixed(1)} s (at most one a second)`)
  await new Promise((resolve) => setTimeout(resolve, 1500)) // the last random kids' fetch
  t.ok(outcomes.length > 50, `${outcomes.length} random kids answered`)
  t.same([...new Set(outcomes)], ['TOKEN_INVALID'], 'every random kid is refused as an invalid token, none as a busy provider')
})

t.test('JWKS: a set past its age stays in use while it is refreshed; a refresh drops removed keys', { timeout: 30_000 }, async (t) => {
  const rsaJwk = { ...createPublicKey(RSA_PUB).export({ format: 'jwk' }), kid: 'rsa-1', alg: 'RS256', use: 'sig' }
  const ecJwk = { ...createPublicKey(EC_PUB).export({ format: 'jwk' }), kid: 'ec-1', alg: 'ES256', use: 'sig' }
  const idp = await jwksServer(t, [rsaJwk, ecJwk])
  const v = createTokenVerifier(jwtConfig({ jwksUrl: idp.url }), { jwks: { maxAgeMs: 300, minIntervalMs: 100 } })
  const tok = (sub: string): string => signWith(rsa.privateKey, 'RS256', valid({ sub }), 'rsa-1')
  t.equal((await v.verify(tok('first'))).userId, 'first')
  t.equal(idp.hits(), 1)

  // Unknown kids keep arriving; the set's age passes; the identity provider is down.
  await refused(t, v, signWith(rsa.privateKey, 'RS256', valid(), 'random-a'), 'TOKEN_INVALID', 'an unknown kid')
  idp.up = false
  await new Promise((resolve) => setTimeout(resolve, 400))
  await refused(t, v, signWith(rsa.privateKey, 'RS256', valid(), 'random-b'), 'BACKEND_UNAVAILABLE', 'an unknown kid while the provider is down')
  const hits = idp.hits()
  t.equal((await v.verify(tok('stale'))).userId, 'stale', 'the current kid, its set past its age and the provider down, still verifies')
  await waitFor('a background refresh', () => idp.hits(), (h) => h > hits, { timeoutMs: 3000, intervalMs: 20 })
  t.pass('a refresh was attempted in the background')
  t.equal((await v.verify(tok('stale-2'))).userId, 'stale-2', 'and a failed refresh keeps the set in use')

  // Back up, without ec-1: once the refresh has run, ec-1 is refused; rsa-1 goes on.
  idp.up = true
  idp.keys = [rsaJwk]
  t.equal((await v.verify(tok('during'))).userId, 'during', 'verified at once; the refresh runs behind it')
  // (A fresh token each time: fast-jwt remembers tokens it has verified.)
  const deadline = Date.now() + 5000
  let ecCode: string | null = null
  for (let i = 0; Date.now() < deadline; i++) {
    try { await v.verify(signWith(ec.privateKey, 'ES256', valid({ sub: `ec-${i}` }), 'ec-1')) } catch (err) { ecCode = (err as HeraldError).code; break }
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.equal(ecCode, 'TOKEN_INVALID', 'a key the provider removed is refused after the refresh')
  t.equal((await v.verify(tok('after'))).userId, 'after')
})

t.test('a verified token is remembered until it expires, and refused after, from the cache as without it', async (t) => {
  const v = createTokenVerifier(jwtConfig({ secret: SECRET, clockToleranceMs: 0 }))
  // exp a second and a bit from now: verified twice while valid, then expired.
  const exp = nowS() + 2
  const token = hs({ sub: 'cached', sid: 's1', exp, iat: nowS(), roles: ['user'] })
  const first = await v.verify(token)
  first.roles.push('admin') // a caller changing its copy
  first.userId = 'someone-else'
  const again = await v.verify(token)
  t.equal(again.userId, 'cached', 'the second verification gives the same identity')
  t.same(again.roles, ['user'], 'and not what a caller did to an earlier copy')
  await waitFor('the token to expire', () => Date.now() >= exp * 1000, Boolean, { timeoutMs: 5000 })
  await t.rejects(v.verify(token), { code: 'TOKEN_EXPIRED' }, 'past exp the cached token is refused TOKEN_EXPIRED')
  const tampered = token.slice(0, -2) + (token.endsWith('A') ? 'BB' : 'AA')
  await t.rejects(v.verify(tampered), { code: 'TOKEN_INVALID' }, 'a token that differs from a cached one is verified on its own')
})

t.test('a refusal says why (TokenRefused.reason): what tells a forged token from an expired one', async (t) => {
  const v = createTokenVerifier(jwtConfig({ secret: SECRET, clockToleranceMs: 0 }))
  const sign = (claims: Record<string, unknown>, key = SECRET): string => createSigner({ key, algorithm: 'HS256' })(claims)
  const exp = Math.floor(Date.now() / 1000) + 600
  const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url')
  const cases: Array<[string, string, string]> = [
    ['another key', sign({ sub: 'u', exp }, 'a-different-secret-of-32-characters-or-more'), 'signature'],
    ['no signature', sign({ sub: 'u', exp }).split('.').slice(0, 2).join('.') + '.', 'signature'],
    ['alg none', `${b64({ alg: 'none' })}.${b64({ sub: 'u', exp })}.`, 'algorithm'],
    ['an algorithm not configured', `${b64({ alg: 'RS256' })}.${b64({ sub: 'u', exp })}.sig`, 'algorithm'],
    ['expired', sign({ sub: 'u', exp: exp - 3600 }), 'expired'],
    ['not a JWT', 'garbage', 'malformed'],
    ['no sub', sign({ exp }), 'claims'],
    ['a bad sid', sign({ sub: 'u', sid: '', exp }), 'claims'],
  ]
  for (const [what, token, reason] of cases) {
    const err = await v.verify(token).then(() => null, (e: unknown) => e)
    t.ok(err instanceof TokenRefused, `${what}: refused with a reason`)
    t.equal((err as TokenRefused).reason, reason, `${what}: ${reason}`)
  }
})
