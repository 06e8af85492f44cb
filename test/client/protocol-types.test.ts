// src/client/protocol-types.ts is what `npm run client:types` writes from the
// protocol's schemas: the SDK's payload types cannot drift from the frames
// the nodes send. `npm run docs:protocol`, run after a schema change, writes it too.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { clientTypes, OUT } from '../../scripts/client-types.js'

t.test('the SDK\'s payload types are the schemas\' (npm run client:types)', async (t) => {
  t.equal(readFileSync(OUT, 'utf8'), clientTypes(), 'src/client/protocol-types.ts is current: run npm run docs:protocol (or client:types)')
  t.match(readFileSync(OUT, 'utf8'), /export interface ServerPayloads \{[\s\S]*readonly tail: \{[\s\S]*dropped: number/, 'frame payloads spelt out')
})
