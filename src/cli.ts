#!/usr/bin/env node
// `herald`, the package's command (npx herald …). Output for pipes: what a
// command produces on stdout and nothing else, every message on stderr.
import { readFileSync } from 'node:fs'
import { CliError, EX_CONFIG, parse } from './cli/args.js'
import { tokenCommand, type Output } from './cli/token.js'
import { ConfigError } from './config/index.js'

const HELP = `Usage: herald <command> [options]

Commands:
  token    print an access token signed with the configured JWT_SECRET
           (herald token --sub <user> --roles <role,…> --ttl 1h; herald token --help)

Options:
  -h, --help       this help
  -v, --version    the version

The node itself starts with \`npm start\` (node dist/main.js).
`

const commands: Record<string, (args: string[], env: Record<string, string | undefined>) => Output> = {
  token: tokenCommand,
}

function run (argv: string[]): Output {
  const [first, ...rest] = argv
  if (first !== undefined && !first.startsWith('-')) {
    const command = commands[first]
    if (command === undefined) throw new CliError(`unknown command ${JSON.stringify(first)}: the command is token (herald --help)`)
    return command(rest, process.env)
  }
  const o = parse(argv, { help: { type: 'boolean', short: 'h' }, version: { type: 'boolean', short: 'v' } })
  if (o.version === true) {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
    return { out: pkg.version + '\n', notes: [] }
  }
  if (o.help === true) return { out: HELP, notes: [] }
  throw new CliError('a command is required: herald token --sub <user> … (herald --help)')
}

const name = process.argv[2] !== undefined && process.argv[2] in commands ? `herald ${process.argv[2]}` : 'herald'
try {
  const { out, notes } = run(process.argv.slice(2))
  for (const n of notes) process.stderr.write(`${name}: ${n}\n`)
  process.stdout.write(out)
} catch (err) {
  if (err instanceof CliError) {
    process.stderr.write(`${name}: ${err.message}\n`)
    process.exitCode = err.exitCode
  } else if (err instanceof ConfigError) {
    process.stderr.write(`${name}: invalid configuration: ${err.message}\n`)
    process.exitCode = EX_CONFIG
  } else {
    throw err
  }
}
