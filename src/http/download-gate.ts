// Admission for large downloads (kernels, initramfs): at most `limit` machines fetch at once. A machine past the
// limit is told by its boot script to wait and ask again, rather than failing mid-download in a boot storm.

export interface DownloadGate {
  /** Takes a slot for this machine (re-admitting one that holds a slot is free). */
  admit(machineId: string, now: number): boolean
  /** Gives the slot back (its last large file is done). */
  release(machineId: string): void
  active(now: number): number
  readonly limit: number
}

export function createDownloadGate(options: { limit: number; holdMs: number }): DownloadGate {
  const slots = new Map<string, number>()
  const sweep = (now: number) => {
    for (const [id, expires] of slots) if (expires <= now) slots.delete(id)
  }
  return {
    limit: options.limit,
    admit(machineId, now) {
      sweep(now)
      if (!slots.has(machineId) && slots.size >= options.limit) return false
      slots.set(machineId, now + options.holdMs)
      return true
    },
    release(machineId) {
      slots.delete(machineId)
    },
    active(now) {
      sweep(now)
      return slots.size
    },
  }
}
