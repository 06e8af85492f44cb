import { byId } from './dom.js'

// Light, dark, or the system's (prefers-color-scheme). The choice is a
// display preference, not a secret: kept in local storage; the token never is.

type Theme = 'auto' | 'light' | 'dark'
const KEY = 'herald.theme'
const ORDER: Theme[] = ['auto', 'light', 'dark']

function stored (): Theme {
  try {
    const t = localStorage.getItem(KEY)
    return t === 'light' || t === 'dark' ? t : 'auto'
  } catch { return 'auto' }
}

/** Applies the stored theme and wires the toggle; `changed` runs after each switch (charts redraw). */
export function setUpTheme (changed: () => void): void {
  const button = byId<HTMLButtonElement>('theme')
  const now = byId('theme-now')
  const apply = (t: Theme): void => {
    document.documentElement.dataset.theme = t
    button.textContent = `Theme: ${t}`
    now.textContent = t === 'auto' ? 'follows the system' : t
  }
  apply(stored())
  button.addEventListener('click', () => {
    const next = ORDER[(ORDER.indexOf(stored()) + 1) % ORDER.length]!
    try {
      if (next === 'auto') localStorage.removeItem(KEY)
      else localStorage.setItem(KEY, next)
    } catch {}
    apply(next)
    changed()
  })
  matchMedia('(prefers-color-scheme: dark)').addEventListener('change', changed)
}
