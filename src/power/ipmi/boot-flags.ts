// Boot flags, System Boot Options parameter 5 (IPMI v2.0 table 28-14): 5 data bytes.
//   d1: bit 7 valid, bit 6 persistent (0 = next boot only), bit 5 EFI (0 = legacy BIOS)
//   d2: bits 5:2 device selector (1 PXE, 2 default hard drive, ...); other bits CMOS clear, lock keyboard, ...
//   d3-d5: console redirection, BIOS verbosity, device instance: left 0.
import type { BootOverride, BootReadback } from '../types.js'
import { BootSelector } from './constants.js'

// IPMI has no UEFI HTTP boot selector: the driver refuses `http` before encoding.
const SELECTOR: Record<Exclude<BootOverride['device'], 'http'>, number> = {
  none: BootSelector.NONE,
  pxe: BootSelector.PXE,
  disk: BootSelector.DISK,
  cd: BootSelector.CDROM,
}

export function encodeBootFlags(o: BootOverride): Buffer {
  if (o.device === 'http') throw new Error('IPMI has no UEFI HTTP boot device selector')
  const d1 = 0x80 | (o.persistent ? 0x40 : 0) | (o.mode === 'uefi' ? 0x20 : 0)
  return Buffer.from([d1, SELECTOR[o.device] << 2, 0, 0, 0])
}

function hex(b: Buffer): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(' ')
}

/** Decodes the 5 data bytes; null when fewer arrive. */
export function decodeBootFlags(d: Buffer): BootReadback | null {
  if (d.length < 5) return null
  const d1 = d[0] ?? 0
  const selector = ((d[1] ?? 0) >> 2) & 0x0f
  const device = selector === BootSelector.PXE ? 'pxe' : selector === BootSelector.DISK ? 'disk'
    : selector === BootSelector.CDROM ? 'cd' : selector === BootSelector.NONE ? 'none' : 'other'
  return {
    device,
    mode: d1 & 0x20 ? 'uefi' : 'bios',
    persistent: (d1 & 0x40) !== 0,
    enabled: (d1 & 0x80) !== 0,
    raw: hex(d.subarray(0, 5)),
  }
}

/**
 * Does the readback show the override asked for? `device` checks only the device selector, for BMCs known to
 * drop the other bits (ipmi_sim keeps only the selector and always reads "not valid").
 */
export function bootMatches(asked: BootOverride, got: BootReadback, verify: 'strict' | 'device'): string | null {
  if (got.device !== asked.device) return `device reads back ${got.device}, asked ${asked.device}`
  if (verify === 'device') return null
  if (asked.device !== 'none' && !got.enabled) return 'boot flags read back as not valid (override dropped or expired)'
  if (asked.mode && got.mode !== asked.mode) return `mode reads back ${got.mode}, asked ${asked.mode}`
  if (got.persistent !== (asked.persistent ?? false)) {
    return `reads back ${got.persistent ? 'persistent' : 'next boot only'}, asked ${asked.persistent ? 'persistent' : 'next boot only'}`
  }
  return null
}

/**
 * Which fields of a request a matching readback confirmed (BootReadback.verified). `device` checks the selector
 * only: mode and persistence were not compared, so callers must not report them verified. `strict` compared all
 * three; a request without a mode asked for none, so there is no mode to confirm.
 */
export function verifiedFields(asked: BootOverride, verify: 'strict' | 'device'): NonNullable<BootReadback['verified']> {
  if (verify === 'device') return { device: true, mode: false, persistent: false }
  return { device: true, mode: asked.mode !== undefined, persistent: true }
}
