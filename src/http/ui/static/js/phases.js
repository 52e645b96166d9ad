// Where in the boot an event belongs, and whether it went wrong: the timeline's reading of rackboot's events
// (boot.dhcp, boot.tftp, boot.script, boot.asset, boot.agent, boot.config, boot.talos, machine.*, power).
// Pure functions of the events, so they are tested without a browser.

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
 * classify(event) → { phase (a PHASES key, or null for events outside a boot), label, status: ok | fail | warn |
 * info | progress }. A `fail` is a step that did not work; `warn` one that may be fine (a client ending a
 * transfer early, waiting for a download slot).
 */
export function classify(event) {
  const d = event.data ?? {}
  const r = (phase, status, label = phase ? LABEL[phase] : null) => ({ phase, status, label })
  switch (event.type) {
    case 'boot.dhcp':
      return r('dhcp', d.reply === 'nak' ? 'fail' : d.reply === 'none' ? 'warn' : 'ok', d.ipxe ? 'DHCP (iPXE)' : 'DHCP')
    case 'boot.tftp':
      return r('tftp', d.ok === false ? (d.aborted ? 'warn' : 'fail') : 'ok')
    case 'boot.script':
      return r('script', d.blocked ? 'fail' : d.waiting ? 'warn' : 'ok')
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
    case 'machine.state':
      if (d.to === 'installed') return r('install', 'ok')
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

/** Index of the first event of the newest boot: the firmware's own DHCP exchange, else the newest boot script. */
export function attemptStart(events) {
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
  return events.findIndex((e) => classify(e).phase !== null)
}

/**
 * Where the newest boot got to: { start (index), path (phase keys in order), steps: { key: {status, event} },
 * last: {phase, status, event} | null, failed: the event it stopped at when it failed, or null }.
 * A step's status is that of its newest event (a retried TFTP transfer that worked is ok).
 */
export function bootProgress(events) {
  const start = attemptStart(events)
  const steps = {}
  let last = null
  let decision = null
  if (start < 0) return { start, path: pathFor(null), steps, last, failed: null }
  for (let i = start; i < events.length; i++) {
    const e = events[i]
    const c = classify(e)
    if (e.type === 'boot.script' && e.data?.decision) decision = e.data.decision
    if (!c.phase) continue
    steps[c.phase] = { status: c.status, event: e }
    last = { phase: c.phase, status: c.status, event: e }
  }
  const path = pathFor(decision)
  for (const key of Object.keys(steps)) if (!path.includes(key)) path.push(key)
  path.sort((a, b) => ORDER[a] - ORDER[b])
  const failed = last && last.status === 'fail' ? last.event : null
  return { start, path, steps, last, failed }
}

export const phaseLabel = (key) => LABEL[key] ?? key
