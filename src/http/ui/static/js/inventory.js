// The inventory page: one server-side page of machines (never the whole inventory), filters by state, label
// and text, counts per state, and live updates from the event stream: new machines appear, changed ones update
// in place and flash.
import { ApiError } from './api.js'
import { flash, h, machineHref, replace } from './dom.js'
import { ago, fullTime, memory } from './format.js'
import { labelEntries, labelsMatch, parseLabelFilter } from './labels.js'
import { classify, lastFailure } from './phases.js'

export const STATES = ['new', 'discovered', 'ready', 'provisioning', 'installed', 'released', 'maintenance', 'failed']
const PAGE_SIZES = [50, 100, 200, 500]
/** Machine changes are fetched in batches at most this often; boot events update their cell at once. */
const REFRESH_MS = 300
const COUNTS_MS = 1500
/** Timeline events read to find where a failed machine failed, and such reads at once. */
const FAILURE_TIMELINE = 100
const FAILURE_READS = 4

/** Filters from the hash's query: #/?state=ready&label=rack%3Dr12&q=abc&limit=100. */
export function readFilters(params) {
  const limit = Number(params.get('limit'))
  return {
    state: params.getAll('state').flatMap((s) => s.split(',')).filter((s) => STATES.includes(s)),
    label: params.getAll('label').flatMap(parseLabelFilter),
    q: (params.get('q') ?? '').trim(),
    limit: PAGE_SIZES.includes(limit) ? limit : 100,
  }
}

function filterHash(f) {
  const p = new URLSearchParams()
  for (const s of f.state) p.append('state', s)
  for (const l of f.label) p.append('label', l)
  if (f.q) p.set('q', f.q)
  if (f.limit !== 100) p.set('limit', String(f.limit))
  const s = p.toString()
  return s ? `#/?${s}` : '#/'
}

/** The same test the server applies, for machines that appear while the page is open. */
function matchesFilters(m, f) {
  if (f.state.length && !f.state.includes(m.state)) return false
  if (!labelsMatch(m.labels, f.label)) return false
  if (f.q) {
    const t = f.q.toLowerCase()
    const hay = [m.id, m.name, m.serial, m.uuid, ...(m.nics ?? []).map((n) => n.mac)].filter(Boolean)
    if (!hay.some((s) => String(s).toLowerCase().includes(t))) return false
  }
  return true
}

const dash = (v) => (v === null || v === undefined || v === '' ? '—' : String(v))

const when = (event) => h('time', { datetime: event.at, title: fullTime(event.at), dataset: { ago: event.at } }, ago(event.at))

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
    name: [h('a', { href: machineHref(m.id) }, m.name ?? m.id), m.name ? h('div', { class: 'sub' }, m.id) : null],
    state: h('span', { class: `state state-${m.state}` }, m.state),
    power: powerCell(m),
    serial: dash(m.serial),
    model: [m.manufacturer, m.product].filter(Boolean).join(' ') || '—',
    cpus: dash(hw?.cpuCores),
    memory: hw?.memoryBytes ? memory(hw.memoryBytes) : '—',
    disks: hw ? `${hw.diskCount}${hw.nvmeCount ? ` (${hw.nvmeCount} NVMe)` : ''}` : '—',
    macs: m.nics.length ? h('ul', { class: 'plain mono' }, m.nics.map((n) => h('li', null, n.mac))) : '—',
    labels: labelEntries(m.labels).length
      ? h('ul', { class: 'chips' }, labelEntries(m.labels).map(([k, v]) => h('li', { class: 'chip' }, `${k}=${v}`)))
      : '',
    last: lastEventCell(event, m, failure),
  }
}

/** The power state the BMC last reported (polled by the server); "?" when the last read failed, blank without a BMC. */
function powerCell(m) {
  if (!m.bmc) return h('span', { class: 'power power-none', title: 'no BMC in the inventory' }, '—')
  const p = m.power
  if (!p) return h('span', { class: 'power power-unknown', title: `${m.bmc.type} BMC ${m.bmc.address}: not read yet` }, '…')
  const checked = p.checkedAt ? ` (checked ${new Date(p.checkedAt).toLocaleString()})` : ''
  if (!p.state) return h('span', { class: 'power power-unknown', title: `${p.error ?? 'the BMC did not answer'}${checked}` }, '?')
  return h('span', { class: `power power-${p.state}`, title: `${m.bmc.type} BMC ${m.bmc.address}${checked}` }, p.state)
}

const COLUMNS = [
  ['name', 'Name'], ['state', 'State'], ['power', 'Power'], ['serial', 'Serial'], ['model', 'Manufacturer / product'], ['cpus', 'CPUs'],
  ['memory', 'Memory'], ['disks', 'Disks'], ['macs', 'MACs'], ['labels', 'Labels'], ['last', 'Last event'],
]

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
  const table = h('table', { class: 'machines' },
    h('caption', { class: 'visually-hidden' }, 'Machines'),
    h('thead', null, h('tr', null, COLUMNS.map(([key, label]) => h('th', { scope: 'col', class: `col-${key}` }, label)))),
    tbody)
  const prevBtn = h('button', { type: 'button', onclick: () => go(previous.pop() ?? null, false) }, '← Previous')
  const nextBtn = h('button', { type: 'button', onclick: () => go(next, true) }, 'Next →')
  const pageInfo = h('span', { class: 'page-info' })

  // Filters: applied as the user types (debounced), kept in the address so a view can be shared.
  const stateSelect = h('select', { id: 'f-state', name: 'state' },
    h('option', { value: '' }, 'any state'),
    STATES.map((s) => h('option', { value: s, selected: filters.state.length === 1 && filters.state[0] === s }, s)))
  const labelInput = h('input', { id: 'f-label', name: 'label', type: 'text', placeholder: 'rack=r12 role=db', value: filters.label.join(' '), autocomplete: 'off', spellcheck: 'false' })
  const searchInput = h('input', { id: 'f-q', name: 'q', type: 'search', placeholder: 'name, serial, MAC, UUID, id', value: filters.q, autocomplete: 'off', spellcheck: 'false' })
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
  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter machines', onsubmit: (e) => { e.preventDefault(); applyFilters() } },
    h('label', { for: 'f-state' }, 'State'), stateSelect,
    h('label', { for: 'f-label' }, 'Labels'), labelInput,
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
    countsEl, queueEl, form, errorEl, status,
    h('div', { class: 'table-wrap' }, table),
    h('nav', { class: 'pager', 'aria-label': 'Pages' }, prevBtn, pageInfo, nextBtn))

  function showError(err) {
    errorEl.hidden = !err
    replace(errorEl, err ? (err instanceof ApiError ? err.advice : String(err?.message ?? err)) : '')
  }

  function renderRow(id, { fresh = false, quiet = false } = {}) {
    const row = rows.get(id)
    const c = cells(row.machine, row.event, row.failure)
    const keyOf = (k) => (k === 'last' ? `${row.event?.seq ?? ''} ${row.machine.state === 'failed' ? row.failure?.seq ?? '' : ''}` : JSON.stringify(k === 'name' ? [row.machine.name, row.machine.id] : c[k] instanceof Node ? c[k].textContent : c[k]))
    if (!row.tr) {
      row.tr = h('tr', { dataset: { id } }, COLUMNS.map(([k]) => h('td', { class: `col-${k}`, dataset: { col: k } }, c[k])))
      row.key = Object.fromEntries(COLUMNS.map(([k]) => [k, keyOf(k)]))
      if (fresh) {
        row.tr.classList.add('is-new')
        row.tr.querySelector('.col-name')?.append(' ', h('span', { class: 'badge' }, 'new'))
        flash(row.tr)
      }
      return row.tr
    }
    for (const [k] of COLUMNS) {
      const key = keyOf(k)
      if (key === row.key[k]) continue
      row.key[k] = key
      const td = row.tr.querySelector(`td[data-col="${k}"]`)
      replace(td, c[k])
      if (!quiet) flash(td)
    }
    row.tr.classList.toggle('left-filter', !matchesFilters(row.machine, filters))
    row.tr.title = row.tr.classList.contains('left-filter') ? 'no longer matches the filter' : ''
    return row.tr
  }

  async function loadCounts() {
    try {
      const c = await api.get('/overview/counts', { label: filters.label, q: filters.q || undefined })
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
      const q = await api.get('/overview/queue')
      if (disposed) return
      queueEl.hidden = q.items.length === 0
      replace(queueEl, q.items.length === 0 ? '' : [
        `${q.items.length.toLocaleString()} waiting for an install slot: `,
        q.items.slice(0, 10).flatMap((item, i) => [i ? ', ' : '', h('a', { href: machineHref(item.machineId) }, `${item.position}. ${item.machineId}`), item.rack ? ` (rack ${item.rack})` : '']),
        q.items.length > 10 ? ', …' : '',
      ])
    } catch (err) {
      if (!disposed) showError(err)
    }
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
      const page = await api.get('/machines', {
        state: filters.state.join(',') || undefined, label: filters.label, q: filters.q || undefined,
        limit: filters.limit, cursor: at ?? undefined,
      })
      const latest = page.items.length
        ? await api.get('/overview/latest-events', { machine: page.items.map((m) => m.id).join(',') })
        : { items: [] }
      if (disposed || mine !== generation) return
      const events = new Map(latest.items.map((i) => [i.machineId, i.event]))
      rows.clear()
      added = 0
      for (const m of page.items) {
        const event = events.get(m.id) ?? null
        const known = failuresKnown.get(m.id) ?? null
        const failure = event?.type === 'boot.failure' && (!known || event.seq > known.seq) ? event : known
        rows.set(m.id, { machine: m, event, failure, tr: null, key: null })
      }
      replace(tbody, [...rows.keys()].map((id) => renderRow(id)))
      for (const m of page.items) if (m.state === 'failed') findFailure(m.id)
      next = page.next
      showError(null)
      const pageNo = previous.length + 1
      status.textContent = page.items.length
        ? `Page ${pageNo}: ${page.items.length} machine${page.items.length === 1 ? '' : 's'}${next ? ' (more on the next pages)' : ''}, by id. New machines appear at the top of page 1.`
        : 'No machine matches.'
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
      await Promise.all(ids.map(async (mid) => {
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
            renderRow(mid)
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
      }))
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
      if (row) scheduleRefresh(e.machineId)
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
      renderRow(e.machineId)
    }
  })

  // Times read "3 min ago": keep them true while the page stays open.
  const ticker = setInterval(() => {
    for (const t of tbody.querySelectorAll('time[data-ago]')) t.textContent = ago(t.dataset.ago)
  }, 15_000)

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
      clearInterval(ticker)
    },
  }
}
