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

export function readBoot(system: Json): BootReadback {
  const boot = bootOf(system)
  const target = typeof boot.BootSourceOverrideTarget === 'string' ? boot.BootSourceOverrideTarget : 'None'
  const enabledValue = typeof boot.BootSourceOverrideEnabled === 'string' ? boot.BootSourceOverrideEnabled : null
  const modeValue = typeof boot.BootSourceOverrideMode === 'string' ? boot.BootSourceOverrideMode : null
  const device = target === 'Pxe' ? 'pxe' : target === 'Hdd' ? 'disk' : target === 'None' ? 'none' : 'other'
  return {
    device,
    mode: modeValue === 'UEFI' ? 'uefi' : modeValue === 'Legacy' ? 'bios' : null,
    persistent: enabledValue === null ? null : enabledValue === 'Continuous',
    enabled: enabledValue !== 'Disabled' && device !== 'none',
    raw: `${target}/${enabledValue ?? '-'}/${modeValue ?? '-'}`,
  }
}

export interface BootCheck {
  /** Why the readback does not show the override asked for; null when it does. */
  mismatch: string | null
  /** Differences tolerated (a BMC that reads back Continuous for Once still boots the device next). */
  warnings: string[]
}

export function checkBoot(asked: BootOverride, got: BootReadback): BootCheck {
  const warnings: string[] = []
  if (asked.device === 'none') {
    return { mismatch: got.enabled ? `override still enabled (${got.raw})` : null, warnings }
  }
  if (got.device !== asked.device) return { mismatch: `target reads back ${got.raw}, asked ${asked.device}`, warnings }
  if (!got.enabled) return { mismatch: `override reads back disabled (${got.raw})`, warnings }
  if (asked.mode && got.mode !== null && got.mode !== asked.mode) {
    return { mismatch: `mode reads back ${got.mode}, asked ${asked.mode}`, warnings }
  }
  if (asked.persistent && got.persistent === false) {
    return { mismatch: 'reads back Once, asked Continuous', warnings }
  }
  if (!asked.persistent && got.persistent === true) warnings.push('asked Once, BMC reads back Continuous')
  if (asked.mode && got.mode === null) warnings.push('BMC does not report the override mode')
  return { mismatch: null, warnings }
}
