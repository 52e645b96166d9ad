// One machine: identity and hardware facts, labels (edit), what a tech does to it (accept, release, maintenance,
// retry, identify, power with its state asked on open and followed after an action), failures (the repair ladder;
// retry, maintenance or replace a failed machine), the boot timeline (live) and the kernel log tail.
// The address names the machine however a tech knows it (#/machines/<id, name, serial, MAC or UUID>): the API
// resolves it; from then on the page uses the id.
import { ApiError } from './api.js'
import { flash, h, machineHref, replace, timeEl } from './dom.js'
import { dateTime, diskSize, machineLabel, machineName, memory, visible } from './format.js'
import { labelEntries } from './labels.js'
import { repairLadder } from './phases.js'
import { canWrite } from './session.js'
import { createTimeline } from './timeline.js'

const TIMELINE = 500
const LOG_POLL_MS = 5000
const LOG_LINES = 1000
/** After a power action the state is read this often, until the BMC shows the state the action leads to... */
export const POWER_POLL_MS = 3000
/** ...or this long has passed (a soft-off waits for the OS to shut down). */
const POWER_WATCH_MS = 120_000
/** The state each power action ends in. */
const POWER_END = { on: 'on', off: 'off', 'soft-off': 'off', cycle: 'on', reset: 'on', pxe: 'on' }
/** Refusals that change nothing at the BMC: no state to follow after them. */
const NOTHING_SENT = new Set([400, 401, 403, 404, 409, 422, 429])
const IDENTIFY_DEFAULT_S = 60

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

const errorText = (err) => visible(err instanceof ApiError ? err.advice : String(err?.message ?? err))

/** A message area for an action's outcome: errors as alerts (the server's own message), successes as status. */
function outcome(id) {
  const el = h('p', { class: 'outcome', hidden: true, ...(id ? { id } : {}) })
  return {
    el,
    error(err) {
      el.hidden = false
      el.className = 'outcome error'
      el.setAttribute('role', 'alert')
      el.textContent = errorText(err)
    },
    ok(...content) {
      el.hidden = false
      el.className = 'outcome ok'
      el.setAttribute('role', 'status')
      replace(el, ...content)
    },
    pending(...content) {
      el.hidden = false
      el.className = 'outcome pending'
      el.setAttribute('role', 'status')
      replace(el, ...content)
    },
    clear() {
      el.hidden = true
      el.textContent = ''
    },
  }
}

/** machineView({ api, stream, id, scopes }) → { el, dispose, resync }. `id` is the reference in the address. */
export function machineView({ api, stream, id: ref, scopes = [] }) {
  const write = canWrite(scopes)
  /** By the reference until the machine is read, then by its id (a name can change, a serial can be shared later). */
  let path = `/machines/${encodeURIComponent(ref)}`
  let machine = null
  let disposed = false
  let refreshTimer = null
  let logTimer = null
  let logCursor = null
  let logLines = []
  const buffered = []
  let loaded = false
  let loading = false
  let loadFailed = false

  const title = h('h1', { id: 'machine-title', tabindex: '-1' }, ref)
  const stateEl = h('span', { class: 'state', hidden: true })
  const headerSub = h('p', { class: 'sub' })
  const loadingEl = h('p', { class: 'loading', role: 'status' }, `Loading machine ${ref}…`)
  const errorEl = h('div', { class: 'error', role: 'alert', hidden: true })
  const actions = h('div', { class: 'actions', role: 'group', 'aria-label': 'Machine actions' })
  const actionOutcome = outcome('action-outcome')
  const identityEl = h('div')
  const hardwareEl = h('div')
  const labelsEl = h('div')
  const labelOutcome = outcome()
  const powerEl = h('div')
  // Failures: the repair ladder of the current provisioning attempt, and what a person does about a failed machine.
  const failuresIntro = h('p', { class: 'failures-intro' })
  const ladderEl = h('ol', { class: 'ladder', 'aria-label': 'Failures and repairs, oldest first' })
  const retryButton = h('button', { type: 'button', class: 'primary', id: 'retry', onclick: () => retry() }, 'Retry')
  const maintenanceButton = h('button', { type: 'button', id: 'maintenance', onclick: () => failedMaintenance() }, 'Maintenance')
  const replaceButton = h('button', { type: 'button', id: 'replace', class: 'danger', onclick: () => replaceMachine() }, 'Replace…')
  const failedActions = h('div', { class: 'buttons failed-actions', hidden: true, role: 'group', 'aria-label': 'What to do with this failed machine' },
    retryButton, maintenanceButton, replaceButton)
  const failedReadOnly = h('p', { class: 'muted readonly-note', hidden: true }, 'This token is read-only: retry, maintenance and replace need a token with the provision scope.')
  /** One key per page view: a Replace retried after a lost answer is the same replacement, never a second one. */
  const replaceKey = `ui-${[...crypto.getRandomValues(new Uint8Array(16))].map((b) => b.toString(16).padStart(2, '0')).join('')}`
  const failuresCard = h('section', { class: 'card card-failures', id: 'failures', 'aria-labelledby': 'h-failures', hidden: true },
    h('h2', { id: 'h-failures' }, 'Failures'), failuresIntro, ladderEl, failedActions, failedReadOnly)
  const timeline = createTimeline({ limit: TIMELINE, onChange: () => renderFailures() })
  const logPre = h('pre', { class: 'kernel-log', tabindex: '0', 'aria-label': 'Kernel log' })
  const logNote = h('p', { class: 'muted small' }, 'Loading…')

  const section = (key, heading, ...body) => h('section', { class: `card card-${key}`, 'aria-labelledby': `h-${key}` }, h('h2', { id: `h-${key}` }, heading), ...body)
  const crumbs = h('p', { class: 'crumbs' }, h('a', { href: '#/' }, '← Inventory'))
  const bodyEl = h('div', { class: 'machine-body', hidden: true },
    failuresCard,
    h('div', { class: 'cards' },
      section('identity', 'Identity', identityEl),
      section('labels', 'Labels', labelsEl, labelOutcome.el),
      section('power', 'Power and BMC', powerEl)),
    section('hardware', 'Hardware', hardwareEl),
    section('timeline', 'Boot timeline', timeline.el),
    section('log', 'Kernel log', logNote, logPre))
  const el = h('article', { class: 'machine', 'aria-labelledby': 'machine-title' },
    crumbs,
    h('header', { class: 'machine-head' }, title, stateEl, actions),
    headerSub, loadingEl, actionOutcome.el, errorEl, bodyEl)

  function showError(err, retryable = false) {
    errorEl.hidden = !err
    if (!err) return replace(errorEl)
    replace(errorEl, errorText(err),
      retryable ? [' ', h('button', { type: 'button', class: 'link', id: 'load-again', onclick: () => void load() }, 'Try again')] : null)
  }

  const nameOf = (m) => machineName(m)

  // ---- head: name, state, and the actions valid for this state and token -----------------------------------------

  function renderHead(m, changed) {
    const label = machineLabel(m)
    title.textContent = visible(label.text)
    title.classList.toggle('unnamed', !label.named)
    document.title = `${visible(label.text)} · rackboot`
    const before = stateEl.textContent
    stateEl.hidden = false
    stateEl.className = `state state-${m.state}`
    stateEl.textContent = m.state
    stateEl.dataset.state = m.state
    if (changed && before && before !== m.state) flash(stateEl)
    replace(headerSub,
      label.named ? null : h('span', { class: 'badge noname' }, `no name: shown by its ${label.by === 'id' ? 'id' : label.by}`), label.named ? null : ' ',
      h('span', { class: 'mono', title: 'id' }, m.id),
      m.serial && label.by !== 'serial' ? [' · serial ', h('span', { class: 'mono' }, m.serial)] : null,
      ' · in this state since ', timeEl(m.stateChangedAt))
    renderActions(m)
  }

  function renderActions(m) {
    if (!write) {
      replace(actions, h('span', { class: 'readonly-note muted', title: 'rackboot tokens create NAME --scope provision' }, 'Read-only token: actions need the provision scope'))
      return
    }
    const buttons = []
    if (m.state === 'discovered') {
      buttons.push(h('button', { type: 'button', class: 'primary', id: 'accept', onclick: accept }, 'Accept into the pool'))
    }
    if (m.state === 'maintenance') {
      buttons.push(h('button', { type: 'button', id: 'maintenance-off', onclick: () => setMaintenance(false) }, 'End maintenance'))
    } else if (m.state !== 'failed') {
      // A failed machine has its own Maintenance in the Failures card.
      buttons.push(h('button', { type: 'button', id: 'maintenance-on', onclick: () => setMaintenance(true) }, 'Maintenance…'))
    }
    if (m.state === 'provisioning' || m.state === 'installed') {
      buttons.push(h('button', { type: 'button', class: 'danger', id: 'release', onclick: release }, 'Release…'))
    }
    replace(actions, buttons)
  }

  /** Runs one header action: its buttons wait, the outcome (or the server's refusal) shows under the title. */
  async function headAction(run) {
    actionOutcome.clear()
    const buttons = [...actions.querySelectorAll('button')]
    for (const b of buttons) b.disabled = true
    try {
      await run()
    } catch (err) {
      actionOutcome.error(err)
      for (const b of buttons) b.disabled = false
    }
  }

  const merge = (m) => {
    machine = { ...machine, ...m }
    render(machine, true)
  }

  function accept() {
    return headAction(async () => {
      const m = await api.post(`${path}/accept`, undefined)
      merge(m)
      actionOutcome.ok(`Accepted: ${nameOf(machine)} is ${machine.state}.`)
    })
  }

  function setMaintenance(on) {
    const name = nameOf(machine)
    if (on && !window.confirm(`Take ${name} out of service (maintenance)? Nothing boots it until maintenance is turned off.`)) return
    return headAction(async () => {
      const m = await api.post(`${path}/maintenance`, { on, reason: on ? 'taken out of service from the web UI' : 'back in service from the web UI' })
      merge(m)
      actionOutcome.ok(on
        ? `${name} is in maintenance: nothing boots it until maintenance is turned off.`
        : `${name} is back in service: ${machine.state}.`)
    })
  }

  function release() {
    const name = nameOf(machine)
    const what = `Release ${name}? It leaves its ${machine.allocation?.cluster ? `cluster ${machine.allocation.cluster}` : 'allocation'} and its disks will be WIPED: ` +
      `the discovery agent erases them at its next network boot${machine.bmc ? ' (rackboot PXE-boots it now through its BMC)' : ''}, then it returns to the pool. Everything on it is lost.`
    if (!window.confirm(what)) return
    return headAction(async () => {
      const r = await api.post(`${path}/release`, {})
      merge(r.machine)
      actionOutcome.ok(r.released ? `Released: ${name} is ${machine.state}; its disks are wiped at its next network boot. ` : `${name} was already released. `,
        r.power ? `${r.power.message}.` : '')
      // The release PXE-booted it through the BMC: the power card reads what that did.
      if (r.power && machine.bmc) void checkPower()
    })
  }

  // ---- identity, hardware, labels -----------------------------------------------------------------------------

  function renderIdentity(m) {
    replace(identityEl, facts([
      ['Id', h('span', { class: 'mono', dataset: { fact: 'id' } }, m.id)],
      ['Name', dash(m.name)],
      ['Serial', h('span', { class: 'mono', dataset: { fact: 'serial' } }, dash(m.serial))],
      ['UUID', h('span', { class: 'mono', dataset: { fact: 'uuid' } }, dash(m.uuid))],
      ['IP', m.ip
        ? [h('span', { class: 'mono', dataset: { fact: 'ip' } }, m.ip), m.ipSource ? ` (DHCP ${m.ipSource})` : '']
        : h('span', { class: 'mono', dataset: { fact: 'ip' } }, dash(m.leases?.[0]?.ip))],
      ['Manufacturer', dash(m.manufacturer)],
      ['Product', dash(m.product)],
      ['Arch / firmware', `${dash(m.arch)} / ${dash(m.firmware)}`],
      ['Rack', m.rack ? `${m.rack}${m.rackUnit !== null && m.rackUnit !== undefined ? ` U${m.rackUnit}` : ''}` : '—'],
      ['Class', h('span', { dataset: { fact: 'class' } }, dash(m.class ?? m.allocation?.class))],
      ['Profile', h('span', { dataset: { fact: 'profile' } }, m.profile ? m.profile
        : m.effectiveProfile ? `${m.effectiveProfile} (from class ${m.class ?? '?'})` : dash(m.allocation?.profile))],
      ['Allocation', m.allocation
        ? [[m.allocation.cluster ? `cluster ${m.allocation.cluster}` : null, m.allocation.role, m.allocation.profile ? `profile ${m.allocation.profile}` : null,
            m.allocation.class ? `class ${m.allocation.class}` : null, m.allocation.allocationId].filter(Boolean).join(', '), ', since ', timeEl(m.allocation.allocatedAt)]
        : '—'],
      ['Leases', m.leases?.length ? m.leases.map((l) => `${l.ip} (${l.mac}, ${l.state})`).join(', ') : '—'],
      ['Hardware reported', m.hardwareReportedAt ? timeEl(m.hardwareReportedAt) : 'not yet'],
      ['Created', timeEl(m.createdAt)],
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
    if (!write) {
      replace(labelsEl, entries.length
        ? h('ul', { class: 'chips' }, entries.map(([k, v]) => h('li', { class: 'chip' }, `${k}=${v}`)))
        : h('p', { class: 'muted' }, 'No labels.'))
      return
    }
    const key = h('input', { id: 'label-key', name: 'key', required: true, autocomplete: 'off', spellcheck: 'false', pattern: '[A-Za-z0-9]([A-Za-z0-9._\\/\\-]*[A-Za-z0-9])?', placeholder: 'role' })
    const value = h('input', { id: 'label-value', name: 'value', autocomplete: 'off', spellcheck: 'false', placeholder: 'db' })
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

  // ---- failures ---------------------------------------------------------------------------------------------------

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
    failedActions.hidden = state !== 'failed' || !write
    failedReadOnly.hidden = state !== 'failed' || write
    const failures = steps.filter((s) => s.kind === 'failure').length
    const n = `${failures} failure${failures === 1 ? '' : 's'}`
    replace(failuresIntro,
      state === 'failed'
        ? [h('strong', null, failures ? `Quarantined after ${n}.` : 'Quarantined.'), ' Retry takes it back to provisioning with its failure counts reset; Maintenance takes it out of service; Replace puts a ready machine of the same class and role in its place.']
        : state === 'provisioning'
          ? `${n} in this provisioning attempt. rackboot repairs what it can (next boot PXE, a power cycle through the BMC) and quarantines the machine if it keeps failing.`
          : `${n} in its last provisioning attempt.`)
    replace(ladderEl, steps.map((s) => h('li', { class: `rung rung-${s.status} rung-${s.kind}`, dataset: { kind: s.kind, seq: s.event.seq } },
      timeEl(s.event.at, { class: 'mono' }),
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

  function retry() {
    return failedAction(retryButton, async () => {
      const r = await api.post(`${path}/retry`, {})
      merge(r.machine)
      actionOutcome.ok(`Retried: ${nameOf(machine)} is ${machine.state} again with its failure counts reset. `,
        r.power ? `${r.power.message}.` : 'It installs at its next network boot.')
      if (r.power && machine.bmc) void checkPower()
    })
  }

  function failedMaintenance() {
    return failedAction(maintenanceButton, async () => {
      const m = await api.post(`${path}/maintenance`, { on: true, reason: 'failed machine taken out of service from the web UI' })
      merge(m)
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
        fresh ? h('a', { href: machineHref(fresh.id), class: 'replacement', dataset: { id: fresh.id } }, machineName(fresh)) : 'a ready machine',
        fresh?.name ? ` (${fresh.id})` : '',
        ` takes its place${a.cluster ? ` in cluster ${a.cluster} as ${a.machines[0]?.role ?? a.role}` : ''} (allocation ${a.id}, profile ${a.profile}). `,
        r.replaced?.action === 'released'
          ? `${nameOf(machine)} is released: its disks are wiped and it returns to the pool.`
          : `${nameOf(machine)} left it and stays quarantined.`)
    })
  }

  // ---- power and BMC ----------------------------------------------------------------------------------------------

  /** What the page knows of the power state: from a read, an action's answer or the server's poller. */
  let power = { state: null, checkedAt: null, bootOverride: undefined, error: null, lastKnown: null, asking: false }
  /** An action being followed: { action, label, expect, until, started }. */
  let powerWatch = null
  let powerTimer = null
  let powerReads = 0
  const powerStateEl = h('p', { class: 'power-state', id: 'power-state', role: 'status' })
  const powerWatchEl = h('p', { class: 'power-watch muted small', id: 'power-watch', hidden: true })
  const powerResult = outcome('power-result')
  const identifyResult = outcome('identify-result')
  const powerButtons = h('div', { class: 'buttons power-buttons', role: 'group', 'aria-label': 'Power actions' })
  const identifySeconds = h('input', { id: 'identify-seconds', type: 'number', min: '1', max: '3600', step: '1', value: String(IDENTIFY_DEFAULT_S), placeholder: 'until off',
    'aria-label': 'Seconds to blink (empty: until turned off)', title: 'Empty: on until turned off. IPMI lights stay on at most 255 s; Redfish lights have no timer (on until turned off).' })

  function renderPowerCard(m) {
    if (!m.bmc) {
      replace(powerEl, h('p', { class: 'muted no-bmc', id: 'no-bmc' },
        'No BMC in the inventory for this machine: rackboot cannot read or change its power, or blink its identify light. ',
        'Add one (type, address, credentials) with ', h('code', null, `rackboot machines bmc set ${m.name ?? m.id} …`), '.'))
      return
    }
    replace(powerEl,
      h('p', { class: 'bmc-line muted small' }, `${m.bmc.type} BMC at ${m.bmc.address}`),
      powerStateEl, powerWatchEl, powerButtons, powerResult.el,
      write
        ? h('div', { class: 'identify', role: 'group', 'aria-labelledby': 'identify-label' },
            h('span', { id: 'identify-label', class: 'identify-label' }, 'Identify light'),
            h('button', { type: 'button', id: 'identify-on', onclick: () => identify(true) }, 'Blink for'), identifySeconds, h('span', null, 's'),
            h('button', { type: 'button', id: 'identify-off', onclick: () => identify(false) }, 'Off'))
        : null,
      identifyResult.el)
    renderPower()
  }

  /** The power line and the buttons that make sense for the state (On when off, Off when on, all when unknown). */
  function renderPower() {
    const s = power.state
    const o = power.bootOverride
    powerStateEl.dataset.power = power.asking && !s ? 'asking' : s ?? 'unknown'
    powerStateEl.toggleAttribute('data-asking', power.asking)
    if (s) {
      replace(powerStateEl,
        'Power is ', h('strong', { class: `power power-${s}` }, s),
        o === undefined ? '' : o === null ? '' : `; next boot ${o.enabled ? `${o.device}${o.mode ? ` (${o.mode})` : ''}${o.persistent ? ', every boot' : ''}` : 'as the firmware says (no override)'}`,
        power.checkedAt ? [' (checked ', timeEl(power.checkedAt), ')'] : '',
        power.asking ? ' · asking the BMC…' : '')
    } else if (power.error) {
      const known = power.lastKnown
      replace(powerStateEl,
        h('strong', { class: 'power power-unknown' }, 'Power state unknown'), `: ${errorText(power.error)}`,
        known?.state ? [` Last known: ${known.state} (`, timeEl(known.at), ').'] : '',
        power.asking ? ' · asking the BMC again…' : '')
    } else {
      replace(powerStateEl, 'Asking the BMC for the power state…')
    }
    const make = (id, label, action, confirm, cls = '') => h('button', {
      type: 'button', id, class: cls, dataset: { action },
      onclick: () => powerAction(action, label, confirm),
    }, label)
    const name = machine ? nameOf(machine) : ref
    const acts = !write ? [] : [
      s !== 'on' ? make('power-on', 'Power on', 'on', null, 'primary') : null,
      s !== 'off' ? make('power-soft-off', 'Shut down', 'soft-off', `Shut down ${name}? The BMC presses the power button; the OS shuts down.`) : null,
      s !== 'off' ? make('power-off', 'Power off', 'off', `Power off ${name} now? The OS is not asked: unsaved work is lost.`) : null,
      s !== 'off' ? make('power-cycle', 'Power cycle', 'cycle', `Power cycle ${name}? It is switched off and on again at once.`) : null,
      make('power-pxe', 'PXE boot now', 'pxe', `PXE boot ${name} now? Its next boot is set to the network and it is ${s === 'off' ? 'powered on' : 'power cycled'}.`),
    ]
    const busy = powerButtons.dataset.busy === 'true'
    replace(powerButtons, acts, h('button', { type: 'button', id: 'power-check', onclick: () => void checkPower(), disabled: power.asking }, 'Check now'))
    if (busy) for (const b of powerButtons.querySelectorAll('button[data-action]')) b.disabled = true
  }

  function setPower(next) {
    power = { ...power, ...next }
    if (machine?.bmc) renderPower()
  }

  /** Asks the BMC (through the API) for the power state and next-boot override now. */
  async function checkPower() {
    if (!machine?.bmc || disposed) return
    const mine = ++powerReads
    setPower({ asking: true })
    try {
      const p = await api.get(`${path}/power`)
      if (disposed || mine !== powerReads) return
      setPower({ state: p.state, checkedAt: p.checkedAt, bootOverride: p.bootOverride ?? null, error: null, asking: false })
    } catch (err) {
      if (disposed || mine !== powerReads) return
      setPower({ state: null, error: err, lastKnown: err instanceof ApiError ? err.details?.lastKnown ?? null : null, asking: false })
    }
  }

  /**
   * After an action: read the state every POWER_POLL_MS until the BMC shows the state the action leads to, or
   * POWER_WATCH_MS passed; while the page is open (dispose stops it).
   */
  function followPower(action, label) {
    clearTimeout(powerTimer)
    const expect = POWER_END[action]
    if (!expect) return
    powerWatch = { action, label, expect, started: Date.now(), until: Date.now() + POWER_WATCH_MS }
    void tick()
  }

  async function tick() {
    clearTimeout(powerTimer)
    const w = powerWatch
    if (disposed || !w) return
    await checkPower()
    if (disposed || powerWatch !== w) return
    powerWatchEl.hidden = false
    if (power.state === w.expect) {
      powerWatchEl.textContent = `${w.label}: the BMC shows it ${w.expect}.`
      powerWatchEl.dataset.watch = 'done'
      powerWatch = null
      return
    }
    if (Date.now() >= w.until) {
      powerWatchEl.textContent = `${w.label}: after ${Math.round((Date.now() - w.started) / 1000)} s the BMC still does not show it ${w.expect}. Check again later, or look at the BMC.`
      powerWatchEl.dataset.watch = 'timeout'
      powerWatch = null
      return
    }
    powerWatchEl.textContent = `${w.label}: waiting for the BMC to show it ${w.expect}; checking every ${POWER_POLL_MS / 1000} s…`
    powerWatchEl.dataset.watch = 'waiting'
    powerTimer = setTimeout(tick, POWER_POLL_MS)
  }

  async function powerAction(action, label, confirmText) {
    if (confirmText && !window.confirm(confirmText)) return
    powerResult.clear()
    powerWatch = null
    clearTimeout(powerTimer)
    powerWatchEl.hidden = true
    powerButtons.dataset.busy = 'true'
    for (const b of powerButtons.querySelectorAll('button[data-action]')) b.disabled = true
    powerResult.pending(`${label}: sent to the BMC, waiting for it to report the result…`)
    let follow = true
    try {
      const r = await api.post(`${path}/power`, { action })
      if (disposed) return
      powerResult.ok(`${label}: ${r.result}${r.note ? ` (${r.note})` : ''}`)
      if (r.state) setPower({ state: r.state, checkedAt: new Date().toISOString(), error: null })
      if (r.bootOverride !== undefined && r.bootOverride !== null) setPower({ bootOverride: r.bootOverride })
    } catch (err) {
      if (disposed) return
      powerResult.error(err)
      follow = !(err instanceof ApiError && NOTHING_SENT.has(err.status))
    } finally {
      powerButtons.dataset.busy = 'false'
      if (!disposed) renderPower()
    }
    if (follow) followPower(action, label)
  }

  /** Identify light on (for the seconds given; empty: until turned off) or off; the server's line says what it did. */
  async function identify(on) {
    identifyResult.clear()
    const raw = identifySeconds.value.trim()
    const seconds = raw === '' ? null : Number(raw)
    if (on && seconds !== null && !(Number.isInteger(seconds) && seconds >= 1)) {
      identifyResult.error(new Error('How long to blink: a whole number of seconds (1 or more), or empty for until turned off.'))
      identifySeconds.focus()
      return
    }
    const buttons = powerEl.querySelectorAll('.identify button')
    for (const b of buttons) b.disabled = true
    try {
      const r = await api.post(`${path}/identify`, on ? { on: true, ...(seconds !== null ? { seconds } : {}) } : { on: false })
      if (disposed) return
      const where = machine.rack ? ` Look for it in rack ${machine.rack}${machine.rackUnit !== null && machine.rackUnit !== undefined ? ` U${machine.rackUnit}` : ''}.` : ''
      identifyResult.ok(`Identify: ${r?.result ?? (on ? 'light on' : 'light off')}${r?.note ? `. ${r.note}` : ''}.${on ? where : ''}`)
    } catch (err) {
      if (!disposed) identifyResult.error(err)
    } finally {
      for (const b of buttons) b.disabled = false
    }
  }

  // ---- loading, live updates ------------------------------------------------------------------------------------

  function render(m, changed = false) {
    renderHead(m, changed)
    timeline.setState(m.state)
    renderFailures()
    renderIdentity(m)
    renderHardware(m)
    if (!changed || document.activeElement?.closest?.('.card-labels') === null) renderLabels(m)
  }

  async function load() {
    if (loading || disposed) return
    loading = true
    loadingEl.hidden = false
    loadingEl.textContent = `Loading machine ${ref}…`
    try {
      const m = await api.get(path, { timeline: TIMELINE })
      if (disposed) return
      machine = m
      path = `/machines/${encodeURIComponent(m.id)}`
      loadFailed = false
      showError(null)
      loadingEl.hidden = true
      bodyEl.hidden = false
      render(m)
      // What the server's poller saw last, shown at once while the BMC is asked again.
      if (m.power?.state) power = { ...power, state: m.power.state, checkedAt: m.power.checkedAt ?? null }
      renderPowerCard(m)
      timeline.set(m.timeline)
      loaded = true
      const mine = buffered.splice(0).filter((e) => e.machineId === m.id)
      for (const e of mine) timeline.add(e)
      if (mine.some((e) => e.type.startsWith('machine.') || e.type === 'boot.agent')) void refresh()
      void pollLog()
      void checkPower()
    } catch (err) {
      if (disposed) return
      loadFailed = true
      if (err instanceof ApiError && err.status === 404) {
        notFound(err)
        return
      }
      loadingEl.textContent = `Could not load machine ${ref}.`
      if (err instanceof ApiError && err.status === 409) {
        // A serial that several machines have: the server names them; the search lists them.
        errorEl.hidden = false
        replace(errorEl, errorText(err), ' ', h('a', { href: `#/?q=${encodeURIComponent(ref)}`, id: 'search-ref' }, `List the machines matching “${ref}”`))
        return
      }
      showError(err, true)
    } finally {
      loading = false
    }
  }

  /** No machine by that reference: say so, and where to go, instead of a page that never finishes loading. */
  function notFound(err) {
    document.title = `No machine ${visible(ref)} · rackboot`
    title.textContent = visible(`No machine named ${ref}`)
    title.classList.add('not-found')
    stateEl.hidden = true
    replace(actions)
    replace(headerSub)
    loadingEl.hidden = true
    bodyEl.hidden = true
    errorEl.hidden = false
    errorEl.className = 'not-found-box'
    replace(errorEl,
      h('p', null, `rackboot knows no machine by the id, name, serial, MAC or UUID “${ref}”. `,
        'It may have been deleted, or it has not network-booted yet (a machine appears when it first boots).'),
      h('p', { class: 'muted small' }, `The server said: ${err.message}`),
      h('p', { class: 'links' },
        h('a', { href: '#/', id: 'back-to-inventory' }, '← Back to the inventory'), ' · ',
        h('a', { href: `#/?q=${encodeURIComponent(ref)}` }, `Search the inventory for “${ref}”`)))
  }

  async function refresh() {
    try {
      const m = await api.get(path, { timeline: 0 })
      if (disposed) return
      const hadBmc = Boolean(machine?.bmc)
      machine = { ...m, timeline: [] }
      render(machine, true)
      if (Boolean(m.bmc) !== hadBmc) {
        renderPowerCard(m)
        void checkPower()
      }
    } catch (err) {
      if (disposed) return
      if (err instanceof ApiError && err.status === 404) {
        showError(new Error(`${nameOf(machine)} is no longer in the inventory (deleted). What the page shows is what it was.`))
        bodyEl.classList.add('gone')
        return
      }
      showError(err)
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
        logLines = [...logLines, ...r.lines.map((l) => visible(`${dateTime(l.talosTime ?? l.receivedAt) || l.talosTime || l.receivedAt} ${l.msg}`))].slice(-LOG_LINES)
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
    // Until the machine is read, its id is not known (the address may name it by serial, MAC or name): keep everything.
    if (!loaded) {
      if (buffered.length < 10_000) buffered.push(e)
      return
    }
    if (e.machineId !== machine.id) return
    timeline.add(e)
    // The server's poller (or an action elsewhere) saw the power state: the card follows without asking the BMC.
    if (e.type === 'power' && (e.data?.state === 'on' || e.data?.state === 'off') && machine.bmc) {
      setPower({ state: e.data.state, checkedAt: e.at, error: null })
      if (powerWatch && e.data.state === powerWatch.expect) void tick()
    }
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
    /** The event stream is back after the server was lost: read again what may have changed meanwhile. */
    resync() {
      if (disposed) return
      if (!loaded) {
        if (loadFailed) void load()
        return
      }
      void refresh()
      void checkPower()
    },
    dispose() {
      disposed = true
      powerWatch = null
      unsubscribe()
      clearTimeout(refreshTimer)
      clearTimeout(logTimer)
      clearTimeout(powerTimer)
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
