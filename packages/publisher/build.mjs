// Builds @herald/publisher into dist/: src/client/publisher.ts and what it
// reaches of the nodes' publish path (validation, the message format, the
// append and webhook scripts), bundled into one module by esbuild, so the
// package carries the one implementation the nodes run and nothing else of
// theirs; its declarations bundled into one file by dts-bundle-generator.
// Packages stay imports: the schema library and validator it lists, Node's
// built-ins. Runs on prepack.
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { build } from 'esbuild'

const here = new URL('.', import.meta.url)
const path = (p) => new URL(p, here).pathname
const entry = path('../../src/client/publisher.ts')
rmSync(path('dist'), { recursive: true, force: true })
await build({
  entryPoints: [entry],
  outfile: path('dist/index.js'),
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  packages: 'external',
  logLevel: 'warning',
})
execFileSync(process.execPath, [path('../../node_modules/dts-bundle-generator/dist/bin/dts-bundle-generator.js'), '--silent', '--no-check', '--export-referenced-types=false', '--project', path('../../tsconfig.json'), '-o', path('dist/index.d.ts'), entry], { stdio: 'inherit' })
