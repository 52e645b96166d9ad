// Where in the boot an event belongs, and whether it went wrong: the timeline's reading of rackboot's events
// (boot.dhcp, boot.tftp, boot.script, boot.asset, boot.agent, boot.config, boot.talos, boot.failure, boot.repair,
// machine.*, power), and the repair ladder of a provisioning attempt (failures, repairs, quarantine).
// Pure functions of the events, so they are tested without a browser.
import { duration } from './format.js'

/** The steps of a network boot, in the order a machine goes through them. */
export const PHASES = [
  { key: 'dhcp', label: 'DHCP' },
  { key: 'tftp', label: 'TFTP' },
  { key: 'script', label: 'iPXE script' },
  { key: 'kernel', label: 'Kernel' },
  { key: 'initramfs', label: 'Initramfs' },
  { key: 'agent', label: 'Discovery agent' },
  { key: 'config', label: 'Config fetch' },
  { key: 'talos', label: 'Talos' },
  { key: 'install', label: 'Install' },
]
const LABEL = Object.fromEntries(PHASES.map((p) => [p.key, p.label]))
const ORDER = Object.fromEntries(PHASES.map((p, i) => [p.key, i]))

/** The phases a boot goes through for what its script decided. */
export function pathFor(decision) {
  if (decision === 'discovery') return ['dhcp', 'tftp', 'script', 'kernel', 'initramfs', 'agent']
  if (decision === 'install') return ['dhcp', 'tftp', 'script', 'kernel', 'initramfs', 'config', 'talos', 'install']
  return ['dhcp', 'tftp', 'script']
}

function assetPhase(path) {
  const file = String(path ?? '').split('/').pop() ?? ''
  if (/^(vmlinuz|kernel|bzimage|linux)/i.test(file)) return 'kernel'
  if (/(initramfs|initrd|\.img$|\.cpio)/i.test(file)) return 'initramfs'
  if (/(ipxe|\.efi$|\.kpxe$|\.pxe$)/i.test(file)) return 'tftp'
  return 'kernel'
}

const num = (v) => (typeof v === 'number' ? v : null)

/**
 * The step a boot.failure belongs to. Its phase is what the repair ladder waited for next (src/lifecycle/repair.ts):
 * a boot script, the downloads, the config fetch, Talos starting to install, Talos finishing.
 */
const FAILURE_STEP = { boot: 'script', download: 'kernel', config: 'config', installing: 'talos', installed: 'install' }

function failureStep(d) {
  if (typeof d.path === 'string' && d.path) return assetPhase(d.path)
  return FAILURE_STEP[d.phase] ?? null
}

/** What a boot.repair's data.action did, and how it reads. */
const REPAIR = {
  scheduled: { status: 'warn', label: 'Repair scheduled' },
  'pxe-cycle': { status: 'ok', label: 'Repaired' },
  wait: { status: 'warn', label: 'Waiting (no BMC)' },
  quarantine: { status: 'fail', label: 'Quarantined' },
}

/**
 * classify(event) → { phase (a PHASES key, or null for events outside a boot), label, status: ok | fail | warn |
 * info | progress, tag: the word after the label ('failed' for a failure, '' when the label says it already) }.
 * A `fail` is a step that did not work; `warn` one that may be fine (a client ending a transfer early, waiting for
 * a download slot, a repair scheduled).
 */
export function classify(event) {
  const d = event.data ?? {}
  const r = (phase, status, label = phase ? LABEL[phase] : null, tag = status === 'fail' ? 'failed' : '') => ({ phase, status, label, tag })
  switch (event.type) {
    case 'boot.dhcp':
      return r('dhcp', d.reply === 'nak' ? 'fail' : d.reply === 'none' ? 'warn' : 'ok', d.ipxe ? 'DHCP (iPXE)' : 'DHCP')
    case 'boot.tftp':
      return r('tftp', d.ok === false ? (d.aborted ? 'warn' : 'fail') : 'ok')
    case 'boot.script':
      return r('script', d.blocked ? 'fail' : d.waiting || d.slow ? 'warn' : 'ok')
    case 'boot.asset': {
      const status = num(d.status)
      return r(assetPhase(d.path), status !== null && status >= 400 ? 'fail' : d.complete === false ? 'warn' : 'ok')
    }
    case 'boot.agent':
      return r('agent', d.conflict || (Array.isArray(d.wipeFailed) && d.wipeFailed.length) ? 'fail' : 'ok')
    case 'boot.config': {
      const status = num(d.status)
      return r('config', status !== null && status >= 400 ? 'fail' : 'ok')
    }
    case 'boot.talos': {
      const type = String(d.type ?? '')
      if (d.hint === 'failed' || /ConfigLoadError|ConfigValidationError/.test(type)) return r('talos', 'fail')
      if (d.hint === 'installing') return r('install', 'progress')
      return r('talos', 'ok')
    }
    case 'boot.failure': {
      const step = failureStep(d)
      return r(step, 'fail', step ? LABEL[step] : 'Boot', 'failed')
    }
    case 'boot.repair': {
      const a = REPAIR[d.action] ?? { status: 'info', label: 'Repair' }
      if (d.action === 'pxe-cycle' && d.ok === false) return r(null, 'fail', 'Repair', 'failed')
      return r(null, a.status, a.label, '')
    }
    case 'machine.state':
      if (d.to === 'installed') return r('install', 'ok')
      if (d.to === 'failed') return r(null, 'fail', 'State', '')
      return r(null, 'info', 'State')
    case 'machine.created':
      return r(null, 'info', 'Created')
    case 'machine.updated':
      return r(null, 'info', 'Updated')
    case 'machine.deleted':
      return r(null, 'warn', 'Deleted')
    case 'power':
      return r(null, d.ok === false || (typeof d.error === 'string' && d.error) ? 'fail' : 'info', 'Power')
    default:
      return r(null, 'info', event.type)
  }
}

/**
 * Events after which the machine is expected to boot anew, as the repair ladder counts attempts: a change to
 * provisioning (an allocation, a retry), a power cycle of the ladder (done, or failed: the ladder starts over
 * either way), and its wait for a machine without a BMC. What went wrong before one belongs to an earlier boot.
 */
export function isNewAttempt(event) {
  const d = event.data ?? {}
  if (event.type === 'machine.state') return d.to === 'provisioning'
  if (event.type === 'boot.repair') return d.action === 'pxe-cycle' || d.action === 'wait'
  return false
}

/**
 * Index of the first event of the newest boot: the firmware's own DHCP exchange, else the newest boot script; or
 * the newest new-attempt event (isNewAttempt) when it came later, while the machine has not booted since.
 */
export function attemptStart(events) {
  const boot = bootStart(events)
  let boundary = events.length - 1
  while (boundary >= 0 && !isNewAttempt(events[boundary])) boundary--
  if (boot >= 0 || boundary >= 0) return Math.max(boot, boundary)
  return events.findIndex((e) => classify(e).phase !== null)
}

/** The newest boot's first event by DHCP or boot script, or -1. */
function bootStart(events) {
  let i = events.length - 1
  while (i >= 0 && !(events[i].type === 'boot.dhcp' && !events[i].data?.ipxe)) i--
  if (i >= 0) {
    // DISCOVER, OFFER, REQUEST, ACK of one exchange: start at its first line.
    while (i > 0 && events[i - 1].type === 'boot.dhcp' && !events[i - 1].data?.ipxe) i--
    return i
  }
  for (let j = events.length - 1; j >= 0; j--) {
    const e = events[j]
    if (e.type === 'boot.script' && (e.data?.decision === 'discovery' || e.data?.decision === 'install')) {
      // The DHCP of iPXE itself just before its script belongs to the same boot.
      let k = j
      while (k > 0 && ['boot.dhcp', 'boot.tftp'].includes(events[k - 1].type)) k--
      return k
    }
  }
  return -1
}

/** The step a boot.failure marks, given the steps reached: a download failure without a file is the one missing. */
function stepOfFailure(e, steps) {
  const step = classify(e).phase
  if (step === 'kernel' && e.data?.phase === 'download' && !e.data?.path && steps.kernel?.status === 'ok') return 'initramfs'
  return step
}

/** Index of the first event of the current provisioning attempt: the newest change to provisioning, else 0. */
export function provisioningStart(events) {
  for (let i = events.length - 1; i >= 0; i--) {
    if (events[i].type === 'machine.state' && events[i].data?.to === 'provisioning') return i
  }
  return 0
}

/** The newest boot.failure of the current provisioning attempt, or null. */
export function lastFailure(events) {
  const from = provisioningStart(events)
  for (let i = events.length - 1; i >= from; i--) if (events[i].type === 'boot.failure') return events[i]
  return null
}

/** "Failed in phase installed: no Talos to finish installing within 1800 s", from a boot.failure. */
export function failureText(e) {
  const d = e.data ?? {}
  return `Failed in phase ${d.phase ?? 'unknown'}: ${d.reason ?? e.message}`
}

/**
 * Where the newest boot got to: { start (index), path (phase keys in order), steps: { key: {status, event} },
 * last: {phase, status, event} | null, failed: the event it stopped at when it failed, or null, waiting: the
 * new-attempt event (isNewAttempt) the machine has not booted since, or null }.
 * A step's status is that of its newest event (a retried TFTP transfer that worked is ok; a boot.failure after a
 * step marks it failed). With `state: 'failed'` (a quarantined machine) the failure that quarantined it is where
 * the boot stopped, even when the machine booted again since.
 */
export function bootProgress(events, { state = null } = {}) {
  const start = attemptStart(events)
  const steps = {}
  let last = null
  let decision = null
  const fromBoundary = start >= 0 && isNewAttempt(events[start])
  for (let i = Math.max(start, 0); start >= 0 && i < events.length; i++) {
    const e = events[i]
    const c = classify(e)
    if (e.type === 'boot.script' && e.data?.decision) decision = e.data.decision
    if (!c.phase) continue
    const phase = e.type === 'boot.failure' ? stepOfFailure(e, steps) : c.phase
    steps[phase] = { status: c.status, event: e }
    last = { phase, status: c.status, event: e }
  }
  let failed = last && last.status === 'fail' ? last.event : null
  if (state === 'failed') {
    const f = lastFailure(events)
    const phase = f ? stepOfFailure(f, steps) : null
    if (f && failed?.seq !== f.seq) {
      failed = f
      if (phase) {
        steps[phase] = { status: 'fail', event: f }
        last = { phase, status: 'fail', event: f }
      }
    }
  }
  // An attempt the provisioning began (an allocation, a retry, a repair) goes the install path.
  const path = pathFor(decision ?? (fromBoundary ? 'install' : null))
  for (const key of Object.keys(steps)) if (!path.includes(key)) path.push(key)
  path.sort((a, b) => ORDER[a] - ORDER[b])
  return { start, path, steps, last, failed, waiting: fromBoundary && !last ? events[start] : null }
}

const FAILURE_KIND = {
  deadline: 'missed its deadline', talos: 'reported by Talos', download: 'download failed', loop: 'boot loop', config: 'config not served',
}

/**
 * The repair ladder of the current provisioning attempt, in order: [{ kind: failure | scheduled | repaired |
 * repair-failed | waiting | quarantined, status: fail | warn | ok, label, text, detail, event }]. Empty when the
 * attempt has neither boot.failure nor boot.repair events.
 */
export function repairLadder(events) {
  const out = []
  for (let i = provisioningStart(events); i < events.length; i++) {
    const e = events[i]
    const d = e.data ?? {}
    if (e.type === 'boot.failure') {
      out.push({ kind: 'failure', status: 'fail', label: `Failure${typeof d.attempt === 'number' ? ` ${d.attempt}` : ''}`, text: failureText(e), detail: FAILURE_KIND[d.kind] ?? d.kind ?? '', event: e })
    } else if (e.type === 'boot.repair') {
      if (d.action === 'scheduled') {
        out.push({ kind: 'scheduled', status: 'warn', label: 'Repair scheduled', text: typeof d.inMs === 'number' ? `Next boot PXE and a power cycle in ${duration(d.inMs)}` : e.message, detail: '', event: e })
      } else if (d.action === 'pxe-cycle' && d.ok === false) {
        out.push({ kind: 'repair-failed', status: 'fail', label: 'Repair failed', text: `Power cycle failed: ${d.error ?? e.message}`, detail: 'the deadline runs on', event: e })
      } else if (d.action === 'pxe-cycle') {
        out.push({ kind: 'repaired', status: 'ok', label: 'Repair done', text: e.message, detail: '', event: e })
      } else if (d.action === 'wait') {
        out.push({ kind: 'waiting', status: 'warn', label: 'Waiting (no BMC)', text: e.message, detail: '', event: e })
      } else if (d.action === 'quarantine') {
        out.push({ kind: 'quarantined', status: 'fail', label: 'Quarantined', text: e.message, detail: '', event: e })
      } else {
        out.push({ kind: 'repair', status: 'warn', label: 'Repair', text: e.message, detail: '', event: e })
      }
    }
  }
  return out
}

export const phaseLabel = (key) => LABEL[key] ?? key
