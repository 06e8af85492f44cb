// Small DOM helpers. Text always goes in as text (textContent), never as
// markup: event data, user ids and node names come from the cluster.

export function byId<T extends HTMLElement = HTMLElement> (id: string): T {
  const e = document.getElementById(id)
  if (e === null) throw new Error(`the page has no #${id}`)
  return e as T
}

type Child = Node | string | null | undefined

export function el<K extends keyof HTMLElementTagNameMap> (tag: K, attrs: Record<string, string> = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v
    else e.setAttribute(k, v)
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c)
  return e
}

export function replaceChildren (parent: Element, children: Iterable<Node>): void {
  parent.replaceChildren(...children)
}

const integer = new Intl.NumberFormat('en', { maximumFractionDigits: 0 })
const oneDecimal = new Intl.NumberFormat('en', { maximumFractionDigits: 1 })

export const fmtInt = (n: number): string => integer.format(n)

/** A rate: one decimal below 10, whole above. */
export const fmtRate = (n: number | null): string => n === null ? '–' : n < 10 ? oneDecimal.format(n) : integer.format(n)

export const fmtMs = (n: number | null): string => n === null ? '–' : oneDecimal.format(n)

export function fmtBytes (n: number): string {
  if (n < 1024 * 1024) return `${oneDecimal.format(n / 1024)} KiB`
  if (n < 1024 * 1024 * 1024) return `${oneDecimal.format(n / 1024 / 1024)} MiB`
  return `${oneDecimal.format(n / 1024 / 1024 / 1024)} GiB`
}

export function fmtUptime (s: number): string {
  if (s < 60) return `${s} s`
  if (s < 3600) return `${Math.floor(s / 60)} min`
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`
}

export const fmtTime = (iso: string): string => {
  const d = new Date(iso)
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleTimeString('en-GB', { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0')
}
