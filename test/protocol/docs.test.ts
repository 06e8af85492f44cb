// docs/protocol.md carries tables generated from the protocol's
// sources (frame schemas, error registry, close codes) by
// `npm run docs:protocol`: what is committed must be what the sources say now.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { FILES, render, root, TABLES } from '../../scripts/docs-protocol.js'
import { Errors } from '../../src/errors.js'
import { CloseCodeTable } from '../../src/protocol/close-codes.js'
import { ClientFrames, ServerFrames } from '../../src/protocol/schema.js'

t.test('the committed tables are what npm run docs:protocol writes', async (t) => {
  for (const [file, names] of Object.entries(FILES)) {
    const committed = readFileSync(root + file, 'utf8')
    t.equal(committed, render(committed, names), `${file} is up to date (if not: npm run docs:protocol)`)
  }
})

t.test('the tables list every frame, error code and close code, with the schemas\' descriptions', async (t) => {
  const client = TABLES['client-frames']!()
  for (const type of Object.keys(ClientFrames)) t.match(client, `| \`${type}\` |`, `client frame ${type}`)
  t.match(client, ClientFrames.refresh.payload.properties.token.description!, 'a field\'s description comes from its schema')
  const server = TABLES['server-frames']!()
  for (const type of Object.keys(ServerFrames)) t.match(server, `| \`${type}\` |`, `server frame ${type}`)
  const errors = TABLES['error-codes']!()
  for (const e of Object.values(Errors)) t.match(errors, `| \`${e.code}\` | ${e.status} | ${e.retryable ? 'yes' : 'no'} |`, `error ${e.code} with its status and retryable`)
  const close = TABLES['close-codes']!()
  for (const c of Object.values(CloseCodeTable)) t.match(close, `| ${c.code} | `, `close code ${c.code}`)
})

t.test('the markers are required: a file without them is an error, not silently skipped', async (t) => {
  t.throws(() => render('# no tables here\n', ['error-codes']), /markers/)
  const text = 'before\n<!-- generated: close-codes (npm run docs:protocol) -->\nstale\n<!-- end: close-codes -->\nafter\n'
  const out = render(text, ['close-codes'])
  t.ok(out.startsWith('before\n') && out.endsWith('after\n'), 'the prose around is kept')
  t.notMatch(out, /stale/, 'what was between the markers is replaced')
  t.equal(render(out, ['close-codes']), out, 'writing twice changes nothing')
})
