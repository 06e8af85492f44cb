import { signToken, type TokenClaims } from '../auth/signer.js'
import { loadConfig, type Config } from '../config/index.js'
import { ID_RULE, isId } from '../protocol/identifiers.js'
import { CliError, EX_CONFIG, parse } from './args.js'

export const TOKEN_HELP = `Usage: herald token --sub <user> [--roles <role,…>] [--ttl <duration>] [--sid <session>] [--iss <issuer>] [--aud <audience>]

Prints an access token signed with JWT_SECRET (HS256), read from the same
environment a node reads (JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE, NODE_ENV, …),
so run it where the node's environment is set. Only the token goes to stdout:

  TOKEN=$(npx herald token --sub u1 --roles admin --ttl 1h)

Options:
  --sub <user>        the user the token is for (sub); ${ID_RULE} (required)
  --roles <role,…>    comma-separated roles: user (/ws/events), admin (/ws/admin),
                      service (publish on the API) (default: user)
  --ttl <duration>    lifetime: a positive whole number of s, m, h or d, e.g. 30s, 15m, 1h, 7d;
                      at most 365d (default: 1h)
  --sid <session>     session id (sid), so the session can be revoked on its own
  --iss <issuer>      issuer (iss) (default: the first of JWT_ISSUER)
  --aud <audience>    audience (aud) (default: the first of JWT_AUDIENCE)
  -h, --help          this help

Nodes configured with only JWT_PUBLIC_KEY or JWKS_URL verify tokens that an
identity provider signs; this command has no key to sign those and says so.

Exit status: 0 token printed, 64 bad arguments, 78 configuration refused
(invalid, or no JWT_SECRET to sign with).
`

const MAX_ROLES = 64
const MAX_ROLE_LENGTH = 64
const UNIT_MS = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const
const MAX_TTL_MS = 365 * UNIT_MS.d

/** A value as a refusal shows it: quoted, and cut short when long. */
const got = (v: string): string => JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)

function parseTtl (v: string): number {
  const m = /^([1-9]\d{0,8})(s|m|h|d)$/.exec(v)
  const ms = m !== null ? Number(m[1]) * UNIT_MS[m[2] as keyof typeof UNIT_MS] : NaN
  if (!(ms <= MAX_TTL_MS)) throw new CliError(`--ttl must be a positive whole number of s, m, h or d (e.g. 30s, 15m, 1h, 7d), at most 365d (got ${got(v)})`)
  return ms
}

function parseRoles (v: string): string[] {
  const roles = v.split(',').map((r) => r.trim())
  const bad = roles.find((r) => r.length === 0 || r.length > MAX_ROLE_LENGTH || /\p{Cc}/u.test(r))
  if (bad !== undefined || roles.length > MAX_ROLES) {
    throw new CliError(`--roles must be up to ${MAX_ROLES} comma-separated roles of 1-${MAX_ROLE_LENGTH} characters without control characters (got ${got(v)})`)
  }
  return [...new Set(roles)]
}

const id = (flag: string, v: string): string => {
  if (!isId(v)) throw new CliError(`${flag} must be ${ID_RULE} (got ${got(v)})`)
  return v
}

/** The claim a node requires when configured with a list (JWT_ISSUER, JWT_AUDIENCE): the first, or one of it. */
function listed (flag: string, variable: string, given: string | undefined, accepted: string[] | undefined): string | undefined {
  if (given === undefined) return accepted?.[0]
  if (given.length === 0) throw new CliError(`${flag} must not be empty`)
  if (accepted !== undefined && !accepted.includes(given)) {
    throw new CliError(`${flag} ${got(given)} is not accepted by nodes with ${variable}=${accepted.join(',')}: use one of those or leave ${flag} out`)
  }
  return given
}

/** HS256 needs the secret the nodes were given; a generated one (development) is this process's alone. */
function secretOf (jwt: Config['jwt']): string {
  if (jwt.generated) {
    throw new CliError('no JWT_SECRET is set: a development node generates its key at boot and prints tokens in its banner; set JWT_SECRET (the same on every node) to mint tokens with this command', EX_CONFIG)
  }
  if (jwt.secret === undefined) {
    const by = [jwt.publicKey !== undefined ? 'JWT_PUBLIC_KEY' : null, jwt.jwksUrl !== undefined ? 'JWKS_URL' : null].filter((v) => v !== null).join(' and ')
    throw new CliError(`no signing key: this configuration verifies tokens with ${by} only, so tokens come from your identity provider (set JWT_SECRET on the nodes to mint HS256 tokens here)`, EX_CONFIG)
  }
  return jwt.secret
}

/** What a command prints: `out` on stdout (the token alone, or the help), `notes` as lines on stderr. */
export interface Output { out: string, notes: string[] }

/** `herald token …`: the token for `args`, signed with the key `env` configures. Throws CliError or ConfigError. */
export function tokenCommand (args: string[], env: Record<string, string | undefined>): Output {
  const o = parse(args, {
    sub: { type: 'string' },
    roles: { type: 'string' },
    ttl: { type: 'string' },
    sid: { type: 'string' },
    iss: { type: 'string' },
    aud: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  })
  if (o.help === true) return { out: TOKEN_HELP, notes: [] }
  if (o.sub === undefined) throw new CliError('--sub is required: the user the token is for (herald token --help)')
  const claims: TokenClaims = { sub: id('--sub', o.sub), roles: parseRoles(o.roles ?? 'user') }
  if (o.sid !== undefined) claims.sid = id('--sid', o.sid)
  const ttlMs = parseTtl(o.ttl ?? '1h')

  // Arguments first, so a typo is reported before the environment is read.
  const config = loadConfig(env)
  const secret = secretOf(config.jwt)
  const iss = listed('--iss', 'JWT_ISSUER', o.iss, config.jwt.issuer)
  const aud = listed('--aud', 'JWT_AUDIENCE', o.aud, config.jwt.audience)
  if (iss !== undefined) claims.iss = iss
  if (aud !== undefined) claims.aud = aud

  const notes: string[] = []
  if (ttlMs > config.revocationTtlMs) {
    notes.push(`warning: the token lives longer than REVOCATION_TTL (${config.revocationTtlMs} ms): a revocation of it would be forgotten before it expires`)
  }
  return { out: signToken(secret, claims, ttlMs) + '\n', notes }
}
