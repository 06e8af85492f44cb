// What a PromQL expression reads, from the syntax tree of the Prometheus
// project's own grammar (@prometheus-io/lezer-promql, the parser of the
// Prometheus web UI), and a check of it against what a node really exports.
import { parser } from '@prometheus-io/lezer-promql'
import type { Sample } from '../helpers/ops.js'

/** A node's exposition: metric name → label name → the values seen. */
export type Exported = Map<string, Map<string, Set<string>>>

export function exported (samples: Sample[]): Exported {
  const out: Exported = new Map()
  for (const s of samples) {
    let labels = out.get(s.name)
    if (labels === undefined) out.set(s.name, labels = new Map())
    for (const [k, v] of Object.entries(s.labels)) {
      let values = labels.get(k)
      if (values === undefined) labels.set(k, values = new Set())
      values.add(v)
    }
  }
  return out
}

/** Labels Prometheus attaches to every series it scrapes. */
export const TARGET_LABELS = ['job', 'instance']
/** The one series a rule may read that no node exports: Prometheus writes it per target, 1 or 0. */
export const UP = 'up'

export interface Matcher { label: string, op: string, value: string }
export interface Selector { metric: string | null, matchers: Matcher[] }
export interface Parsed {
  /** the parser's complaints, with where they are */
  errors: string[]
  selectors: Selector[]
  /** label names of by/without/on/ignoring clauses */
  grouping: string[]
}

/** A PromQL string literal's value ("…", '…' or `…`). */
function unquote (lit: string): string {
  if (lit.startsWith('`')) return lit.slice(1, -1)
  if (lit.startsWith('\'')) return JSON.parse(`"${lit.slice(1, -1).replace(/\\'/g, '\'').replace(/"/g, '\\"')}"`) as string
  return JSON.parse(lit) as string
}

export function parsePromQL (expr: string): Parsed {
  const tree = parser.parse(expr)
  const out: Parsed = { errors: [], selectors: [], grouping: [] }
  const text = (n: { from: number, to: number }): string => expr.slice(n.from, n.to)
  tree.iterate({
    enter (ref) {
      if (ref.type.isError) {
        out.errors.push(`syntax error at ${ref.from}: …${expr.slice(Math.max(0, ref.from - 20), ref.from)}⚠${expr.slice(ref.from, ref.from + 20)}…`)
        return
      }
      if (ref.name === 'QuotedLabelName' || ref.name === 'QuotedLabelMatcher') {
        out.errors.push(`quoted label name at ${ref.from} (Prometheus 3 syntax): ${text(ref)}`)
        return
      }
      if (ref.name === 'VectorSelector') {
        const node = ref.node
        const id = node.getChild('Identifier')
        const matchers: Matcher[] = []
        for (const m of node.getChild('LabelMatchers')?.getChildren('UnquotedLabelMatcher') ?? []) {
          const name = m.getChild('LabelName')
          const op = m.getChild('MatchOp')
          const value = m.getChild('StringLiteral')
          if (name === null || op === null || value === null) continue // reported as a syntax error
          matchers.push({ label: text(name), op: text(op), value: unquote(text(value)) })
        }
        out.selectors.push({ metric: id === null ? null : text(id), matchers })
      }
      if (ref.name === 'GroupingLabels') {
        for (const l of ref.node.getChildren('LabelName')) out.grouping.push(text(l))
      }
    },
  })
  return out
}

/** Grafana's interval variables, replaced by a duration so the query is PromQL; `$var` inside strings stays. */
export function grafanaToPromQL (expr: string, interval = '1m'): string {
  return expr.replace(/\$__(?:rate_interval|interval|range)\b|\$\{__(?:rate_interval|interval|range)\}/g, interval)
}

export interface CheckOptions {
  /** values a label must have when matched with = or != (e.g. job: herald) */
  values?: Record<string, string[]>
  /** labels whose matched values are made up (synthetic test series) and not checked */
  anyValue?: string[]
}

/**
 * What is wrong with `expr` against `exp`: parse errors, metrics the node does
 * not export, label names the selected metric does not carry, and (for = and
 * !=, where a typo selects nothing or everything) label values never seen.
 * Grouping labels must be carried by at least one metric the expression reads.
 */
export function problems (expr: string, exp: Exported, opts: CheckOptions = {}): string[] {
  const p = parsePromQL(expr)
  const out = [...p.errors]
  const carried = new Set<string>(TARGET_LABELS)
  for (const s of p.selectors) {
    if (s.metric === null) { out.push(`a selector without a metric name: ${JSON.stringify(s.matchers)}`); continue }
    const labels = s.metric === UP ? new Map<string, Set<string>>() : exp.get(s.metric)
    if (labels === undefined) { out.push(`${s.metric} is not exported`); continue }
    for (const l of labels.keys()) carried.add(l)
    for (const m of s.matchers) {
      const own = labels.get(m.label)
      if (own === undefined && !TARGET_LABELS.includes(m.label)) { out.push(`${s.metric} has no label ${m.label}`); continue }
      if ((m.op !== '=' && m.op !== '!=') || m.value.includes('$') || opts.anyValue?.includes(m.label) === true) continue
      const allowed = opts.values?.[m.label] ?? (own === undefined ? undefined : [...own])
      if (allowed === undefined) { out.push(`${s.metric}{${m.label}${m.op}"${m.value}"}: no known values for ${m.label}`); continue }
      if (!allowed.includes(m.value)) out.push(`${s.metric}{${m.label}${m.op}"${m.value}"}: ${m.label} is never "${m.value}" (seen: ${allowed.join(', ')})`)
    }
  }
  for (const g of p.grouping) {
    if (!carried.has(g)) out.push(`grouping label ${g} is on none of the metrics read`)
  }
  return out
}
