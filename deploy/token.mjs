#!/usr/bin/env node
// Prints an HS256 token signed with $JWT_SECRET, for trying a deployment by hand:
//
//   docker compose exec -T herald-1 node deploy/token.mjs demo-user
//   kubectl -n herald exec deploy/herald -- node deploy/token.mjs demo-admin admin
//
// Usage: node deploy/token.mjs [sub=demo-user] [role=user] [sid=<sub>-session] [ttl seconds=3600]
// Real deployments mint tokens in their identity provider; this is a tester's tool.
import { createSigner } from 'fast-jwt'

const [sub = 'demo-user', role = 'user', sid = `${sub}-session`, ttl = '3600'] = process.argv.slice(2)
const secret = process.env.JWT_SECRET
if (secret === undefined || secret.length < 32) {
  process.stderr.write('deploy/token.mjs: JWT_SECRET (at least 32 characters) must be set; tokens for JWT_PUBLIC_KEY/JWKS_URL deployments come from your identity provider\n')
  process.exit(2)
}
const seconds = Number(ttl)
if (!Number.isInteger(seconds) || seconds <= 0) {
  process.stderr.write(`deploy/token.mjs: ttl must be a positive number of seconds (got ${JSON.stringify(ttl)})\n`)
  process.exit(2)
}
const claims = { sub, sid, roles: [role] }
if (process.env.JWT_ISSUER) claims.iss = process.env.JWT_ISSUER.split(',')[0].trim()
if (process.env.JWT_AUDIENCE) claims.aud = process.env.JWT_AUDIENCE.split(',')[0].trim()
const sign = createSigner({ key: secret, algorithm: 'HS256', expiresIn: seconds * 1000 })
process.stdout.write(sign(claims) + '\n')
