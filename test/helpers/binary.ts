import { existsSync } from 'node:fs'
import { delimiter, join } from 'node:path'

/**
 * Absolute path of an external program (PATH, then the sbin directories Debian
 * installs daemons in). Throws a message saying how to install it: the deploy
 * tests need the real binary and must fail, not pass, without it.
 */
export function binary (name: string, debianPackage = name): string {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/sbin', '/usr/local/sbin']
  for (const d of dirs) {
    if (d.length > 0 && existsSync(join(d, name))) return join(d, name)
  }
  throw new Error(`${name} is not installed: apt-get install -y ${debianPackage} (.ci/run does this)`)
}
