// Every code block a user would paste from the README, docs/client.md or
// docs/protocol.md is one of:
//   <!-- example: examples/x.js -->   the file as run (its leading comment, which
//                                      says how to run it, left out), and a test runs it
//   <!-- excerpt: examples/x.js -->   consecutive lines of such a file
//   <!-- fragment: why -->            not a program: a command with placeholders,
//                                      a frame, a configuration excerpt, a listing
// written on the line before the block.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const DOCS = ['README.md', 'docs/client.md', 'docs/protocol.md']

export interface Block { file: string, line: number, marker: string | null, text: string }

/** The fenced blocks of a Markdown file, each with the comment on the line before it. */
export function blocks (file: string, source: string): Block[] {
  const lines = source.split('\n')
  const out: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(```+|~~~+)/.exec(lines[i]!)
    if (open === null) continue
    const fence = open[2]!
    const end = lines.findIndex((l, j) => j > i && l.trim().startsWith(fence) && l.trim().replace(/[`~]/g, '') === '')
    if (end < 0) throw new Error(`${file}:${i + 1}: unclosed code block`)
    let k = i - 1
    while (k >= 0 && lines[k]!.trim() === '') k--
    const marker = k >= 0 && /^<!-- (example|excerpt|fragment):.*-->$/.test(lines[k]!.trim()) ? lines[k]!.trim() : null
    out.push({ file, line: i + 1, marker, text: lines.slice(i + 1, end).join('\n') })
    i = end
  }
  return out
}

/** A file as a user runs it, without its leading comment (how to run it). */
export const body = (source: string): string => source.replace(/^(\/\/.*\n)+\n?/, '').trimEnd()

const testSources = (): string => {
  const dir = join(ROOT, 'test')
  return readdirSync(dir, { recursive: true }).filter((f) => String(f).endsWith('.test.ts')).map((f) => readFileSync(join(dir, String(f)), 'utf8')).join('\n')
}

t.test('every code block in the user docs is a tested example, an excerpt of one, or marked a fragment', async (t) => {
  const tests = testSources()
  let examples = 0
  for (const doc of DOCS) {
    for (const b of blocks(doc, readFileSync(join(ROOT, doc), 'utf8'))) {
      const where = `${b.file}:${b.line}`
      if (b.marker === null) { t.fail(`${where}: a code block with no marker (<!-- example: examples/… -->, <!-- excerpt: … -->, or <!-- fragment: why -->)`); continue }
      const m = /^<!-- (example|excerpt|fragment):\s*(.*?)\s*-->$/.exec(b.marker)!
      const [kind, arg] = [m[1]!, m[2]!]
      if (kind === 'fragment') { t.ok(arg.length > 0, `${where}: a fragment says why it is one`); continue }
      t.match(arg, /^examples\/[\w.-]+\.js$/, `${where}: names a file under examples/`)
      let source: string
      try { source = readFileSync(join(ROOT, arg), 'utf8') } catch { t.fail(`${where}: ${arg} does not exist`); continue }
      t.ok(tests.includes(`examples/${arg.slice('examples/'.length)}`) || tests.includes(`'${arg.slice('examples/'.length)}'`), `${where}: a test runs ${arg}`)
      if (kind === 'example') {
        examples++
        t.equal(b.text.trimEnd(), body(source), `${where}: the block is ${arg} as run`)
      } else {
        t.ok(source.includes(b.text.trimEnd()), `${where}: the block is lines of ${arg}`)
      }
    }
  }
  t.ok(examples >= 4, 'the SDK, Socket.IO, publisher and admin examples are shown whole')
})

t.test('the marker check itself: unmarked blocks and stale copies are caught', async (t) => {
  const found = blocks('x.md', 'text\n\n```js\nlet a\n```\n<!-- fragment: a frame -->\n```json\n{}\n```\n')
  t.same(found.map((b) => [b.line, b.marker]), [[3, null], [7, '<!-- fragment: a frame -->']])
  t.equal(body('// run: node x.js\n// more\n\nimport a from "a"\nx()\n'), 'import a from "a"\nx()')
})
