// Builds @herald/client into dist/: the SDK compiled module by module with
// its declarations (tsc), and dist/herald-client.min.js, one minified ES
// module for pages that load the SDK without a bundler. Runs on prepack.
import { execFileSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'
import { scratchDir, swapInto } from '../swap-dist.mjs'

const here = new URL('.', import.meta.url)
const pkg = fileURLToPath(here)
const out = scratchDir(pkg)
execFileSync(process.execPath, [new URL('../../node_modules/typescript/bin/tsc', here).pathname, '-p', new URL('tsconfig.json', here).pathname, '--outDir', out], { stdio: 'inherit' })
await build({
  entryPoints: [new URL('../../src/client/index.ts', here).pathname],
  outfile: `${out}/herald-client.min.js`,
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  platform: 'browser',
  logLevel: 'warning',
})
swapInto(pkg, out)
