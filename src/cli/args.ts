import { parseArgs, type ParseArgsConfig } from 'node:util'

// sysexits(3), as the node uses 78 for a configuration it refuses.
export const EX_USAGE = 64
export const EX_CONFIG = 78

/** A refusal the command prints as its one line on stderr before exiting with `exitCode`. */
export class CliError extends Error {
  constructor (message: string, readonly exitCode = EX_USAGE) {
    super(message)
    this.name = 'CliError'
  }
}

type Options = NonNullable<ParseArgsConfig['options']>

/**
 * node:util parseArgs, strict, without positionals. Its refusals run to three
 * sentences of advice over several lines; the user sees one line naming the
 * option and what is wrong with it.
 */
export function parse<O extends Options> (args: string[], options: O) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values
  } catch (err) {
    const code = (err as { code?: unknown }).code
    if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS_')) throw err
    const message = (err as Error).message
    const quoted = /'([^']*)'/.exec(message)?.[1] ?? ''
    const option = /(--?[^\s,]+)(?: <value>)?$/.exec(quoted)?.[1] ?? quoted
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw new CliError(`unknown option ${option}`)
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') throw new CliError(`unexpected argument ${JSON.stringify(quoted)}: every value follows its option`)
    if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
      throw new CliError(message.includes('does not take an argument') ? `${option} takes no value` : `${option} needs a value (one that starts with a dash is written ${option}=-…)`)
    }
    throw new CliError(message.split('\n')[0]!)
  }
}
