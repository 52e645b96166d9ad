// Entry point: sign-in, the header (who, live indicator, sign-out), and the hash router between the inventory
// and a machine's page. One event stream serves both pages.
import { ApiError, createApi } from './api.js'
import { h, replace } from './dom.js'
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

let token = storedToken()
let view = null
let stream = null

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
}

function route() {
  view?.dispose()
  view = null
  if (!token || !stream) return
  const hash = location.hash.replace(/^#/, '') || '/'
  const [path, query = ''] = hash.split('?')
  const m = /^\/machines\/(.+)$/.exec(path)
  view = m
    ? machineView({ api, stream, id: decodeURIComponent(m[1]) })
    : inventoryView({ api, stream, params: new URLSearchParams(query) })
  replace(main, view.el)
  document.title = m ? `${visible(decodeURIComponent(m[1]))} · rackboot` : 'Inventory · rackboot'
  // Screen readers and keyboards start at the new page's heading.
  view.el.querySelector('h1')?.focus({ preventScroll: true })
}

async function start() {
  let me
  try {
    me = await api.get('/whoami')
  } catch (err) {
    signOut(err instanceof ApiError ? err.advice : `Cannot reach rackboot: ${err?.message ?? err}`)
    return
  }
  replace(who, h('span', null, 'Token ', h('strong', null, me.name), ` (${me.scopes.join(', ')})`),
    canWrite(me.scopes) ? null : h('span', { class: 'badge readonly', title: 'This token can look but not change anything' }, 'read-only'))
  signOutButton.hidden = false
  stream = createEventStream({ api, onStatus: setLive })
  stream.start()
  route()
}

function signOut(message = '') {
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
