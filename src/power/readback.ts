import type { BootReadback } from './types.js'

/**
 * Which fields of a set override the read-back confirmed. Drivers say so (`verified`); for a readback without it,
 * a field counts as confirmed when the BMC reported it at all.
 */
export function confirmedFields(r: BootReadback): NonNullable<BootReadback['verified']> {
  return r.verified ?? { device: true, mode: r.mode !== null, persistent: r.persistent !== null }
}
