// The packages' builds write into a fresh directory and move each file into
// dist/ by rename, then drop what the new build no longer has: a build (the
// package test's `npm pack` runs one) never leaves a half-written module
// where a running program (examples/, tests) imports the package.
import { mkdirSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'

function files (dir) {
  return readdirSync(dir, { recursive: true }).map((f) => join(dir, f)).filter((f) => statSync(f).isFile())
}

/** A scratch directory beside dist/ to build into. */
export function scratchDir (pkgDir) {
  const dir = join(pkgDir, `.dist-${process.pid}`)
  rmSync(dir, { recursive: true, force: true })
  return dir
}

/** Moves the build in `from` into pkgDir/dist, file by file. */
export function swapInto (pkgDir, from) {
  const dist = join(pkgDir, 'dist')
  const fresh = new Set()
  for (const f of files(from)) {
    const rel = relative(from, f)
    fresh.add(rel)
    mkdirSync(dirname(join(dist, rel)), { recursive: true })
    renameSync(f, join(dist, rel))
  }
  for (const f of files(dist)) if (!fresh.has(relative(dist, f))) rmSync(f)
  rmSync(from, { recursive: true, force: true })
}
