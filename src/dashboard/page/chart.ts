// Line charts on a canvas: drawn from the page's ring of points, in the
// theme's colours (CSS custom properties --s0..--s7, --fg, --muted, --grid),
// at the screen's pixel density. No library: a few lines of 2D canvas.

export interface Line {
  label: string
  /** palette index */
  color: number
  /** one value per time, null for a gap */
  values: Array<number | null>
}

export const PALETTE = 8
const HEIGHT = 180
const PAD = { left: 48, right: 12, top: 10, bottom: 22 }

const css = (name: string): string => getComputedStyle(document.documentElement).getPropertyValue(name).trim() || '#888'

/** A round upper bound for the axis: 1, 2 or 5 times a power of ten. */
export function niceMax (v: number): number {
  if (!(v > 0)) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 2, 5, 10]) if (m * p >= v) return m * p
  return 10 * p
}

const axisLabel = (v: number): string => v >= 10_000 ? `${Math.round(v / 1000)}k` : v >= 1000 ? `${(v / 1000).toFixed(1)}k` : String(Math.round(v * 100) / 100)
const ago = (ms: number): string => ms < 90_000 ? `${Math.round(ms / 1000)} s ago` : `${Math.round(ms / 60_000)} min ago`

export function drawChart (canvas: HTMLCanvasElement, times: number[], lines: Line[], summary: string): void {
  const dpr = window.devicePixelRatio || 1
  const width = Math.max(200, canvas.clientWidth)
  if (canvas.width !== Math.round(width * dpr) || canvas.height !== Math.round(HEIGHT * dpr)) {
    canvas.width = Math.round(width * dpr)
    canvas.height = Math.round(HEIGHT * dpr)
  }
  canvas.setAttribute('aria-label', summary)
  const g = canvas.getContext('2d')
  if (g === null) return
  g.setTransform(dpr, 0, 0, dpr, 0, 0)
  g.clearRect(0, 0, width, HEIGHT)
  const plotW = width - PAD.left - PAD.right
  const plotH = HEIGHT - PAD.top - PAD.bottom
  let max = 0
  for (const l of lines) for (const v of l.values) if (v !== null && v > max) max = v
  const top = niceMax(max)
  const t0 = times[0] ?? 0
  const t1 = times[times.length - 1] ?? t0 + 1
  const span = Math.max(1, t1 - t0)
  const x = (t: number): number => PAD.left + ((t - t0) / span) * plotW
  const y = (v: number): number => PAD.top + plotH - (v / top) * plotH

  g.font = '11px system-ui, sans-serif'
  g.lineWidth = 1
  g.strokeStyle = css('--grid')
  g.fillStyle = css('--muted')
  g.textAlign = 'right'
  g.textBaseline = 'middle'
  for (let i = 0; i <= 4; i++) {
    const v = (top / 4) * i
    g.beginPath()
    g.moveTo(PAD.left, Math.round(y(v)) + 0.5)
    g.lineTo(PAD.left + plotW, Math.round(y(v)) + 0.5)
    g.stroke()
    g.fillText(axisLabel(v), PAD.left - 6, y(v))
  }
  g.textAlign = 'left'
  g.textBaseline = 'top'
  if (times.length > 0) {
    g.fillText(ago(t1 - t0), PAD.left, PAD.top + plotH + 6)
    g.textAlign = 'right'
    g.fillText('now', PAD.left + plotW, PAD.top + plotH + 6)
  }

  g.lineWidth = 2
  g.lineJoin = 'round'
  for (const l of lines) {
    g.strokeStyle = css(`--s${l.color % PALETTE}`)
    g.beginPath()
    let pen = false
    for (let i = 0; i < times.length; i++) {
      const v = l.values[i]
      if (v === null || v === undefined) { pen = false; continue }
      if (pen) g.lineTo(x(times[i]!), y(v))
      else { g.moveTo(x(times[i]!), y(v)); pen = true }
    }
    g.stroke()
    // The latest value as a dot: a line of one point would not show.
    for (let i = times.length - 1; i >= 0; i--) {
      const v = l.values[i]
      if (v === null || v === undefined) continue
      g.fillStyle = g.strokeStyle
      g.beginPath()
      g.arc(x(times[i]!), y(v), 3, 0, 2 * Math.PI)
      g.fill()
      break
    }
  }
}
