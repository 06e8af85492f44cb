import { HeraldAdmin, type Metrics } from '../../client/admin.js'
import type { DisconnectInfo } from '../../client/index.js'
import { byId } from './dom.js'
import { Inspector } from './inspector.js'
import { ClusterModel } from './model.js'
import { Overview } from './overview.js'
import { expiryOf, finalRefusal, forgetToken, storedToken, storeToken, verify } from './session.js'
import { TailView } from './tail.js'
import { setUpTheme } from './theme.js'
import { WebhooksView } from './webhooks.js'

// The admin dashboard, served by the node at GET /admin. Signs in with an
// admin JWT (kept in session storage), then lives on /ws/admin of the node
// that served it: `metrics` pushes feed the overview, a tail shows live
// events, the inspector acts on one user. Nothing is fetched from anywhere
// else; the page knows nothing of the cluster until it is signed in.

const WS_URL = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/ws/admin`

let admin: HeraldAdmin | null = null
let model = new ClusterModel()
const inspector = new Inspector()
const tail = new TailView()
const webhooks = new WebhooksView()
let overview = new Overview(model, (u) => { select('inspector'); void inspector.look(u) })

function show (signedIn: boolean): void {
  byId('sign-in').hidden = signedIn
  byId('app').hidden = !signedIn
  byId('sign-out').hidden = !signedIn
}

function setLink (text: string, state: string): void {
  const link = byId('link')
  link.textContent = text
  link.dataset.state = state
}

function refuse (message: string): void {
  byId('sign-in-error').textContent = message
}

async function signIn (token: string): Promise<void> {
  refuse('')
  const button = byId<HTMLButtonElement>('sign-in-button')
  button.disabled = true
  try {
    const v = await verify(token)
    if (!v.ok && finalRefusal(v.error.code)) { refuse(`Refused: ${v.error.code}: ${v.error.message}`); return }
    storeToken(token)
    byId<HTMLTextAreaElement>('token').value = ''
    // A node draining, full or cut off from the backend may pass: the client retries, through a load balancer to another node.
    start(token, v.ok ? null : `${v.error.code}: ${v.error.message}`)
  } finally {
    button.disabled = false
  }
}

function start (token: string, warning: string | null): void {
  stop()
  model = new ClusterModel()
  overview = new Overview(model, (u) => { select('inspector'); void inspector.look(u) })
  const a = new HeraldAdmin({
    url: WS_URL,
    // The page has one token: when it expires, the operator signs in again.
    getToken: ({ reason }) => {
      if (reason === 'expiring') return null
      const t = storedToken()
      const exp = t === null ? null : expiryOf(t)
      return exp !== null && exp <= Date.now() ? null : t
    },
    baseDelayMs: 500,
    maxDelayMs: 10_000,
  })
  admin = a
  const c = a.client
  let welcomed = false
  show(true)
  setLink(warning === null ? 'Connecting…' : `Connecting (${warning})…`, 'connecting')
  c.on('welcome', (w) => {
    welcomed = true
    setLink(`Connected to ${w.serverId}`, 'connected')
  })
  c.on('state', (s) => {
    if (admin !== a) return
    if (s === 'reconnecting') setLink('Reconnecting…', 'reconnecting')
    if (s === 'connected') void a.stats().then((st) => { model.update(st, Date.now()); overview.render(Date.now()) }, () => {})
  })
  c.on('disconnect', (info: DisconnectInfo) => {
    if (admin !== a) return
    if (info.delayMs === null) { void ended(a, info); return }
    // Closed before a welcome: the browser hides the node's answer; ask for it.
    if (!welcomed || info.code === 1006) void recheck(a)
    welcomed = false
  })
  a.on('metrics', (m: Metrics) => {
    if (admin !== a) return
    model.update(m, Date.parse(m.timestamp) || Date.now())
    overview.render(Date.now())
  })
  a.on('tail', (t) => { if (admin === a) tail.add(t) })
  inspector.attach(a)
  tail.attach(a)
  webhooks.attach(a)
  if (!byId('webhooks').hidden) webhooks.show()
  a.connect().catch(() => { /* reported by `disconnect` */ })
}

/** The connection failed before its welcome: a refusal the page can do nothing about ends the session. */
async function recheck (a: HeraldAdmin): Promise<void> {
  const token = storedToken()
  if (token === null) return
  const v = await verify(token)
  if (admin !== a || v.ok) return
  if (finalRefusal(v.error.code)) signOut(`Signed out: ${v.error.code}: ${v.error.message}`)
  else setLink(`Reconnecting (${v.error.code})…`, 'reconnecting')
}

/** The client stopped by itself: revoked, disconnected by an operator, token expired. */
async function ended (a: HeraldAdmin, info: DisconnectInfo): Promise<void> {
  const token = storedToken()
  const exp = token === null ? null : expiryOf(token)
  if (exp !== null && exp <= Date.now()) return signOut(`Your token expired at ${new Date(exp).toLocaleTimeString()}: sign in with a new one.`)
  if (info.error !== undefined) return signOut(`Signed out: ${info.error.code}: ${info.error.message}`)
  if (info.code === 4004) return signOut(`Signed out: your session was revoked (${info.reason}).`)
  if (info.code === 4003) return signOut(`Signed out: disconnected by an administrator (${info.reason}).`)
  if (admin === a) signOut(`Signed out: the connection ended (${info.code} ${info.reason}).`)
}

function stop (): void {
  const a = admin
  admin = null
  inspector.attach(null)
  tail.attach(null)
  webhooks.attach(null)
  a?.close()
}

function signOut (message = ''): void {
  stop()
  forgetToken()
  show(false)
  setLink('Signed out', 'signed-out')
  refuse(message)
  byId('token').focus()
}

// Tabs: buttons with roving focus (arrow keys, Home, End), one panel shown.
const TABS = ['overview', 'tail', 'inspector', 'webhooks'] as const
type Tab = typeof TABS[number]

function select (tab: Tab, focus = false): void {
  for (const t of TABS) {
    const b = byId(`tab-${t}`)
    const on = t === tab
    b.setAttribute('aria-selected', String(on))
    b.tabIndex = on ? 0 : -1
    byId(t).hidden = !on
    if (on && focus) b.focus()
  }
  if (tab === 'overview') overview.redraw(Date.now())
  if (tab === 'webhooks') webhooks.show()
  else webhooks.hide()
}

for (const t of TABS) {
  const b = byId(`tab-${t}`)
  b.addEventListener('click', () => select(t))
  b.addEventListener('keydown', (e) => {
    const i = TABS.indexOf(t)
    const to = e.key === 'ArrowRight' ? TABS[(i + 1) % TABS.length] : e.key === 'ArrowLeft' ? TABS[(i + TABS.length - 1) % TABS.length] : e.key === 'Home' ? TABS[0] : e.key === 'End' ? TABS[TABS.length - 1] : undefined
    if (to === undefined) return
    e.preventDefault()
    select(to, true)
  })
}

byId<HTMLFormElement>('sign-in-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const token = byId<HTMLTextAreaElement>('token').value.trim()
  if (token === '') { refuse('Paste an admin token first.'); return }
  void signIn(token)
})
// Enter signs in; Shift+Enter is a new line (a token has none).
byId('token').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); byId<HTMLFormElement>('sign-in-form').requestSubmit() }
})
byId('sign-out').addEventListener('click', () => signOut())
setUpTheme(() => overview.redraw(Date.now()))
window.addEventListener('resize', () => overview.redraw(Date.now()))

// A reload in the same tab keeps the session: the token is still in session storage.
const kept = storedToken()
if (kept !== null) void signIn(kept)
else show(false)
