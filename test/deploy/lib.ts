// Shared by the deploy tests: the repository's deploy files, read the way their
// tools read them (YAML with merge keys, compose interpolation, Dockerfile
// instructions), and the external binaries the end-to-end tests run.
import { spawn } from 'node:child_process'
import { closeSync, openSync, readFileSync, readdirSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseAllDocuments, parseDocument } from 'yaml'
import { DockerfileParser } from 'dockerfile-ast'
import ts from 'typescript'
import { within } from '../helpers/wait.js'
import { reaped } from '../helpers/children.js'

export const ROOT = fileURLToPath(new URL('../../', import.meta.url))
export const read = (rel: string): string => readFileSync(join(ROOT, rel), 'utf8')

/** Every document of a YAML file; throws on any parse error or warning (duplicate keys included). */
export function yamlDocs (rel: string): unknown[] {
  const docs = parseAllDocuments(read(rel), { uniqueKeys: true, merge: true })
  if (!Array.isArray(docs)) throw new Error(`${rel}: not a YAML stream`)
  for (const d of docs) {
    const problems = [...d.errors, ...d.warnings]
    if (problems.length > 0) throw new Error(`${rel}: ${problems.map((p) => p.message).join('; ')}`)
  }
  return docs.map((d) => d.toJS({ maxAliasCount: 100 })).filter((d) => d !== null && d !== undefined)
}

/** docker-compose.yml as compose reads it (YAML 1.1 merge keys `<<`), before interpolation. */
export function composeFile (): any {
  const doc = parseDocument(read('docker-compose.yml'), { uniqueKeys: true, merge: true })
  const problems = [...doc.errors, ...doc.warnings]
  if (problems.length > 0) throw new Error(`docker-compose.yml: ${problems.map((p) => p.message).join('; ')}`)
  return doc.toJS({ maxAliasCount: 100 })
}

/**
 * Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR-default},
 * ${VAR:?error}, ${VAR?error}, $VAR and $$ (a literal $).
 */
export function interpolate (value: string, env: Record<string, string | undefined>): string {
  return value.replace(/\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?)([-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)/g,
    (whole, name: string | undefined, colon: string | undefined, op: string | undefined, arg: string | undefined, bare: string | undefined) => {
      if (whole === '$$') return '$'
      if (bare !== undefined) return env[bare] ?? ''
      const v = env[name!]
      const unset = colon === ':' ? v === undefined || v === '' : v === undefined
      if (op === '-') return unset ? arg! : v!
      if (op === '?') { if (unset) throw new Error(`compose: ${name} ${arg || 'is required'}`); return v! }
      return v ?? ''
    })
}

/** The compose services that run Herald: those built from this repository's Dockerfile. */
export function heraldServices (compose: any): Record<string, any> {
  return Object.fromEntries(Object.entries(compose.services as Record<string, any>).filter(([, s]) => s.build !== undefined))
}

/** A service's environment (map or KEY=VALUE list), interpolated with `env` (compose reads the shell and .env). */
export function serviceEnv (service: any, env: Record<string, string | undefined> = {}): Record<string, string> {
  const raw = service.environment ?? {}
  const entries: Array<[string, string]> = Array.isArray(raw)
    ? raw.map((kv: string) => { const i = kv.indexOf('='); return i < 0 ? [kv, env[kv] ?? ''] : [kv.slice(0, i), kv.slice(i + 1)] })
    : Object.entries(raw).map(([k, v]) => [k, v === null ? (env[k] ?? '') : String(v)])
  return Object.fromEntries(entries.map(([k, v]) => [k, interpolate(v, env)]))
}

/** Compose duration ("25s", "1m30s", "500ms") in ms. */
export function durationMs (d: string): number {
  const units: Record<string, number> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, ns: 0.000001 }
  const parts = [...d.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)/g)]
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== d) throw new Error(`not a duration: ${d}`)
  return parts.reduce((sum, p) => sum + Number(p[1]) * units[p[2]!]!, 0)
}

export interface Instruction {
  keyword: string
  /** arguments without the --flags */
  args: string
  /** --flag=value options (COPY --from, HEALTHCHECK --interval, …) */
  flags: string[]
  line: number
}
export interface Stage { name: string | null, from: string, instructions: Instruction[] }

/** The Dockerfile's stages, parsed by dockerfile-ast (the parser of the VS Code Docker tooling). */
export function dockerStages (): Stage[] {
  const df = DockerfileParser.parse(read('Dockerfile'))
  const stages: Stage[] = []
  for (const ins of df.getInstructions()) {
    const keyword = ins.getKeyword().toUpperCase()
    const args = ins.getArgumentsContent() ?? ''
    const line = ins.getRange().start.line + 1
    const flags = ((ins as unknown as { getFlags?: () => Array<{ toString: () => string }> }).getFlags?.() ?? []).map((f) => f.toString())
    if (keyword === 'FROM') {
      const m = /^(\S+)(?:\s+AS\s+(\S+))?\s*$/i.exec(args)
      if (m === null) throw new Error(`Dockerfile:${line}: unreadable FROM ${args}`)
      stages.push({ from: m[1]!, name: m[2] ?? null, instructions: [] })
    } else if (stages.length > 0) {
      stages[stages.length - 1]!.instructions.push({ keyword, args, flags, line })
    }
  }
  return stages
}

/** The value of a --name=value flag of an instruction. */
export function flag (ins: Instruction, name: string): string | undefined {
  const f = ins.flags.find((x) => x.startsWith(`--${name}=`))
  return f === undefined ? undefined : f.slice(name.length + 3)
}

/** An exec-form (JSON array) argument list, or null for shell form. */
export function execForm (args: string): string[] | null {
  const s = args.trim()
  if (!s.startsWith('[')) return null
  const v: unknown = JSON.parse(s)
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) throw new Error(`not an exec form: ${args}`)
  return v
}

/** HEALTHCHECK [options] CMD …: the command part. */
export function healthcheckCommand (args: string): string {
  const m = /(?:^|\s)CMD\s+([\s\S]*)$/.exec(args)
  if (m === null) throw new Error(`HEALTHCHECK without CMD: ${args}`)
  return m[1]!.trim()
}

/** .dockerignore semantics (Go filepath.Match per path segment, ** across segments, ! re-includes, last match wins). */
export function dockerIgnored (path: string, patterns: string[]): boolean {
  const toRe = (p: string): RegExp => {
    const segs = p.replace(/^\/+|\/+$/g, '').split('/')
    let re = ''
    segs.forEach((seg, i) => {
      const last = i === segs.length - 1
      if (seg === '**') { re += last ? '.*' : '(?:.*/)?'; return }
      re += seg.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]') + (last ? '' : '/')
    })
    // A pattern matching a directory excludes everything under it.
    return new RegExp(`^${re}(?:/.*)?$`)
  }
  let ignored = false
  for (const raw of patterns) {
    const negate = raw.startsWith('!')
    if (toRe(negate ? raw.slice(1) : raw).test(path)) ignored = !negate
  }
  return ignored
}

export function dockerignorePatterns (): string[] {
  return read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l.length > 0 && !l.startsWith('#'))
}

/** Files under a directory, relative to ROOT. */
export function filesUnder (rel: string): string[] {
  const out: string[] = []
  const walk = (abs: string): void => {
    for (const e of readdirSync(abs)) {
      const p = join(abs, e)
      if (statSync(p).isDirectory()) walk(p)
      else out.push(relative(ROOT, p))
    }
  }
  walk(join(ROOT, rel))
  return out.sort()
}

export { binary } from '../helpers/binary.js'

/** The margin src/main.ts gives close-with-grace past DRAIN_TIMEOUT before forcing exit, in ms. */
export function forceExitMarginMs (): number {
  const m = /drainTimeoutMs\s*\+\s*([\d_]+)/.exec(read('src/main.ts'))
  if (m === null) throw new Error('src/main.ts: close-with-grace delay (drainTimeoutMs + N) not found')
  return Number(m[1]!.replace(/_/g, ''))
}

/** The README's "## Deploy" section. */
export function readmeDeploySection (): string {
  const readme = read('README.md')
  const start = readme.indexOf('\n## Deploy\n')
  if (start < 0) throw new Error('README.md has no "## Deploy" section')
  const end = readme.indexOf('\n## ', start + 1)
  return readme.slice(start, end < 0 ? undefined : end)
}

let runs = 0
/**
 * Runs a program to completion (bounded), its output captured in a file in
 * `dir`: nginx opens /dev/stdout, which a socket pair cannot be.
 */
export async function runIn (dir: string, cmd: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number | null, out: string }> {
  const file = join(dir, `run-${process.pid}-${++runs}.out`)
  const fd = openSync(file, 'w')
  try {
    const p = reaped(spawn(cmd, args, { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', fd, fd] }))
    const code = await within(20_000, `${cmd} ${args.join(' ')}`, new Promise<number | null>((resolve) => p.once('exit', (c) => resolve(c))))
    return { code, out: readFileSync(file, 'utf8') }
  } finally {
    closeSync(fd)
  }
}

/**
 * Type-checks `source`, an in-memory file at `rel` (so its imports resolve
 * from the project's node_modules), strictly; each complaint with the
 * 0-based line of `source` it is on (-1: elsewhere in the program).
 */
export function typeCheckSource (rel: string, source: string): Array<{ line: number, text: string }> {
  const file = join(ROOT, rel)
  const options: ts.CompilerOptions = {
    strict: true, noEmit: true, skipLibCheck: true, types: [], lib: ['lib.es2022.d.ts'],
    target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext, moduleResolution: ts.ModuleResolutionKind.Bundler,
  }
  const host = ts.createCompilerHost(options)
  const getSourceFile = host.getSourceFile.bind(host)
  host.getSourceFile = (name, lang, ...rest) => name === file ? ts.createSourceFile(name, source, lang) : getSourceFile(name, lang, ...rest)
  const fileExists = host.fileExists.bind(host)
  host.fileExists = (name) => name === file || fileExists(name)
  return ts.getPreEmitDiagnostics(ts.createProgram([file], options, host)).map((d) => ({
    line: d.file?.fileName === file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start).line : -1,
    text: ts.flattenDiagnosticMessageText(d.messageText, '\n'),
  }))
}
