// The README as a guide: its first screen says what Herald is, what it
// guarantees and when to pick it over the usual alternatives, then a table
// of contents that lists every section and the reference pages, each link
// pointing at something that exists.
import { existsSync, readFileSync } from 'node:fs'
import t from 'tap'

const ROOT = new URL('../../', import.meta.url)
const readme = readFileSync(new URL('README.md', ROOT), 'utf8')

/** GitHub's anchor for a heading. */
const slug = (h: string): string => h.toLowerCase().trim().replace(/[^a-z0-9 -]/g, '').replaceAll(' ', '-')

t.test('the first screen: what, the guarantee, when to pick it, before any detail', async (t) => {
  const heads = [...readme.matchAll(/^## (.+)$/gm)].map((m) => m[1]!)
  t.same(heads.slice(0, 3), ['When to pick Herald', 'Contents', 'Quick start'], 'the guide comes before the details')
  const top = readme.slice(0, readme.indexOf('\n## Contents'))
  t.match(top, /realtime event gateway/)
  t.match(top, /at-most-once/, 'the live delivery guarantee, stated')
  t.match(top.replace(/\s+/g, ' '), /`since` gets every retained message it missed, in order, or `recovered: false`/, 'what resuming guarantees')
  const table = top.slice(top.indexOf('## When to pick Herald'))
  for (const alt of ['Socket.IO + redis-adapter', 'Centrifugo', 'Pusher / Soketi']) t.match(table, `| ${alt} |`.replace(/^\| /, ''), `compared with ${alt}`)
  for (const point of ['subscribe by pattern', 'per-user and per-IP limits', 'revocation', 'missed messages', 'webhooks', 'fan-out, measured']) t.match(table, new RegExp(`^\\| ${point}`, 'm'), `on ${point}`)
  t.ok(top.split('\n').length < 60, `short: ${top.split('\n').length} lines before the contents`)
})

t.test('the contents list every section, and every local link resolves', async (t) => {
  const contents = readme.slice(readme.indexOf('## Contents'), readme.indexOf('\n## ', readme.indexOf('## Contents') + 1))
  const sections = [...readme.matchAll(/^## (.+)$/gm)].map((m) => m[1]!).filter((h) => h !== 'When to pick Herald' && h !== 'Contents')
  for (const h of sections) t.match(contents, `- [${h}](#${slug(h)})`, `the contents link ${h}`)
  const anchors = new Set([...readme.matchAll(/^#{2,4} (.+)$/gm)].map((m) => slug(m[1]!)))
  for (const m of readme.matchAll(/\]\((#[^)]+)\)/g)) t.ok(anchors.has(m[1]!.slice(1)), `${m[1]} is a heading of the README`)
  for (const m of readme.matchAll(/\]\(((?:docs|examples|packages|bench|deploy|k8s)\/[^)#]+|CHANGELOG\.md|LICENSE)(#[^)]*)?\)/g)) {
    t.ok(existsSync(new URL(m[1]!, ROOT)), `${m[1]} exists`)
    if (m[2] !== undefined) {
      const target = readFileSync(new URL(m[1]!, ROOT), 'utf8')
      t.ok([...target.matchAll(/^#{1,4} (.+)$/gm)].some((h) => slug(h[1]!) === m[2]!.slice(1)), `${m[1]}${m[2]} is a heading there`)
    }
  }
  for (const page of ['docs/configuration.md', 'docs/metrics.md', 'docs/protocol.md']) t.match(contents, `](${page})`, `the contents link ${page}`)
})
