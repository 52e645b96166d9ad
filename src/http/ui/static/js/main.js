// Entry point: sign-in, the header (who, live indicator, sign-out), and the hash router between the inventory
// and a machine's page. One event stream serves both pages.
import { ApiError, createApi } from './api.js'
import { h, replace, timeEl } from './dom.js'
import { visible } from './format.js'
import { inventoryView } from './inventory.js'
import { machineView } from './machine.js'
import { canWrite, storeToken, storedToken } from './session.js'
import { createEventStream } from './stream.js'

const main = document.getElementById('main')
const live = document.getElementById('live')
const who = document.getElementById('who')
const signOutButton = document.getElementById('signout')
const dialog = document.getElementById('signin')
const form = document.getElementById('signin-form')
const tokenInput = document.getElementById('token')
const signInError = document.getElementById('signin-error')
const lost = document.getElementById('lost')

let token = storedToken()
let view = null
let stream = null
let scopes = []
/** When the page lost the server (the event stream or the first read failed), until it is back. */
let lostSince = null
let lostTimer = null
let startTimer = null
/** A stream that reconnects within this long (a server's clean restart hint) shows no banner. */
const LOST_GRACE_MS = 1500

const api = createApi({
  token: () => token,
  onUnauthorized: (err) => signOut(`Your API token was refused: ${err.message}`),
})

const LIVE_TEXT = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  denied: 'Not live',
  stopped: 'Offline',
}

function setLive(status, detail) {
  live.dataset.state = status
  live.textContent = LIVE_TEXT[status] ?? status
  live.title = status === 'live'
    ? 'Receiving changes as they happen'
    : detail ? `${LIVE_TEXT[status] ?? status}: ${detail instanceof ApiError ? detail.advice : detail}` : ''
  if (status === 'reconnecting') serverLost(detail)
  else if (status === 'live') serverBack()
  else if (status === 'stopped' || status === 'denied') clearLost()
}

/**
 * The server cannot be reached: after a short grace, a banner across the page says so and since when, and the page
 * is marked stale (greyed, data-stale on <main>): what it shows is what it knew then. Cleared when the stream is back.
 */
function serverLost(detail) {
  lostSince ??= new Date().toISOString()
  const why = detail instanceof ApiError ? detail.message : detail ? String(detail) : ''
  const show = () => {
    lost.hidden = false
    document.body.classList.add('stale')
    main.dataset.stale = lostSince
    replace(lost,
      h('strong', null, 'Lost contact with the rackboot server'), ' since ', timeEl(lostSince), '. ',
      'What this page shows may be out of date: it is greyed out until the connection is back. Reconnecting by itself…',
      why ? h('span', { class: 'lost-why' }, ` (${why})`) : null)
  }
  if (!lost.hidden) show()
  else if (!lostTimer) {
    lostTimer = setTimeout(() => {
      lostTimer = null
      if (lostSince) show()
    }, LOST_GRACE_MS)
  }
}

function clearLost() {
  clearTimeout(lostTimer)
  lostTimer = null
  lostSince = null
  lost.hidden = true
  replace(lost)
  document.body.classList.remove('stale')
  delete main.dataset.stale
}

/** The stream is live again: the banner goes, and the page reads again what the stream cannot replay (power states). */
function serverBack() {
  const wasLost = lostSince !== null
  clearLost()
  if (wasLost) view?.resync?.()
}

function route() {
  view?.dispose()
  view = null
  if (!token || !stream) return
  const hash = location.hash.replace(/^#/, '') || '/'
  const [path, query = ''] = hash.split('?')
  const m = /^\/machines\/(.+)$/.exec(path)
  let ref = m?.[1] ?? ''
  try {
    ref = decodeURIComponent(ref)
  } catch {
    // a malformed escape: the reference as it is written
  }
  view = m
    ? machineView({ api, stream, id: ref, scopes })
    : inventoryView({ api, stream, params: new URLSearchParams(query), scopes })
  replace(main, view.el)
  document.title = m ? `${visible(ref)} · rackboot` : 'Inventory · rackboot'
  // Screen readers and keyboards start at the new page's heading.
  view.el.querySelector('h1')?.focus({ preventScroll: true })
}

async function start(attempt = 0) {
  clearTimeout(startTimer)
  let me
  try {
    me = await api.get('/whoami')
  } catch (err) {
    // The server is down or unreachable: keep the token and try again (signing out would lose it for nothing).
    if (err instanceof ApiError && err.status === 0 && token) {
      serverLost(err)
      startTimer = setTimeout(() => void start(attempt + 1), Math.min(1000 * 2 ** attempt, 15_000))
      return
    }
    signOut(err instanceof ApiError ? err.advice : `Cannot reach rackboot: ${err?.message ?? err}`)
    return
  }
  clearLost()
  scopes = me.scopes
  replace(who, h('span', null, 'Token ', h('strong', null, me.name), ` (${me.scopes.join(', ')})`),
    canWrite(me.scopes) ? null : h('span', { class: 'badge readonly', title: 'This token can look but not change anything' }, 'read-only'))
  signOutButton.hidden = false
  stream = createEventStream({ api, onStatus: setLive })
  stream.start()
  route()
}

function signOut(message = '') {
  clearTimeout(startTimer)
  clearLost()
  scopes = []
  view?.dispose()
  view = null
  stream?.stop()
  stream = null
  token = null
  storeToken(null)
  replace(main)
  replace(who)
  signOutButton.hidden = true
  setLive('stopped')
  signInError.textContent = message
  signInError.hidden = !message
  tokenInput.value = ''
  if (!dialog.open) dialog.showModal()
  tokenInput.focus()
}

form.addEventListener('submit', async (e) => {
  e.preventDefault()
  const candidate = tokenInput.value.trim()
  if (!candidate) return
  token = candidate
  try {
    await api.get('/whoami')
  } catch (err) {
    token = null
    signInError.textContent = err instanceof ApiError ? err.advice : String(err?.message ?? err)
    signInError.hidden = false
    return
  }
  storeToken(candidate)
  dialog.close()
  signInError.hidden = true
  void start()
})
// The page is useless without a token: Escape does not dismiss the sign-in.
dialog.addEventListener('cancel', (e) => e.preventDefault())
signOutButton.addEventListener('click', () => signOut())
window.addEventListener('hashchange', route)

if (token) void start()
else signOut()
