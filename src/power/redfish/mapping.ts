// How rackboot's words map onto Redfish's (ComputerSystem schema): reset types by preference, boot targets,
// override modes, and reading a system's Boot object back.
import type { BootOverride, BootReadback, PowerAction, PowerState } from '../types.js'
import type { Json } from './client.js'

/** ResetType values to try for each action, best first; only those the BMC advertises are used. */
export const RESET_PREFERENCES: Record<PowerAction, string[]> = {
  on: ['On', 'ForceOn'],
  off: ['ForceOff'],
  'soft-off': ['GracefulShutdown'],
  // ForceRestart is a reset rather than a power cycle on many BMCs, but it does reboot the machine.
  cycle: ['PowerCycle', 'ForceRestart'],
  reset: ['ForceRestart', 'GracefulRestart', 'PowerCycle'],
}

/** Candidates in preference order; when the BMC does not say what it allows, the preferences as they are. */
export function resetCandidates(action: PowerAction, allowable: string[] | null): string[] {
  const wanted = RESET_PREFERENCES[action]
  if (!allowable) return [...wanted]
  return wanted.filter((w) => allowable.includes(w))
}

export const TARGETS: Record<BootOverride['device'], string> = { pxe: 'Pxe', disk: 'Hdd', cd: 'Cd', http: 'UefiHttp', none: 'None' }

export function powerStateOf(system: Json): PowerState | null {
  // Transitions report the state being reached: a machine powering on is treated as on.
  switch (system.PowerState) {
    case 'On':
    case 'PoweringOn':
    case 'Paused':
      return 'on'
    case 'Off':
    case 'PoweringOff':
      return 'off'
    default:
      return null
  }
}

export function bootOf(system: Json): Json {
  return (system.Boot && typeof system.Boot === 'object' ? system.Boot : {}) as Json
}

export function stringList(value: unknown): string[] | null {
  return Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : null
}

/** The override as the BMC reports it, in Redfish's words; null where the BMC does not report a field. */
export interface BootFields {
  target: string
  enabled: string | null
  mode: string | null
  uri: string | null
}

export function bootFields(doc: Json): BootFields {
  const boot = bootOf(doc)
  const text = (v: unknown): string | null => (typeof v === 'string' ? v : null)
  return {
    target: text(boot.BootSourceOverrideTarget) ?? 'None',
    enabled: text(boot.BootSourceOverrideEnabled),
    mode: text(boot.BootSourceOverrideMode),
    uri: text(boot.HttpBootUri),
  }
}

const DEVICES: Record<string, BootReadback['device']> = { Pxe: 'pxe', Hdd: 'disk', Cd: 'cd', UefiHttp: 'http', None: 'none' }

export function readBoot(doc: Json): BootReadback {
  const f = bootFields(doc)
  const device = DEVICES[f.target] ?? 'other'
  return {
    device,
    mode: f.mode === 'UEFI' ? 'uefi' : f.mode === 'Legacy' ? 'bios' : null,
    persistent: f.enabled === null ? null : f.enabled === 'Continuous',
    enabled: f.enabled !== 'Disabled' && device !== 'none',
    raw: `${f.target}/${f.enabled ?? '-'}/${f.mode ?? '-'}${f.target === 'UefiHttp' && f.uri ? `/${f.uri}` : ''}`,
  }
}

export const MODES: Record<NonNullable<BootOverride['mode']>, string> = { uefi: 'UEFI', bios: 'Legacy' }

/**
 * The Boot PATCHes for an override, the next one tried only when the BMC refuses (400) the one before. A BMC whose
 * BootSourceOverrideEnabled allows no "Once" gets Continuous, the documented fallback.
 */
export function bootPatches(o: BootOverride, enabledAllowed: string[] | null): { patches: Json[]; fallback: boolean } {
  // Enabled=Disabled alone first: some BMCs (iLO) refuse Disabled together with target None; others (sushy-tools)
  // refuse a Boot without a target.
  if (o.device === 'none') {
    return { patches: [{ BootSourceOverrideEnabled: 'Disabled' }, { BootSourceOverrideTarget: 'None', BootSourceOverrideEnabled: 'Disabled' }], fallback: false }
  }
  const fallback = !o.persistent && enabledAllowed !== null && !enabledAllowed.includes('Once') && enabledAllowed.includes('Continuous')
  const patch: Json = {
    BootSourceOverrideTarget: TARGETS[o.device],
    BootSourceOverrideEnabled: o.persistent || fallback ? 'Continuous' : 'Once',
  }
  if (o.device === 'http' && o.uri) patch.HttpBootUri = o.uri
  if (!o.mode) return { patches: [patch], fallback }
  // Mode goes in the same PATCH (some BMCs reset it otherwise, Redfishtool#106); a BMC that refuses it there
  // (HP DL160, bmclib#318) gets the PATCH without it, and the read-back then decides.
  return { patches: [{ ...patch, BootSourceOverrideMode: MODES[o.mode] }, patch], fallback }
}

export interface BootCheck {
  /** One entry per field that did not stick ("target asked Pxe, read None"); empty when the override stuck. */
  mismatches: string[]
  verified: NonNullable<BootReadback['verified']>
  /** Asked for the next boot only, the BMC keeps it for every boot: accepted (see setBoot). */
  fallback?: 'continuous'
}

/** Compares the read-back with what was asked, field by field. */
export function checkBoot(asked: BootOverride, got: BootFields): BootCheck {
  if (asked.device === 'none') {
    const off = got.enabled === 'Disabled' || got.target === 'None'
    return {
      mismatches: off ? [] : [`enabled asked Disabled, read ${got.enabled ?? '-'} (target ${got.target})`],
      verified: { device: off, mode: false, persistent: false },
    }
  }
  const mismatches: string[] = []
  const target = TARGETS[asked.device]
  if (got.target !== target) mismatches.push(`target asked ${target}, read ${got.target}`)
  const persistence = checkPersistence(asked, got.enabled)
  if (persistence.mismatch) mismatches.push(persistence.mismatch)
  const mode = asked.mode ? MODES[asked.mode] : null
  if (mode && got.mode !== null && got.mode !== mode) mismatches.push(`mode asked ${mode}, read ${got.mode}`)
  if (asked.device === 'http' && asked.uri && got.uri !== asked.uri) mismatches.push(`uri asked ${asked.uri}, read ${got.uri ?? '(none)'}`)
  return {
    mismatches,
    verified: {
      device: got.target === target && got.enabled !== 'Disabled',
      mode: mode !== null && got.mode === mode,
      persistent: persistence.verified,
    },
    ...(persistence.fallback ? { fallback: 'continuous' as const } : {}),
  }
}

function checkPersistence(asked: BootOverride, enabled: string | null): { mismatch?: string; verified: boolean; fallback?: boolean } {
  const want = asked.persistent ? 'Continuous' : 'Once'
  if (enabled === want) return { verified: true }
  if (enabled === null) return { verified: false } // not reported: not verified, not contradicted
  if (enabled === 'Continuous' && want === 'Once') return { verified: false, fallback: true }
  return { mismatch: `enabled asked ${want}, read ${enabled}`, verified: false }
}
