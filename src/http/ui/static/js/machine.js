// One machine: identity and hardware facts, labels (edit), accept, failures (the repair ladder; retry, maintenance
// or replace a failed machine), power, the boot timeline (live) and the kernel log tail.
import { ApiError } from './api.js'
import { flash, h, machineHref, replace } from './dom.js'
import { ago, clock, diskSize, fullTime, memory, visible } from './format.js'
import { labelEntries } from './labels.js'
import { repairLadder } from './phases.js'
import { createTimeline } from './timeline.js'

const TIMELINE = 500
const LOG_POLL_MS = 5000
const LOG_LINES = 1000

const dash = (v) => (v === null || v === undefined || v === '' ? '—' : String(v))

/** A definition list from [term, value] pairs (values may be nodes). */
function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.flatMap(([term, value]) => [h('dt', null, term), h('dd', null, value ?? '—')]))
}

function table(caption, head, rows, empty) {
  if (rows.length === 0) return h('p', { class: 'muted' }, empty)
  return h('div', { class: 'table-wrap' }, h('table', { class: 'grid' },
    h('caption', null, caption),
    h('thead', null, h('tr', null, head.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', null, rows.map((r) => h('tr', null, r.map((c) => h('td', null, c)))))))
}

/** A message area for an action's outcome: errors as alerts, successes as status (text, or nodes such as a link). */
function outcome() {
  const el = h('p', { class: 'outcome', hidden: true })
  return {
    el,
    error(err) {
      el.hidden = false
      el.className = 'outcome error'
      el.setAttribute('role', 'alert')
      el.textContent = visible(err instanceof ApiError ? err.advice : String(err?.message ?? err))
    },
    ok(...content) {
      el.hidden = false
      el.className = 'outcome ok'
      el.setAttribute('role', 'status')
      replace(el, ...content)
    },
    clear() {
      el.hidden = true
      el.textContent = ''
    },
  }
}

/** machineView({ api, stream, id }) → { el, dispose }. */
export function machineView({ api, stream, id }) {
  const path = `/machines/${encodeURIComponent(id)}`
  let machine = null
  let disposed = false
  let refreshTimer = null
  let logTimer = null
  let logCursor = null
  let logLines = []
  const buffered = []
  let loaded = false

  const title = h('h1', { id: 'machine-title', tabindex: '-1' }, id)
  const stateEl = h('span', { class: 'state' })
  const headerSub = h('p', { class: 'sub' })
  const errorEl = h('div', { class: 'error', role: 'alert', hidden: true })
  const actions = h('div', { class: 'actions' })
  const actionOutcome = outcome()
  const identityEl = h('div')
  const hardwareEl = h('div')
  const labelsEl = h('div')
  const labelOutcome = outcome()
  const powerEl = h('div')
  // Failures: the repair ladder of the current provisioning attempt, and what a person does about a failed machine.
  const failuresIntro = h('p', { class: 'failures-intro' })
  const ladderEl = h('ol', { class: 'ladder', 'aria-label': 'Failures and repairs, oldest first' })
  const retryButton = h('button', { type: 'button', class: 'primary', id: 'retry', onclick: () => retry() }, 'Retry')
  const maintenanceButton = h('button', { type: 'button', id: 'maintenance', onclick: () => maintenance() }, 'Maintenance')
  const replaceButton = h('button', { type: 'button', id: 'replace', class: 'danger', onclick: () => replaceMachine() }, 'Replace…')
  const failedActions = h('div', { class: 'buttons failed-actions', hidden: true, role: 'group', 'aria-label': 'What to do with this failed machine' },
    retryButton, maintenanceButton, replaceButton)
  /** One key per page view: a Replace retried after a lost answer is the same replacement, never a second one. */
  const replaceKey = `ui-${[...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('')}`
  const failuresCard = h('section', { class: 'card card-failures', id: 'failures', 'aria-labelledby': 'h-failures', hidden: true },
    h('h2', { id: 'h-failures' }, 'Failures'), failuresIntro, ladderEl, failedActions)
  const timeline = createTimeline({ limit: TIMELINE, onChange: () => renderFailures() })
  const logPre = h('pre', { class: 'kernel-log', tabindex: '0', 'aria-label': 'Kernel log' })
  const logNote = h('p', { class: 'muted small' }, 'Loading…')

  const section = (key, heading, ...body) => h('section', { class: `card card-${key}`, 'aria-labelledby': `h-${key}` }, h('h2', { id: `h-${key}` }, heading), ...body)
  const el = h('article', { class: 'machine', 'aria-labelledby': 'machine-title' },
    h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← Inventory')),
    h('header', { class: 'machine-head' }, title, stateEl, actions),
    headerSub, actionOutcome.el, errorEl,
    failuresCard,
    h('div', { class: 'cards' },
      section('identity', 'Identity', identityEl),
      section('labels', 'Labels', labelsEl, labelOutcome.el),
      section('power', 'Power', powerEl)),
    section('hardware', 'Hardware', hardwareEl),
    section('timeline', 'Boot timeline', timeline.el),
    section('log', 'Kernel log', logNote, logPre))

  function showError(err) {
    errorEl.hidden = !err
    errorEl.textContent = err ? visible(err instanceof ApiError ? err.advice : String(err?.message ?? err)) : ''
  }

  function renderHead(m, changed) {
    title.textContent = visible(m.name ?? m.id)
    const before = stateEl.textContent
    stateEl.className = `state state-${m.state}`
    stateEl.textContent = m.state
    stateEl.dataset.state = m.state
    if (changed && before && before !== m.state) flash(stateEl)
    replace(headerSub, m.name ? [h('span', { class: 'mono' }, m.id), ' · '] : null,
      `in this state since ${fullTime(m.stateChangedAt)} (${ago(m.stateChangedAt)})`)
    const buttons = []
    if (m.state === 'discovered') {
      buttons.push(h('button', { type: 'button', class: 'primary', id: 'accept', onclick: accept }, 'Accept into the pool'))
    }
    replace(actions, buttons)
  }

  function renderIdentity(m) {
    replace(identityEl, facts([
      ['Id', h('span', { class: 'mono' }, m.id)],
      ['Name', dash(m.name)],
      ['Serial', h('span', { class: 'mono', dataset: { fact: 'serial' } }, dash(m.serial))],
      ['UUID', h('span', { class: 'mono', dataset: { fact: 'uuid' } }, dash(m.uuid))],
      ['Manufacturer', dash(m.manufacturer)],
      ['Product', dash(m.product)],
      ['Arch / firmware', `${dash(m.arch)} / ${dash(m.firmware)}`],
      ['Rack', m.rack ? `${m.rack}${m.rackUnit !== null ? ` U${m.rackUnit}` : ''}` : '—'],
      ['Profile', dash(m.profile)],
      ['Allocation', m.allocation
        ? [m.allocation.cluster ? `cluster ${m.allocation.cluster}` : null, m.allocation.role, m.allocation.profile ? `profile ${m.allocation.profile}` : null,
            m.allocation.class ? `class ${m.allocation.class}` : null, `(${m.allocation.allocationId}, ${ago(m.allocation.allocatedAt)})`].filter(Boolean).join(', ')
        : '—'],
      ['Leases', m.leases.length ? m.leases.map((l) => `${l.ip} (${l.mac}, ${l.state})`).join(', ') : '—'],
      ['Hardware reported', m.hardwareReportedAt ? `${fullTime(m.hardwareReportedAt)} (${ago(m.hardwareReportedAt)})` : 'not yet'],
      ['Created', fullTime(m.createdAt)],
    ]))
  }

  function renderHardware(m) {
    const f = m.facts ?? {}
    const cpu = f.cpu ?? {}
    const disks = Array.isArray(f.disks) ? f.disks : []
    const reported = Array.isArray(f.nics) ? f.nics : []
    // The inventory's NICs (boot flag) merged with what the agent saw (driver, link, speed).
    const macs = [...new Set([...m.nics.map((n) => n.mac), ...reported.map((n) => n.mac)])]
    const nicRows = macs.map((mac) => {
      const own = m.nics.find((n) => n.mac === mac)
      const seen = reported.find((n) => n.mac === mac) ?? {}
      return [h('span', { class: 'mono' }, mac), dash(own?.name ?? seen.name), dash(seen.driver),
        seen.link === undefined ? '—' : seen.link ? 'up' : 'down', seen.speedMbps ? `${seen.speedMbps} Mb/s` : '—', own?.boot ? 'boot' : '']
    })
    const smbios = f.smbios && typeof f.smbios === 'object' ? Object.entries(f.smbios) : []
    replace(hardwareEl,
      m.facts ? null : h('p', { class: 'muted' }, 'No hardware report yet: the discovery agent reports it on the first network boot.'),
      facts([
        ['CPU', cpu.model ? String(cpu.model) : '—'],
        ['Sockets / cores / threads', `${dash(cpu.sockets)} / ${dash(cpu.cores)} / ${dash(cpu.threads)}`],
        ['Memory', f.memory?.totalBytes ? memory(f.memory.totalBytes) : '—'],
        ['BMC', bmcLine(m, f)],
      ]),
      table('Disks', ['Device', 'Type', 'Model', 'Size', 'Serial', 'WWN'],
        disks.map((d) => [h('span', { class: 'mono' }, dash(d.name)), dash(d.type ?? (d.rotational ? 'hdd' : null)), dash(d.model), diskSize(d.sizeBytes), h('span', { class: 'mono' }, dash(d.serial)), h('span', { class: 'mono' }, dash(d.wwn))]),
        'No disks reported.'),
      table('Network interfaces', ['MAC', 'Name', 'Driver', 'Link', 'Speed', ''], nicRows, 'No network interfaces known.'),
      smbios.length ? h('details', null, h('summary', null, 'SMBIOS'), facts(smbios.map(([k, v]) => [k, String(v)]))) : null)
  }

  function renderLabels(m) {
    const entries = labelEntries(m.labels)
    const key = h('input', { id: 'label-key', name: 'key', required: true, autocomplete: 'off', spellcheck: 'false', pattern: '[A-Za-z0-9]([A-Za-z0-9._\\/\\-]*[A-Za-z0-9])?', placeholder: 'rack' })
    const value = h('input', { id: 'label-value', name: 'value', autocomplete: 'off', spellcheck: 'false', placeholder: 'r12' })
    replace(labelsEl,
      entries.length
        ? h('ul', { class: 'chips editable' }, entries.map(([k, v]) => h('li', { class: 'chip' }, h('span', null, `${k}=${v}`),
            h('button', { type: 'button', class: 'remove', 'aria-label': `Remove label ${k}`, title: `Remove ${k}`, onclick: () => patchLabels({ [k]: null }, `${k} removed`) }, '×'))))
        : h('p', { class: 'muted' }, 'No labels.'),
      h('form', { class: 'label-form', onsubmit: (e) => {
        e.preventDefault()
        void patchLabels({ [key.value.trim()]: value.value }, `${key.value.trim()}=${value.value} set`)
      } },
      h('label', { for: 'label-key' }, 'Key'), key, h('label', { for: 'label-value' }, 'Value'), value,
      h('button', { type: 'submit' }, 'Set label')))
  }

  async function patchLabels(labels, what) {
    labelOutcome.clear()
    try {
      const m = await api.patch(path, { labels })
      machine = { ...machine, ...m }
      renderLabels(machine)
      labelsEl.querySelector('#label-key')?.focus()
      labelOutcome.ok(`Label ${what}.`)
    } catch (err) {
      labelOutcome.error(err)
    }
  }

  async function accept() {
    actionOutcome.clear()
    const button = actions.querySelector('#accept')
    if (button) button.disabled = true
    try {
      const m = await api.post(`${path}/accept`, undefined)
      machine = { ...machine, ...m }
      renderHead(machine, true)
      actionOutcome.ok(`Accepted: ${m.name ?? m.id} is ${m.state}.`)
    } catch (err) {
      actionOutcome.error(err)
      if (button) button.disabled = false
    }
  }

  /**
   * The Failures card, shown while the current provisioning attempt has boot.failure or boot.repair events: each
   * step of the ladder in order, and for a failed machine what to do about it (retry, maintenance, replace).
   */
  function renderFailures() {
    const card = failuresCard
    const steps = repairLadder(timeline.events())
    const state = machine?.state
    card.hidden = steps.length === 0 && state !== 'failed'
    card.classList.toggle('quarantined', state === 'failed')
    failedActions.hidden = state !== 'failed'
    const failures = steps.filter((s) => s.kind === 'failure').length
    const n = `${failures} failure${failures === 1 ? '' : 's'}`
    replace(failuresIntro,
      state === 'failed'
        ? [h('strong', null, failures ? `Quarantined after ${n}.` : 'Quarantined.'), ' Retry takes it back to provisioning with its failure counts reset; Maintenance takes it out of service; Replace puts a ready machine of the same class and role in its place.']
        : state === 'provisioning'
          ? `${n} in this provisioning attempt. rackboot repairs what it can (next boot PXE, a power cycle through the BMC) and quarantines the machine if it keeps failing.`
          : `${n} in its last provisioning attempt.`)
    replace(ladderEl, steps.map((s) => h('li', { class: `rung rung-${s.status} rung-${s.kind}`, dataset: { kind: s.kind, seq: s.event.seq } },
      h('time', { class: 'mono', datetime: s.event.at, title: fullTime(s.event.at) }, clock(s.event.at)),
      h('span', { class: `phase phase-${s.status}` }, s.label),
      h('span', { class: 'rung-text' }, s.text, s.detail ? h('span', { class: 'rung-detail' }, ` (${s.detail})`) : null))))
  }

  /** Runs one action of the Failures card: its buttons wait, its outcome (or the API's refusal) shows above. */
  async function failedAction(button, run) {
    actionOutcome.clear()
    for (const b of [retryButton, maintenanceButton, replaceButton]) b.disabled = true
    try {
      await run()
    } catch (err) {
      actionOutcome.error(err)
    } finally {
      for (const b of [retryButton, maintenanceButton, replaceButton]) b.disabled = false
    }
    button.focus?.()
  }

  const nameOf = (m) => m.name ?? m.id

  function retry() {
    return failedAction(retryButton, async () => {
      const r = await api.post(`${path}/retry`, {})
      machine = { ...machine, ...r.machine }
      render(machine, true)
      actionOutcome.ok(`Retried: ${nameOf(machine)} is ${machine.state} again with its failure counts reset. `,
        r.power ? `${r.power.message}.` : 'It installs at its next network boot.')
    })
  }

  function maintenance() {
    return failedAction(maintenanceButton, async () => {
      const m = await api.post(`${path}/maintenance`, { on: true, reason: 'failed machine taken out of service from the web UI' })
      machine = { ...machine, ...m }
      render(machine, true)
      actionOutcome.ok(`${nameOf(machine)} is in ${machine.state}: nothing boots it until maintenance is turned off.`)
    })
  }

  function replaceMachine() {
    const what = `Replace ${nameOf(machine)}? A ready machine of the same class and role takes its place in ${machine.allocation?.cluster ? `cluster ${machine.allocation.cluster}` : 'its allocation'}; this machine leaves it and stays quarantined.`
    if (!window.confirm(what)) return
    return failedAction(replaceButton, async () => {
      const r = await api.post(`${path}/replace`, { idempotencyKey: replaceKey })
      const a = r.allocation
      const fresh = a.machines[0]
      void refresh()
      actionOutcome.ok(
        r.replayed ? 'Already replaced: ' : 'Replaced: ',
        fresh ? h('a', { href: machineHref(fresh.id), class: 'replacement', dataset: { id: fresh.id } }, fresh.name ?? fresh.id) : 'a ready machine',
        fresh?.name ? ` (${fresh.id})` : '',
        ` takes its place${a.cluster ? ` in cluster ${a.cluster} as ${a.machines[0]?.role ?? a.role}` : ''} (allocation ${a.id}, profile ${a.profile}). `,
        r.replaced?.action === 'released'
          ? `${nameOf(machine)} is released: its disks are wiped and it returns to the pool.`
          : `${nameOf(machine)} left it and stays quarantined.`)
    })
  }

  function renderPower(m) {
    if (!m.bmc) {
      replace(powerEl, h('p', { class: 'muted' }, 'No BMC in the inventory for this machine: add one (type, address, credentials) to control its power.'))
      return
    }
    const result = outcome()
    const statusEl = h('p', null, `${m.bmc.type} BMC at ${m.bmc.address}. Power state not asked yet.`)
    const check = async () => {
      result.clear()
      statusEl.textContent = 'Asking the BMC…'
      try {
        const p = await api.get(`${path}/power`)
        const o = p.bootOverride
        statusEl.textContent = visible(`Power is ${p.state ?? 'unknown'}${o ? `; next boot ${o.enabled ? `${o.device}${o.mode ? ` (${o.mode})` : ''}${o.persistent ? ', persistent' : ''}` : 'not overridden'}` : ''}.`)
      } catch (err) {
        statusEl.textContent = 'Power state unknown.'
        result.error(err)
      }
    }
    const act = async (action, label) => {
      if (!window.confirm(`${label} ${m.name ?? m.id}?`)) return
      result.clear()
      try {
        const r = await api.post(`${path}/power`, { action })
        result.ok(`${label}: ${r.result}`)
      } catch (err) {
        result.error(err)
      }
    }
    replace(powerEl, statusEl,
      h('div', { class: 'buttons' },
        h('button', { type: 'button', onclick: check }, 'Check power'),
        h('button', { type: 'button', onclick: () => act('on', 'Power on') }, 'On'),
        h('button', { type: 'button', onclick: () => act('soft-off', 'Shut down') }, 'Shut down'),
        h('button', { type: 'button', onclick: () => act('off', 'Power off') }, 'Off'),
        h('button', { type: 'button', onclick: () => act('cycle', 'Power cycle') }, 'Cycle'),
        h('button', { type: 'button', onclick: () => act('pxe', 'PXE boot now') }, 'PXE boot now')),
      result.el)
  }

  function render(m, changed = false) {
    renderHead(m, changed)
    timeline.setState(m.state)
    renderFailures()
    renderIdentity(m)
    renderHardware(m)
    if (!changed || document.activeElement?.closest?.('.card-labels') === null) renderLabels(m)
    if (!changed) renderPower(m)
  }

  async function load() {
    try {
      const m = await api.get(path, { timeline: TIMELINE })
      if (disposed) return
      machine = m
      showError(null)
      render(m)
      timeline.set(m.timeline)
      loaded = true
      const mine = buffered.splice(0).filter((e) => e.machineId === m.id)
      for (const e of mine) timeline.add(e)
      if (mine.some((e) => e.type.startsWith('machine.') || e.type === 'boot.agent')) void refresh()
      void pollLog()
    } catch (err) {
      if (disposed) return
      showError(err)
      if (err instanceof ApiError && err.status === 404) title.textContent = `No machine ${id}`
    }
  }

  async function refresh() {
    try {
      const m = await api.get(path, { timeline: 0 })
      if (disposed) return
      machine = { ...m, timeline: [] }
      render(machine, true)
    } catch (err) {
      if (!disposed) showError(err)
    }
  }

  async function pollLog() {
    clearTimeout(logTimer)
    if (disposed) return
    try {
      const r = await api.get(`${path}/logs`, { limit: 200, since: logCursor ?? undefined })
      if (disposed) return
      if (r.lines.length) {
        const atEnd = logPre.scrollTop + logPre.clientHeight >= logPre.scrollHeight - 4
        // Keep the tail bounded: the whole log stays on the server. A line's control characters show (visible),
        // so only the newlines between lines break it.
        logLines = [...logLines, ...r.lines.map((l) => visible(`${l.talosTime ?? l.receivedAt} ${l.msg}`))].slice(-LOG_LINES)
        logPre.textContent = logLines.join('\n')
        if (atEnd) logPre.scrollTop = logPre.scrollHeight
        logCursor = r.next ?? logCursor
      }
      logNote.textContent = logLines.length
        ? `From ${r.peers.join(', ') || 'the machine'}; newest at the bottom, checked every ${LOG_POLL_MS / 1000} s.`
        : 'No kernel log received yet: Talos sends it (talos.logging.kernel) once it boots.'
      logTimer = setTimeout(pollLog, LOG_POLL_MS)
    } catch (err) {
      if (disposed) return
      if (err instanceof ApiError && err.status === 404 && /no route/.test(err.message)) {
        logNote.textContent = 'This server does not keep kernel logs.'
        logPre.hidden = true
        return
      }
      logNote.textContent = `Kernel log unavailable: ${err instanceof ApiError ? err.advice : err?.message ?? err}`
      logTimer = setTimeout(pollLog, LOG_POLL_MS * 3)
    }
  }

  const unsubscribe = stream.subscribe((e) => {
    // Until the machine is read, its id is not known (the address may name it by MAC or name): keep everything.
    if (!loaded) {
      if (buffered.length < 10_000) buffered.push(e)
      return
    }
    if (e.machineId !== machine.id) return
    timeline.add(e)
    if (e.type.startsWith('machine.') || e.type === 'boot.agent' || e.type === 'boot.script') {
      clearTimeout(refreshTimer)
      refreshTimer = setTimeout(refresh, 250)
    }
  })

  // Listen first, then read: events in between are buffered and merged by seq, none lost or shown twice.
  void Promise.race([stream.opened(), new Promise((r) => setTimeout(r, 3000))]).then(() => {
    if (!disposed) void load()
  })

  return {
    el,
    dispose() {
      disposed = true
      unsubscribe()
      clearTimeout(refreshTimer)
      clearTimeout(logTimer)
    },
  }
}

/** The BMC as configured, and what the discovery agent saw when that differs (with the command that adopts it). */
function bmcLine(m, f) {
  const reported = f.bmc?.address
  const adopt = `rackboot machines bmc adopt ${m.name ?? m.id}`
  if (!m.bmc) return reported ? `${reported} (reported by the agent, not configured: ${adopt} --type ipmi|redfish)` : '—'
  const configured = `${m.bmc.type} ${m.bmc.address}${m.bmc.port ? `:${m.bmc.port}` : ''}`
  const host = m.bmc.address.replace(/^https?:\/\//, '').replace(/[:/].*$/, '')
  return reported && reported !== host ? `${configured} (the agent reported ${reported}: ${adopt})` : configured
}
