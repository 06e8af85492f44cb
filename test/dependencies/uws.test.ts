// The bench's native baseline (bench/servers/uws-baseline.ts) loads
// uWebSockets.js's binary by its file name, not through the package's entry,
// which would fall back to a Node implementation where no binary fits and so
// stop being the baseline without a word. That name, and a binary for the
// Node 20 ABI the bench runs it on (--uws-node), are what this checks, on
// the exact version package.json pins.
import { existsSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import t from 'tap'

const require = createRequire(import.meta.url)
const root = join(dirname(require.resolve('@trufflesuite/uws-js-unofficial/package.json')), 'binaries')

t.test('uWebSockets.js: the pinned version ships a binary per ABI under the name the baseline loads', async (t) => {
  const pinned = (JSON.parse(readFileSync(join(import.meta.dirname, '../../package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies['@trufflesuite/uws-js-unofficial']
  const installed = (require('@trufflesuite/uws-js-unofficial/package.json') as { version: string }).version
  t.equal(installed, pinned, 'installed as pinned (exactly)')
  for (const abi of [93, 108, 115]) t.ok(existsSync(join(root, `uws_linux_x64_${abi}.node`)), `binaries/uws_linux_x64_${abi}.node (Node ${({ 93: 16, 108: 18, 115: 20 } as Record<number, number>)[abi]})`)
})
