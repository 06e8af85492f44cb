// Builds @herald/publisher into dist/: src/client/publisher.ts and what it
// reaches of the nodes' publish path (validation, the message format, the
// append and webhook scripts), bundled into one module by esbuild, so the
// package carries the one implementation the nodes run and nothing else of
// theirs; its declarations bundled into one file by dts-bundle-generator.
// Packages stay imports: the schema library and validator it lists, Node's
// built-ins. Runs on prepack; `--js` (the repository's `npm run build`, so
// that examples/ import the package as users do) skips the declarations,
// the slow half.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { scratchDir, swapInto } from '../swap-dist.mjs'

const here = new URL('.', import.meta.url)
const path = (p) => new URL(p, here).pathname
const entry = path('../../src/client/publisher.ts')
const pkg = fileURLToPath(here)
const out = scratchDir(pkg)
await build({
  entryPoints: [entry],
  outfile: `${out}/index.js`,
  bundle: true,
  format: 'esm',
  platform: 'node',
  target: 'node22',
  packages: 'external',
  logLevel: 'warning',
})
if (!process.argv.includes('--js')) execFileSync(process.execPath, [path('../../node_modules/dts-bundle-generator/dist/bin/dts-bundle-generator.js'), '--silent', '--no-check', '--export-referenced-types=false', '--project', path('../../tsconfig.json'), '-o', `${out}/index.d.ts`, entry], { stdio: 'inherit' })
swapInto(pkg, out)
