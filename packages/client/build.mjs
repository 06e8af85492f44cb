// Builds @herald/client into dist/: the SDK compiled module by module with
// its declarations (tsc), and dist/herald-client.min.js, one minified ES
// module for pages that load the SDK without a bundler. Runs on prepack.
import { execFileSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { build } from 'esbuild'

const here = new URL('.', import.meta.url)
rmSync(new URL('dist', here), { recursive: true, force: true })
execFileSync(process.execPath, [new URL('../../node_modules/typescript/bin/tsc', here).pathname, '-p', new URL('tsconfig.json', here).pathname], { stdio: 'inherit' })
await build({
  entryPoints: [new URL('../../src/client/index.ts', here).pathname],
  outfile: new URL('dist/herald-client.min.js', here).pathname,
  bundle: true,
  minify: true,
  format: 'esm',
  target: 'es2020',
  platform: 'browser',
  logLevel: 'warning',
})
