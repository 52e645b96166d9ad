// The inventory page: one server-side page of machines (never the whole inventory), filters by state, label
// and text, counts per state, and live updates from the event stream: new machines appear, changed ones update
// in place and flash. A dense table (one line a machine), sorted by a column within the page, columns chosen by
// the user, and bulk actions on the machines selected (this page, other pages, or everything that matches).
import { ApiError } from './api.js'
import { flash, h, machineHref, machineNameEl, replace, timeEl } from './dom.js'
import { dateTime, machineName, memory } from './format.js'
import { labelEntries, labelsMatch, parseLabelFilter, splitFilter } from './labels.js'
import { classify, lastFailure } from './phases.js'

export const STATES = ['new', 'discovered', 'ready', 'provisioning', 'installed', 'released', 'maintenance', 'failed']
const PAGE_SIZES = [50, 100, 200, 500]
/** Machine changes are fetched in batches at most this often; boot events update their cell at once. */
const REFRESH_MS = 300
const COUNTS_MS = 1500
/** Timeline events read to find where a failed machine failed, and such reads at once. */
const FAILURE_TIMELINE = 100
const FAILURE_READS = 4
/** Bulk actions: requests at once. More would only queue behind the browser's six connections to the server. */
const BULK_CONCURRENCY = 8
/**
 * A bulk action redraws its rows and progress at most this often: a frame that changes a row of a 500-row table
 * costs a repaint of 100 ms or more (headless chromium), and drawn per answer those frames held the requests back.
 */
const BULK_PAINT_MS = 500
/** Live refreshes of changed machines at once: a bulk action over 500 changes 500 rows. */
const REFRESH_READS = 4
/** /overview/latest-events takes this many machines a request. */
const LATEST_BATCH = 200
/** "Select all matching" reads the ids a page of 1000 at a time, up to this many machines. */
const SELECT_ALL_MAX = 20_000
const COLUMNS_KEY = 'rackboot.inventory.columns'
/** The list API has no sort parameter (pages follow the id order): these sort the loaded page in the browser. */
const SORT_KEYS = ['name', 'state', 'power', 'rack', 'serial', 'cpus', 'memory']

/** Filters from the hash's query: #/?state=ready&label=rack%3Dr12&q=abc&limit=100. */
export function readFilters(params) {
  const limit = Number(params.get('limit'))
  return {
    state: params.getAll('state').flatMap((s) => s.split(',')).filter((s) => STATES.includes(s)),
    label: params.getAll('label').flatMap(parseLabelFilter),
    q: (params.get('q') ?? '').trim(),
    limit: PAGE_SIZES.includes(limit) ? limit : 100,
    sort: readSort(params.get('sort')),
  }
}

/** sort=name (ascending) or sort=-memory (descending); anything else: the server's order (by id). */
function readSort(value) {
  const v = value ?? ''
  const desc = v.startsWith('-')
  const key = desc ? v.slice(1) : v
  return SORT_KEYS.includes(key) ? { key, desc } : null
}

function filterHash(f) {
  const p = new URLSearchParams()
  for (const s of f.state) p.append('state', s)
  for (const l of f.label) p.append('label', l)
  if (f.q) p.set('q', f.q)
  if (f.limit !== 100) p.set('limit', String(f.limit))
  if (f.sort) p.set('sort', `${f.sort.desc ? '-' : ''}${f.sort.key}`)
  const s = p.toString()
  return s ? `#/?${s}` : '#/'
}

/**
 * The filters as the list API takes them: `rack=r12` in the filter box is the machine's rack field (the API's `rack`
 * parameter, exact), any other key=value a label.
 */
function apiFilters(f) {
  const { rack, labels } = splitFilter(f.label)
  return { state: f.state.join(',') || undefined, label: labels, rack: rack ?? undefined, q: f.q || undefined }
}

/** The same test the server applies, for machines that appear while the page is open. */
function matchesFilters(m, f) {
  if (f.state.length && !f.state.includes(m.state)) return false
  const { rack, labels } = splitFilter(f.label)
  if (rack !== null && m.rack !== rack) return false
  if (!labelsMatch(m.labels, labels)) return false
  if (f.q) {
    const t = f.q.toLowerCase()
    const hay = [m.id, m.name, m.serial, m.uuid, ...(m.nics ?? []).map((n) => n.mac)].filter(Boolean)
    if (!hay.some((s) => String(s).toLowerCase().includes(t))) return false
  }
  return true
}

const dash = (v) => (v === null || v === undefined || v === '' ? '—' : String(v))

const when = (event) => timeEl(event.at)

/** on, off, unknown (not read yet or the read failed), none (no BMC). */
function powerState(m) {
  if (!m.bmc) return 'none'
  return m.power?.state ?? 'unknown'
}

const POWER_ORDER = { on: 0, off: 1, unknown: 2, none: 3 }
// Natural order: r2-u9 before r12-u1, SN9 before SN10.
const natural = new Intl.Collator('en', { numeric: true, sensitivity: 'base' })

/** The value a column sorts by; null sorts last in both directions (a machine without a serial is not "first"). */
const SORTS = {
  name: (m) => machineName(m),
  state: (m) => STATES.indexOf(m.state),
  power: (m) => POWER_ORDER[powerState(m)],
  rack: (m) => (m.rack === null && m.rackUnit === null ? null : [m.rack ?? '', m.rackUnit ?? -1]),
  serial: (m) => m.serial,
  cpus: (m) => m.hardware?.cpuCores ?? null,
  memory: (m) => m.hardware?.memoryBytes ?? null,
}

function compareValues(a, b) {
  if (Array.isArray(a)) {
    for (let i = 0; i < a.length; i++) {
      const c = compareValues(a[i], b[i])
      if (c) return c
    }
    return 0
  }
  if (typeof a === 'number' && typeof b === 'number') return a - b
  return natural.compare(String(a), String(b))
}

/** Machines in the order of a sort ({ key, desc }); ties by id, so the order is stable across reloads. */
export function sortMachines(machines, sort) {
  const value = SORTS[sort.key]
  return machines
    .map((m) => ({ m, v: value(m) }))
    .sort((x, y) => {
      const xn = x.v === null || x.v === undefined
      const yn = y.v === null || y.v === undefined
      if (xn !== yn) return xn ? 1 : -1
      const c = xn ? 0 : compareValues(x.v, y.v)
      return (sort.desc ? -c : c) || natural.compare(x.m.id, y.m.id)
    })
    .map((x) => x.m)
}

/**
 * The machine's address: the API's `ip` (an unexpired DHCP lease, else a reservation), else its static addresses
 * (network.addresses, prefix dropped); a machine with neither shows "DHCP" (it gets one when it boots).
 */
function ipCell(m) {
  if (typeof m.ip === 'string' && m.ip) {
    const from = m.ipSource === 'lease' ? 'DHCP lease' : m.ipSource === 'reservation' ? 'DHCP reservation' : 'address'
    return h('span', { class: 'mono', title: `${m.ip} (${from})`, dataset: { source: m.ipSource ?? '' } }, m.ip)
  }
  const ips = (m.network?.addresses ?? []).flatMap((l) => l.addresses.map((a) => a.replace(/\/\d+$/, '')))
  if (ips.length === 0) return h('span', { class: 'muted', title: 'No static address, and no DHCP lease or reservation now: it gets one by DHCP when it boots' }, 'DHCP')
  return h('span', { class: 'mono', title: ips.join(', ') }, ips[0], ips.length > 1 ? ` +${ips.length - 1}` : '')
}

function rackCell(m) {
  if (m.rack === null && m.rackUnit === null) return '—'
  return `${m.rack ?? '?'}${m.rackUnit === null ? '' : ` U${m.rackUnit}`}`
}

/**
 * The last-event column: the newest event, or for a failed (quarantined) machine where it failed, from its last
 * boot.failure (phase and reason) while that is known.
 */
function lastEventCell(event, machine, failure) {
  if (machine.state === 'failed' && failure) {
    const d = failure.data ?? {}
    return [
      h('span', { class: 'phase phase-fail failure' }, `Failed in phase ${d.phase ?? 'unknown'}`),
      ' ',
      h('span', { class: 'ev-message', title: failure.message }, d.reason ?? failure.message),
      ' ',
      when(failure),
    ]
  }
  if (!event) return h('span', { class: 'muted' }, 'no events yet')
  const c = classify(event)
  return [
    h('span', { class: `phase phase-${c.status}` }, c.label ?? event.type, c.tag ? ` ${c.tag}` : ''),
    ' ',
    h('span', { class: 'ev-message', title: event.message }, event.message),
    ' ',
    when(event),
  ]
}

/** The cells of one machine's row, keyed by column (so a change can flash only the cells that changed). */
function cells(m, event, failure) {
  const hw = m.hardware
  return {
    // One line: what a tech knows it by (name, else serial, MAC, short id); the id goes to the tooltip.
    name: machineNameEl(m, { link: true }),
    state: h('span', { class: `state state-${m.state}` }, m.state),
    power: powerCell(m),
    rack: rackCell(m),
    ip: ipCell(m),
    bmc: m.bmc ? h('span', { class: 'mono', title: `${m.bmc.type} BMC ${m.bmc.address}` }, m.bmc.address) : '—',
    class: dash(m.class),
    // The profile it installs: its own, else its class's (effectiveProfile).
    profile: m.profile || !m.effectiveProfile ? dash(m.profile) : h('span', { class: 'inherited', title: `${m.effectiveProfile}: from class ${m.class ?? '?'}` }, m.effectiveProfile),
    serial: dash(m.serial),
    model: [m.manufacturer, m.product].filter(Boolean).join(' ') || '—',
    cpus: dash(hw?.cpuCores),
    memory: hw?.memoryBytes ? memory(hw.memoryBytes) : '—',
    disks: hw ? `${hw.diskCount}${hw.nvmeCount ? ` (${hw.nvmeCount} NVMe)` : ''}` : '—',
    macs: m.nics.length ? h('span', { class: 'mono' }, m.nics.map((n) => n.mac).join(' ')) : '—',
    labels: labelEntries(m.labels).length
      ? h('ul', { class: 'chips' }, labelEntries(m.labels).map(([k, v]) => h('li', { class: 'chip' }, `${k}=${v}`)))
      : '',
    since: timeEl(m.stateChangedAt),
    last: lastEventCell(event, m, failure),
  }
}

/** The power state the BMC last reported (polled by the server); "?" when the last read failed, blank without a BMC. */
function powerCell(m) {
  if (!m.bmc) return h('span', { class: 'power power-none', title: 'no BMC in the inventory' }, '—')
  const p = m.power
  if (!p) return h('span', { class: 'power power-unknown', title: `${m.bmc.type} BMC ${m.bmc.address}: not read yet` }, '…')
  const checked = p.checkedAt ? ` (checked ${dateTime(p.checkedAt)})` : ''
  if (!p.state) return h('span', { class: 'power power-unknown', title: `${p.error ?? 'the BMC did not answer'}${checked}` }, '?')
  return h('span', { class: `power power-${p.state}`, title: `${m.bmc.type} BMC ${m.bmc.address}${checked}` }, p.state)
}

/** The table's columns; `hidden`: off until the user picks it; name cannot be hidden (it links to the machine). */
const COLUMNS = [
  { key: 'name', label: 'Name', fixed: true },
  { key: 'state', label: 'State' },
  { key: 'power', label: 'Power' },
  { key: 'rack', label: 'Rack/U' },
  { key: 'ip', label: 'IP' },
  { key: 'bmc', label: 'BMC', hidden: true },
  { key: 'class', label: 'Class' },
  { key: 'profile', label: 'Profile' },
  { key: 'serial', label: 'Serial' },
  { key: 'model', label: 'Manufacturer / product', hidden: true },
  { key: 'cpus', label: 'CPUs' },
  { key: 'memory', label: 'Memory' },
  { key: 'disks', label: 'Disks' },
  { key: 'macs', label: 'MACs', hidden: true },
  { key: 'labels', label: 'Labels' },
  { key: 'since', label: 'State since', hidden: true },
  { key: 'last', label: 'Last event' },
]

/**
 * Which columns show: the user's choice per column (kept in this browser), else the column's default. A choice is
 * kept per column so a column added later starts at its default instead of hidden.
 */
function shownColumns() {
  let chosen = {}
  try {
    chosen = JSON.parse(localStorage.getItem(COLUMNS_KEY) ?? '{}') ?? {}
  } catch {
    // unreadable or storage disabled: the defaults
  }
  return new Set(COLUMNS.filter((c) => c.fixed || (typeof chosen[c.key] === 'boolean' ? chosen[c.key] : !c.hidden)).map((c) => c.key))
}

function storeColumns(shown) {
  try {
    localStorage.setItem(COLUMNS_KEY, JSON.stringify(Object.fromEntries(COLUMNS.filter((c) => !c.fixed).map((c) => [c.key, shown.has(c.key)]))))
  } catch {
    // storage disabled: the choice lasts as long as the page
  }
}

/** Runs fn over items with at most `limit` at once; stops taking new items once stop() says so. */
async function eachLimited(items, limit, fn, stop = () => false) {
  let i = 0
  const worker = async () => {
    while (i < items.length && !stop()) await fn(items[i++])
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker))
}

/** "rack=r12 role=db" → { rack: 'r12', role: 'db' }; "role=" removes the label (null); null when malformed. */
export function parseLabelEdit(text) {
  const pairs = String(text ?? '').split(/[\s,]+/).filter(Boolean)
  if (pairs.length === 0) return null
  const out = {}
  for (const p of pairs) {
    const i = p.indexOf('=')
    const key = i > 0 ? p.slice(0, i) : ''
    if (!/^[A-Za-z0-9]([A-Za-z0-9._/-]{0,251}[A-Za-z0-9])?$/.test(key)) return null
    out[key] = p.slice(i + 1) === '' ? null : p.slice(i + 1)
  }
  return out
}

/** The bulk actions: the request for one machine, and the machine in its answer (to update the row at once). */
const BULK = {
  accept: { label: 'Accept', call: (api, id) => api.post(`/machines/${encodeURIComponent(id)}/accept`), machine: (r) => r },
  label: { label: 'Label', call: (api, id, labels) => api.patch(`/machines/${encodeURIComponent(id)}`, { labels }), machine: (r) => r },
  power: { label: 'Power', call: (api, id, action) => api.post(`/machines/${encodeURIComponent(id)}/power`, { action }), machine: () => null },
  release: { label: 'Release', call: (api, id) => api.post(`/machines/${encodeURIComponent(id)}/release`, {}), machine: (r) => r?.machine ?? null },
  maintenance: {
    label: 'Maintenance',
    call: (api, id, on) => api.post(`/machines/${encodeURIComponent(id)}/maintenance`, { on, reason: `${on ? 'taken out of' : 'back in'} service from the web UI (bulk)` }),
    machine: (r) => r,
  },
}

/** A failed request as a line in the failures list: the HTTP status and the API's own message. */
function failureText(err) {
  if (err instanceof ApiError) {
    if (err.status === 403) return `403 not allowed: ${err.message}`
    return `${err.status || 'network'} ${err.code}: ${err.message}`
  }
  return String(err?.message ?? err)
}

/** inventoryView({ api, stream, params, notify }) → { el, dispose }. */
export function inventoryView({ api, stream, params }) {
  const filters = readFilters(params)
  /** Cursors of the pages before this one ([] on the first page) and of this one. */
  const previous = []
  let cursor = null
  let next = null
  /** id → { machine, event, failure (its newest boot.failure, once known), tr, key (text per column, to see what changed) } */
  const rows = new Map()
  const pending = new Set()
  const recent = new Map()
  /** Machines added to this page live since it loaded. */
  let added = 0
  /** Where failed machines failed (id → newest boot.failure), kept across reloads of the list; bounded. */
  const failuresKnown = new Map()
  let refreshTimer = null
  let countsTimer = null
  let disposed = false
  let generation = 0

  const countsEl = h('div', { class: 'counts', role: 'group', 'aria-label': 'Machines per state (select to filter)' })
  const status = h('p', { class: 'summary', role: 'status', 'aria-live': 'polite' }, 'Loading…')
  // Machines waiting for an install slot (provisioning.maxConcurrent / maxPerRack), in the order they will go.
  const queueEl = h('p', { class: 'queue', hidden: true })
  const errorEl = h('div', { class: 'error', role: 'alert', hidden: true })
  const tbody = h('tbody')
  const shown = shownColumns()
  /** Machines selected for a bulk action, by id: kept across pages, cleared when the filters change. */
  const selected = new Set()
  /** Names of selected machines not on this page (for the failures list). */
  const names = new Map()
  /** The last per-state counts under the current filters (how many "select all matching" would take). */
  let lastCounts = null
  let lastPicked = null
  let job = null
  let pageSize = 0

  const pageBox = h('input', { type: 'checkbox', id: 'select-page', 'aria-label': 'Select every machine on this page', onchange: () => {
    for (const id of rows.keys()) pageBox.checked ? selected.add(id) : selected.delete(id)
    syncSelection()
  } })
  const headers = new Map(COLUMNS.map((c) => [c.key, h('th', { scope: 'col', class: `col-${c.key}`, hidden: !shown.has(c.key) },
    SORT_KEYS.includes(c.key)
      ? h('button', { type: 'button', class: 'sort', title: `Sort this page by ${c.label.toLowerCase()}`, onclick: () => sortBy(c.key) }, c.label, h('span', { class: 'arrow', 'aria-hidden': 'true' }))
      : c.label)]))
  const table = h('table', { class: 'machines' },
    h('caption', { class: 'visually-hidden' }, 'Machines'),
    h('thead', null, h('tr', null, h('th', { scope: 'col', class: 'col-select' }, pageBox), [...headers.values()])),
    tbody)
  // A row's checkbox; shift-click selects the range from the last one picked.
  tbody.addEventListener('click', (e) => {
    const box = e.target.closest?.('input.pick')
    if (!box) return
    const id = box.closest('tr').dataset.id
    const ids = [...tbody.querySelectorAll('tr')].map((tr) => tr.dataset.id)
    const range = e.shiftKey && lastPicked && ids.includes(lastPicked)
      ? ids.slice(Math.min(ids.indexOf(lastPicked), ids.indexOf(id)), Math.max(ids.indexOf(lastPicked), ids.indexOf(id)) + 1)
      : [id]
    for (const r of range) box.checked ? selected.add(r) : selected.delete(r)
    lastPicked = id
    syncSelection()
  })

  // Column chooser: checkboxes, remembered in this browser.
  const chooser = h('details', { class: 'column-chooser' },
    h('summary', null, 'Columns'),
    h('fieldset', null, h('legend', { class: 'visually-hidden' }, 'Columns to show'),
      COLUMNS.filter((c) => !c.fixed).map((c) => h('label', null,
        h('input', { type: 'checkbox', name: 'column', value: c.key, checked: shown.has(c.key), onchange: (e) => showColumn(c.key, e.target.checked) }),
        ` ${c.label}`))))

  // Bulk actions on the selection.
  const selCount = h('span', { class: 'sel-count' }, 'None selected')
  const allMatchingBtn = h('button', { type: 'button', class: 'link', hidden: true, onclick: () => void selectAllMatching() })
  const clearSelBtn = h('button', { type: 'button', class: 'link', hidden: true, onclick: () => { selected.clear(); syncSelection() } }, 'Clear selection')
  const acceptBtn = h('button', { type: 'button', id: 'bulk-accept', onclick: () => void runBulk('accept') }, 'Accept')
  const bulkLabel = h('input', { id: 'bulk-label', type: 'text', placeholder: 'key=value', autocomplete: 'off', spellcheck: 'false', 'aria-label': 'Labels to set on the selected machines (key=value; key= removes it)' })
  const labelBtn = h('button', { type: 'button', id: 'bulk-label-apply', onclick: () => {
    const labels = parseLabelEdit(bulkLabel.value)
    if (!labels) {
      showBulkNote('Labels: key=value (several with spaces; key= removes a label); keys are letters, digits and . _ / -')
      bulkLabel.focus()
      return
    }
    void runBulk('label', labels, `Label ${bulkLabel.value.trim()}`)
  } }, 'Label')
  const powerSelect = h('select', { id: 'bulk-power', 'aria-label': 'Power action' },
    h('option', { value: 'on' }, 'Power on'), h('option', { value: 'off' }, 'Power off'), h('option', { value: 'cycle' }, 'Power cycle'))
  const powerBtn = h('button', { type: 'button', id: 'bulk-power-apply', onclick: () => confirmThen(powerBtn, 'Power', () => powerSelect.value !== 'on',
    () => void runBulk('power', powerSelect.value, powerSelect.selectedOptions[0].textContent)) }, 'Power')
  // Maintenance on takes machines out of service (nothing boots them): asked twice; off is not.
  const maintenanceSelect = h('select', { id: 'bulk-maintenance', 'aria-label': 'Maintenance on or off' },
    h('option', { value: 'on' }, 'Maintenance on'), h('option', { value: 'off' }, 'Maintenance off'))
  const maintenanceBtn = h('button', { type: 'button', id: 'bulk-maintenance-apply', onclick: () => confirmThen(maintenanceBtn, 'Maintenance', () => maintenanceSelect.value === 'on',
    () => void runBulk('maintenance', maintenanceSelect.value === 'on', maintenanceSelect.selectedOptions[0].textContent)) }, 'Maintenance')
  const releaseBtn = h('button', { type: 'button', id: 'bulk-release', class: 'danger', title: 'Release provisioning or installed machines: their disks are wiped and they return to the pool',
    onclick: () => confirmThen(releaseBtn, 'Release', () => true, () => void runBulk('release')) }, 'Release')
  const bulkButtons = [acceptBtn, bulkLabel, labelBtn, powerSelect, powerBtn, maintenanceSelect, maintenanceBtn, releaseBtn]
  const bulkBar = h('div', { class: 'bulk', role: 'toolbar', 'aria-label': 'Act on the selected machines' },
    selCount, allMatchingBtn, clearSelBtn, h('span', { class: 'sep', 'aria-hidden': 'true' }), bulkButtons)
  // Progress of the running (or last) bulk action; the live region says only when one starts and ends.
  const progressEl = h('div', { class: 'bulk-progress', hidden: true })
  const bulkAnnounce = h('p', { class: 'visually-hidden', role: 'status', 'aria-live': 'polite' })
  const prevBtn = h('button', { type: 'button', onclick: () => go(previous.pop() ?? null, false) }, '← Previous')
  const nextBtn = h('button', { type: 'button', onclick: () => go(next, true) }, 'Next →')
  const pageInfo = h('span', { class: 'page-info' })

  // Filters: applied as the user types (debounced), kept in the address so a view can be shared.
  const stateSelect = h('select', { id: 'f-state', name: 'state' },
    h('option', { value: '' }, 'any state'),
    STATES.map((s) => h('option', { value: s, selected: filters.state.length === 1 && filters.state[0] === s }, s)))
  const labelInput = h('input', { id: 'f-label', name: 'label', type: 'text', placeholder: 'rack=r12 role=db', title: 'rack=r12: the rack field; other keys: labels (all must match)', value: filters.label.join(' '), autocomplete: 'off', spellcheck: 'false' })
  const searchInput = h('input', { id: 'f-q', name: 'q', type: 'search', placeholder: 'serial, name, MAC, UUID, id', value: filters.q, autocomplete: 'off', spellcheck: 'false',
    title: 'Filters as you type; Enter opens the machine when exactly one matches' })
  const sizeSelect = h('select', { id: 'f-limit', name: 'limit', 'aria-label': 'Machines per page' }, PAGE_SIZES.map((n) => h('option', { value: n, selected: n === filters.limit }, `${n} per page`)))
  let typing = null
  const applyFilters = () => {
    clearTimeout(typing)
    filters.state = stateSelect.value ? [stateSelect.value] : []
    filters.label = parseLabelFilter(labelInput.value)
    filters.q = searchInput.value.trim()
    filters.limit = Number(sizeSelect.value)
    history.replaceState(null, '', filterHash(filters))
    previous.length = 0
    // Other filters, other machines: a selection made under the old ones is not what the user sees now.
    selected.clear()
    names.clear()
    void load(null)
  }
  const typed = () => {
    clearTimeout(typing)
    typing = setTimeout(applyFilters, 300)
  }
  stateSelect.addEventListener('change', applyFilters)
  sizeSelect.addEventListener('change', applyFilters)
  labelInput.addEventListener('input', typed)
  searchInput.addEventListener('input', typed)
  searchInput.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || e.isComposing) return
    e.preventDefault()
    void jump()
  })

  /**
   * Enter in the search box: a serial (or name, MAC, UUID, id) that matches exactly one machine opens its page; one
   * of several matches that equals what was typed (SN-1 among SN-1, SN-10, SN-11) counts as the one. Otherwise the
   * list shows every match. Only the text counts here: a serial scanned at the rack finds its machine whatever the
   * state filter.
   */
  async function jump() {
    clearTimeout(typing)
    const q = searchInput.value.trim()
    if (q) {
      try {
        const page = await api.get('/machines', { q, limit: 50 })
        const same = (v) => typeof v === 'string' && v.toLowerCase() === q.toLowerCase()
        const exact = page.items.filter((m) => [m.id, m.name, m.serial, m.uuid, ...(m.nics ?? []).map((n) => n.mac)].some(same))
        const one = page.items.length === 1 ? page.items[0] : exact.length === 1 ? exact[0] : null
        if (disposed) return
        if (one) {
          location.hash = machineHref(one.id)
          return
        }
      } catch {
        // the list below reads it again and shows the error
      }
    }
    applyFilters()
  }
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter machines', onsubmit: (e) => { e.preventDefault(); applyFilters() } },
    h('label', { for: 'f-state' }, 'State'), stateSelect,
    h('label', { for: 'f-label', title: 'rack=r12 filters by the rack the machine is in; any other key=value by a label' }, 'Rack, labels'), labelInput,
    h('label', { for: 'f-q' }, 'Search'), searchInput,
    sizeSelect,
    h('button', { type: 'button', onclick: () => {
      stateSelect.value = ''
      labelInput.value = ''
      searchInput.value = ''
      applyFilters()
    } }, 'Clear'))

  const el = h('section', { class: 'inventory', 'aria-labelledby': 'inv-title' },
    h('h1', { id: 'inv-title', tabindex: '-1' }, 'Inventory'),
    countsEl, queueEl, h('div', { class: 'toolbar' }, form, chooser), errorEl,
    h('div', { class: 'listbar' }, status, bulkBar), progressEl, bulkAnnounce,
    h('div', { class: 'table-wrap' }, table),
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prevBtn, pageInfo, nextBtn))

  function showError(err) {
    errorEl.hidden = !err
    replace(errorEl, err ? (err instanceof ApiError ? err.advice : String(err?.message ?? err)) : '')
  }

  function renderRow(id, { fresh = false, quiet = false } = {}) {
    const row = rows.get(id)
    const c = cells(row.machine, row.event, row.failure)
    const keyOf = (k) => (k === 'last' ? `${row.event?.seq ?? ''} ${row.machine.state === 'failed' ? row.failure?.seq ?? '' : ''}` : JSON.stringify(k === 'name' ? [machineName(row.machine), row.machine.id] : c[k] instanceof Node ? c[k].textContent : c[k]))
    if (!row.tr) {
      row.tr = h('tr', { dataset: { id } },
        h('td', { class: 'col-select' }, h('input', { type: 'checkbox', class: 'pick', checked: selected.has(id), 'aria-label': `Select ${machineName(row.machine)}` })),
        COLUMNS.map(({ key: k }) => tip(h('td', { class: `col-${k}`, dataset: { col: k }, hidden: !shown.has(k) }, c[k]))))
      row.tr.classList.toggle('selected', selected.has(id))
      row.key = Object.fromEntries(COLUMNS.map(({ key: k }) => [k, keyOf(k)]))
      if (fresh) {
        row.tr.classList.add('is-new')
        row.tr.querySelector('.col-name')?.append(' ', h('span', { class: 'badge' }, 'new'))
        flash(row.tr)
      }
      return row.tr
    }
    for (const { key: k } of COLUMNS) {
      const key = keyOf(k)
      if (key === row.key[k]) continue
      row.key[k] = key
      const td = row.tr.querySelector(`td[data-col="${k}"]`)
      tip(replace(td, c[k]))
      if (!quiet) flash(td)
    }
    row.tr.classList.toggle('left-filter', !matchesFilters(row.machine, filters))
    row.tr.title = row.tr.classList.contains('left-filter') ? 'no longer matches the filter' : ''
    return row.tr
  }

  async function loadCounts() {
    try {
      const f = apiFilters(filters)
      const c = await api.get('/overview/counts', { label: f.label, rack: f.rack, q: f.q })
      if (disposed) return
      const button = (state, n, label) => h('button', {
        type: 'button', class: `count ${state ? `state-${state}` : 'all'}${n === 0 ? ' none' : ''}`, dataset: { state: state ?? '' },
        'aria-pressed': String(state ? filters.state.length === 1 && filters.state[0] === state : filters.state.length === 0),
        onclick: () => {
          stateSelect.value = state ?? ''
          applyFilters()
        },
      }, h('span', { class: 'n' }, n.toLocaleString()), ' ', label)
      replace(countsEl, button(null, c.total, 'machines'), STATES.map((s) => button(s, c.states[s] ?? 0, s)))
      lastCounts = c
      syncSelection()
      const q = await api.get('/overview/queue')
      if (disposed) return
      lastQueue = q
      renderQueue()
    } catch (err) {
      if (!disposed) showError(err)
    }
  }

  /** The install queue's first ten, each by the name a tech knows it by (read once for machines not on this page). */
  let lastQueue = null
  const queueNames = new Map()
  function renderQueue() {
    const q = lastQueue
    if (!q) return
    const first = q.items.slice(0, 10)
    const label = (id) => (rows.has(id) ? machineName(rows.get(id).machine) : queueNames.get(id) ?? id)
    queueEl.hidden = q.items.length === 0
    replace(queueEl, q.items.length === 0 ? '' : [
      `${q.items.length.toLocaleString()} waiting for an install slot: `,
      first.flatMap((item, i) => [i ? ', ' : '', h('a', { href: machineHref(item.machineId), title: item.machineId }, `${item.position}. ${label(item.machineId)}`), item.rack ? ` (rack ${item.rack})` : '']),
      q.items.length > 10 ? ', …' : '',
    ])
    const unknown = first.map((i) => i.machineId).filter((id) => !rows.has(id) && !queueNames.has(id))
    if (unknown.length === 0) return
    for (const id of unknown) queueNames.set(id, id)
    if (queueNames.size > 1000) queueNames.clear()
    void Promise.all(unknown.map((id) => api.get(`/machines/${encodeURIComponent(id)}`, { timeline: 0 })
      .then((m) => queueNames.set(id, machineName(m)))
      .catch(() => {}))).then(() => {
      if (!disposed) renderQueue()
    })
  }

  function scheduleCounts() {
    if (countsTimer) return
    countsTimer = setTimeout(() => {
      countsTimer = null
      void loadCounts()
    }, COUNTS_MS)
  }

  async function load(at) {
    const mine = ++generation
    cursor = at
    status.textContent = 'Loading…'
    void loadCounts()
    try {
      const page = await api.get('/machines', { ...apiFilters(filters), limit: filters.limit, cursor: at ?? undefined })
      // The newest events, LATEST_BATCH machines a request (a page of 500 is more than one request takes).
      const latest = []
      for (let i = 0; i < page.items.length; i += LATEST_BATCH) {
        const r = await api.get('/overview/latest-events', { machine: page.items.slice(i, i + LATEST_BATCH).map((m) => m.id).join(',') })
        latest.push(...r.items)
      }
      if (disposed || mine !== generation) return
      const events = new Map(latest.map((i) => [i.machineId, i.event]))
      rows.clear()
      added = 0
      for (const m of page.items) {
        const event = events.get(m.id) ?? null
        const known = failuresKnown.get(m.id) ?? null
        const failure = event?.type === 'boot.failure' && (!known || event.seq > known.seq) ? event : known
        rows.set(m.id, { machine: m, event, failure, tr: null, key: null })
      }
      replace(tbody, orderedIds().map((id) => renderRow(id)))
      for (const m of page.items) if (m.state === 'failed') findFailure(m.id)
      next = page.next
      showError(null)
      pageSize = page.items.length
      sayPage()
      syncSelection()
      const pageNo = previous.length + 1
      pageInfo.textContent = `Page ${pageNo}`
      prevBtn.disabled = previous.length === 0
      nextBtn.disabled = !next
    } catch (err) {
      if (disposed || mine !== generation) return
      status.textContent = ''
      showError(err)
    }
  }

  /**
   * Where a failed machine failed: its newest boot.failure, from its timeline (the newest event may be the
   * quarantine or anything after it). A few reads at a time; the row shows its newest event meanwhile.
   */
  const failureQueue = []
  let failureReads = 0
  function setFailure(id, row, failure) {
    row.failure = failure
    if (failuresKnown.size > 5000) failuresKnown.clear()
    if (failure) failuresKnown.set(id, failure)
    else failuresKnown.delete(id)
  }
  function findFailure(id) {
    const row = rows.get(id)
    if (!row || row.failure || row.lookingForFailure || failureQueue.includes(id)) return
    failureQueue.push(id)
    pumpFailures()
  }
  function pumpFailures() {
    while (failureReads < FAILURE_READS && failureQueue.length > 0) {
      const id = failureQueue.shift()
      const row = rows.get(id)
      if (!row || row.failure || disposed) continue
      row.lookingForFailure = true
      failureReads++
      const mine = generation
      api.get(`/machines/${encodeURIComponent(id)}`, { timeline: FAILURE_TIMELINE })
        .then((m) => {
          const found = lastFailure(m.timeline ?? [])
          if (disposed || !found) return
          const known = failuresKnown.get(id)
          if (!known || found.seq > known.seq) failuresKnown.set(id, found)
          const now = rows.get(id)
          if (mine !== generation || !now) return
          if (!now.failure || found.seq > now.failure.seq) setFailure(id, now, found)
          // What was already so when the page loaded: filled in without the highlight of a live change.
          renderRow(id, { quiet: true })
        })
        .catch(() => {}) // the row keeps its newest event
        .finally(() => {
          row.lookingForFailure = false
          failureReads--
          pumpFailures()
        })
    }
  }

  /** A cell's whole text as its tooltip: cells are cut to one line. Power and state badges have their own. */
  function tip(td) {
    if (td.dataset.col !== 'power' && td.dataset.col !== 'state') td.title = td.textContent.trim()
    return td
  }

  const nameOf = (id) => (rows.has(id) ? machineName(rows.get(id).machine) : names.get(id) ?? id)

  /** The page's rows in the chosen order (the server's, by id, without a sort). */
  function orderedIds() {
    if (!filters.sort) return [...rows.keys()]
    return sortMachines([...rows.values()].map((r) => r.machine), filters.sort).map((m) => m.id)
  }

  function sayPage() {
    const label = filters.sort && COLUMNS.find((c) => c.key === filters.sort.key).label.toLowerCase()
    status.textContent = pageSize
      ? `Page ${previous.length + 1}: ${pageSize} machine${pageSize === 1 ? '' : 's'}${next ? ' (more on the next pages)' : ''}, ${filters.sort ? `sorted by ${label}${filters.sort.desc ? ' (descending)' : ''} within this page` : 'by id'}.`
      : 'No machine matches.'
    status.title = 'Pages follow the machine id; a column sorts the page shown. New machines appear at the top of page 1.'
  }

  /** The sorted column says so (aria-sort and an arrow); the others say nothing. */
  function markSort() {
    for (const [key, th] of headers) {
      const on = filters.sort?.key === key
      if (on) th.setAttribute('aria-sort', filters.sort.desc ? 'descending' : 'ascending')
      else th.removeAttribute('aria-sort')
      const arrow = th.querySelector('.arrow')
      if (arrow) arrow.textContent = on ? (filters.sort.desc ? ' ▼' : ' ▲') : ''
    }
  }

  /** A header click: ascending first, then the other way; kept in the address (#/?sort=-memory). */
  function sortBy(key) {
    filters.sort = { key, desc: filters.sort?.key === key ? !filters.sort.desc : false }
    history.replaceState(null, '', filterHash(filters))
    markSort()
    tbody.append(...orderedIds().map((id) => rows.get(id).tr))
    sayPage()
  }

  function showColumn(key, on) {
    on ? shown.add(key) : shown.delete(key)
    storeColumns(shown)
    headers.get(key).hidden = !on
    for (const td of tbody.querySelectorAll(`td[data-col="${key}"]`)) td.hidden = !on
  }

  /** The selection as the page shows it: row checkboxes, the page's box (indeterminate when some), the bar. */
  function syncSelection() {
    let onPage = 0
    for (const [id, row] of rows) {
      const on = selected.has(id)
      if (on) onPage++
      const box = row.tr?.querySelector('input.pick')
      if (box) box.checked = on
      row.tr?.classList.toggle('selected', on)
    }
    pageBox.checked = rows.size > 0 && onPage === rows.size
    pageBox.indeterminate = onPage > 0 && onPage < rows.size
    const n = selected.size
    const elsewhere = n - onPage
    selCount.textContent = n === 0 ? 'None selected' : `${n.toLocaleString()} selected${elsewhere ? ` (${elsewhere.toLocaleString()} on other pages)` : ''}`
    const matching = matchingCount()
    allMatchingBtn.hidden = !(pageBox.checked && next && matching !== null && matching > n)
    allMatchingBtn.textContent = `Select all ${matching?.toLocaleString() ?? ''} matching`
    clearSelBtn.hidden = n === 0
    for (const b of bulkButtons) b.disabled = n === 0 || job?.running === true
  }

  /** How many machines the filters match, from the counts (which take label and text, and count per state). */
  function matchingCount() {
    if (!lastCounts) return null
    return filters.state.length ? filters.state.reduce((sum, s) => sum + (lastCounts.states[s] ?? 0), 0) : lastCounts.total
  }

  /** Every machine the filters match, across pages: their ids, read a page of 1000 at a time. */
  async function selectAllMatching() {
    allMatchingBtn.disabled = true
    allMatchingBtn.textContent = 'Selecting…'
    const mine = generation
    try {
      let at = null
      do {
        const page = await api.get('/machines', { ...apiFilters(filters), limit: 1000, cursor: at ?? undefined })
        if (disposed || mine !== generation) return
        for (const m of page.items) {
          selected.add(m.id)
          names.set(m.id, machineName(m))
        }
        at = page.next
      } while (at && selected.size < SELECT_ALL_MAX)
    } catch (err) {
      showBulkNote(`Could not select every matching machine: ${failureText(err)}`)
    } finally {
      allMatchingBtn.disabled = false
      syncSelection()
    }
  }

  /** Actions that cannot be undone ask twice: the button turns into "Confirm …" for a few seconds. */
  const confirming = new Map()
  function confirmThen(button, label, needed, run) {
    if (!needed() || confirming.has(button)) {
      clearTimeout(confirming.get(button))
      confirming.delete(button)
      button.textContent = label
      button.classList.remove('confirm')
      run()
      return
    }
    const n = selected.size.toLocaleString()
    button.textContent = label === 'Power' ? `Confirm: ${powerSelect.selectedOptions[0].textContent.toLowerCase()} ${n}?`
      : label === 'Release' ? `Confirm: release and wipe ${n}?`
        : label === 'Maintenance' ? `Confirm: ${maintenanceSelect.selectedOptions[0].textContent.toLowerCase()} for ${n}?`
          : `Confirm: ${label.toLowerCase()} ${n}?`
    button.classList.add('confirm')
    confirming.set(button, setTimeout(() => {
      confirming.delete(button)
      button.textContent = label
      button.classList.remove('confirm')
    }, 5000))
  }

  function showBulkNote(text) {
    progressEl.hidden = false
    replace(progressEl, h('p', { class: 'error', role: 'alert' }, text))
  }

  /**
   * One bulk action over the selection: BULK_CONCURRENCY requests at once, in the background (the page stays
   * usable, rows update as answers come). A 403 means the token lacks the scope for every machine alike: the
   * rest are not sent.
   */
  async function runBulk(kind, arg, title = BULK[kind].label) {
    if (job?.running || selected.size === 0) return
    const ids = [...selected]
    const mine = { running: true, title, total: ids.length, done: 0, failed: [], denied: null, stopped: false, kind, ids: new Set(ids), answered: new Set() }
    job = mine
    syncSelection()
    bulkAnnounce.textContent = `${title}: ${ids.length} machine${ids.length === 1 ? '' : 's'}…`
    renderProgress(mine)
    let painting = null
    const paint = () => {
      painting ??= setTimeout(() => {
        painting = null
        flushJobRows()
        renderProgress(mine)
      }, BULK_PAINT_MS)
    }
    await eachLimited(ids, BULK_CONCURRENCY, async (id) => {
      try {
        const answer = await BULK[kind].call(api, id, arg)
        const m = BULK[kind].machine(answer)
        const row = rows.get(id)
        if (m && row && !disposed) {
          // The answer is the machine as it is now: the row shows it without waiting for the event stream.
          const { facts: _f, leases: _l, allocation: _a, timeline: _t, ...rest } = m
          row.machine = rest
          jobRows.add(id)
        }
      } catch (err) {
        mine.failed.push({ id, name: nameOf(id), text: failureText(err) })
        if (err instanceof ApiError && (err.status === 403 || err.status === 401)) mine.denied ??= err
      }
      mine.answered.add(id)
      mine.done++
      paint()
    }, () => mine.stopped || mine.denied !== null)
    clearTimeout(painting)
    mine.running = false
    flushJobRows()
    renderProgress(mine)
    const notSent = mine.total - mine.done
    bulkAnnounce.textContent = `${title}: ${mine.done - mine.failed.length} of ${mine.total} done${mine.failed.length ? `, ${mine.failed.length} failed` : ''}${notSent ? `, ${notSent} not sent` : ''}.`
    if (!disposed) syncSelection()
  }

  /**
   * Whether a machine's change is one a running bulk action is about to answer with (its answer carries the machine
   * as it now is): then the row waits for that answer instead of reading the machine again. Without this, accepting
   * 500 machines cost 500 more reads, which took the browser's few connections from the accepts (5 a second).
   */
  /**
   * Rows a running bulk action changes do not flash: the user asked for it and the progress line says it; and each
   * flash forces a layout of the whole table (dom.js flash), which at 500 rows held a bulk accept to 5 machines a second.
   */
  /** Rows a running bulk action changed, drawn together every BULK_PAINT_MS (see BULK_PAINT_MS). */
  const jobRows = new Set()
  function flushJobRows() {
    if (disposed) return
    for (const id of jobRows) if (rows.has(id)) renderRow(id, { quiet: true })
    jobRows.clear()
  }

  function inJob(id) {
    return job?.running === true && job.ids.has(id)
  }

  function awaitingAnswer(id) {
    return job?.running === true && BULK[job.kind].machine !== BULK.power.machine && job.ids.has(id) && !job.answered.has(id)
  }

  function renderProgress(j) {
    progressEl.hidden = false
    const notSent = j.running ? 0 : j.total - j.done
    const ok = j.done - j.failed.length
    progressEl.classList.toggle('has-failures', j.failed.length > 0)
    replace(progressEl,
      h('div', { class: 'bulk-line' },
        h('strong', null, j.title), ' ',
        h('progress', { max: j.total, value: j.done, 'aria-label': `${j.title} progress` }), ' ',
        h('span', { class: 'bulk-done', dataset: { done: j.done, total: j.total, failed: j.failed.length } },
          `${j.done}/${j.total} done`, j.failed.length ? `, ${j.failed.length} failed` : '', notSent ? `, ${notSent} not sent` : '',
          j.running ? '' : ` (${ok} succeeded)`),
        j.running
          ? h('button', { type: 'button', class: 'link', onclick: () => { j.stopped = true } }, j.stopped ? 'Stopping…' : 'Stop')
          : h('button', { type: 'button', class: 'link', onclick: () => { progressEl.hidden = true } }, 'Dismiss')),
      j.denied ? h('p', { class: 'error', role: 'alert' }, `${j.denied.advice} The other machines were not sent.`) : null,
      j.failed.length
        ? h('details', { class: 'bulk-failures', open: j.failed.length <= 20 },
            h('summary', null, `${j.failed.length} failed`),
            h('ul', null, j.failed.slice(0, 500).map((f) => h('li', null, h('a', { href: machineHref(f.id) }, f.name), `: ${f.text}`)),
              j.failed.length > 500 ? h('li', null, `and ${j.failed.length - 500} more`) : null))
        : null)
  }

  function go(to, forward) {
    if (forward) previous.push(cursor)
    void load(to)
  }

  /**
   * Whether a machine just created (always `new`, without labels) may belong on this page: the first page only, a
   * filter that admits it, and at most a page's worth added live (in a boot storm the counts tell the rest).
   */
  function mayJoin() {
    if (cursor !== null || filters.label.length > 0) return false
    if (filters.state.length > 0 && !filters.state.includes('new')) return false
    if (added >= filters.limit) {
      status.textContent = 'More machines appeared than fit on this page: see the counts above, or reload the first page.'
      return false
    }
    return true
  }

  /** Refetches machines that changed (batched), and adds new ones to the top of the first page. */
  function scheduleRefresh(id) {
    pending.add(id)
    if (refreshTimer) return
    refreshTimer = setTimeout(async () => {
      refreshTimer = null
      const ids = [...pending]
      pending.clear()
      // A few at a time: a bulk action changes hundreds of rows at once, and these reads would crowd out its requests.
      await eachLimited(ids, REFRESH_READS, async (mid) => {
        try {
          // timeline=0: the newest event is already here, from the stream (reading it costs the server a timeline).
          const m = await api.get(`/machines/${encodeURIComponent(mid)}`, { timeline: 0 })
          if (disposed) return
          const event = recent.get(mid) ?? null
          const { facts: _f, bmc, leases: _l, allocation: _a, timeline: _t, ...rest } = m
          // The row keeps the list's shape: the BMC summary the power column reads, not the detail's settings.
          const machine = { ...rest, bmc: bmc ? { type: bmc.type, address: bmc.address, bootMethod: bmc.bootMethod } : null }
          const row = rows.get(mid)
          if (row) {
            row.machine = machine
            if (event && (!row.event || event.seq >= row.event.seq)) row.event = event
            renderRow(mid, { quiet: inJob(mid) })
            if (machine.state === 'failed') findFailure(mid)
          } else if (cursor === null && matchesFilters(machine, filters)) {
            rows.set(mid, { machine, event, failure: null, tr: null, key: null })
            added++
            tbody.prepend(renderRow(mid, { fresh: true }))
            if (rows.size === 1) status.textContent = 'A machine appeared (live).'
          }
        } catch (err) {
          if (err instanceof ApiError && err.status === 404 && rows.has(mid)) {
            const row = rows.get(mid)
            row.tr?.classList.add('deleted')
            if (row.tr) row.tr.title = 'deleted'
          }
        }
      })
    }, REFRESH_MS)
  }

  const unsubscribe = stream.subscribe((e) => {
    if (!e.machineId) return
    // The newest event of machines not (yet) on the page, for those that join it; bounded in a boot storm.
    if (recent.size > 5000) recent.clear()
    recent.set(e.machineId, e)
    if (e.type === 'machine.created' || e.type === 'machine.state' || e.type === 'machine.deleted') scheduleCounts()
    const row = rows.get(e.machineId)
    // A power event may be a changed power state (the poller's "power is off"): the row reads it again.
    if (e.type.startsWith('machine.') || e.type === 'boot.agent' || e.type === 'boot.script' || (e.type === 'power' && 'state' in (e.data ?? {}))) {
      if (row && !awaitingAnswer(e.machineId)) scheduleRefresh(e.machineId)
      else if (e.type === 'machine.created' && mayJoin()) scheduleRefresh(e.machineId)
    }
    if (e.type === 'boot.failure') {
      if (row && (!row.failure || e.seq > row.failure.seq)) setFailure(e.machineId, row, e)
      else if (!row) failuresKnown.set(e.machineId, e)
    }
    // A retry or a new allocation starts counting afresh: a failure before it is not where a new quarantine failed.
    if (e.type === 'machine.state' && e.data?.to === 'provisioning') {
      if (row) setFailure(e.machineId, row, null)
      else failuresKnown.delete(e.machineId)
    }
    if (row && (!row.event || e.seq > row.event.seq)) {
      row.event = e
      if (inJob(e.machineId)) jobRows.add(e.machineId)
      else renderRow(e.machineId)
    }
  })

  markSort()

  // Start listening before the first read, so a machine that changes while the page loads is not missed.
  void Promise.race([stream.opened(), new Promise((r) => setTimeout(r, 3000))]).then(() => {
    if (!disposed) void load(null)
  })

  return {
    el,
    dispose() {
      disposed = true
      unsubscribe()
      clearTimeout(refreshTimer)
      clearTimeout(countsTimer)
      clearTimeout(typing)
      for (const t of confirming.values()) clearTimeout(t)
    },
  }
}
