// At most N QEMU guests at once on this machine, across test processes (node --test runs files in parallel):
// each TCG guest keeps a core busy, and CI has two (lab.md, "TCG and CI budget"). A slot is a file created with
// O_EXCL holding the owner's pid; slots of dead owners are taken over.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { processAlive as alive } from '../../../src/processes.js'

export const MAX_VMS = 2
// Machine-wide (not under the run's TMPDIR): two test runs at once still share the two VM slots.
const SLOT_DIR = '/tmp/rackboot-vm-slots'

function tryTake(slot: string): boolean {
  try {
    writeFileSync(slot, String(process.pid), { flag: 'wx' })
    return true
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
  let owner = 0
  try {
    owner = Number(readFileSync(slot, 'utf8').trim())
  } catch {
    return false // released meanwhile: try again next round
  }
  if (owner > 0 && !alive(owner)) {
    rmSync(slot, { force: true })
    return tryTake(slot)
  }
  return false
}

export interface VmSlot {
  release(): void
}

/** Waits for a free VM slot (polling); `signal` aborts the wait. `dir` is for tests of the slots themselves. */
export async function acquireVmSlot(options: { max?: number; signal?: AbortSignal; pollMs?: number; dir?: string } = {}): Promise<VmSlot> {
  const max = options.max ?? MAX_VMS
  const dir = options.dir ?? SLOT_DIR
  mkdirSync(dir, { recursive: true })
  for (;;) {
    if (options.signal?.aborted) throw new Error('gave up waiting for a VM slot')
    for (let i = 0; i < max; i++) {
      const slot = join(dir, `slot-${i}`)
      if (tryTake(slot)) {
        let released = false
        return {
          release() {
            if (released) return
            released = true
            try {
              if (readFileSync(slot, 'utf8').trim() === String(process.pid)) rmSync(slot, { force: true })
            } catch {
              // already gone
            }
          },
        }
      }
    }
    await new Promise((r) => setTimeout(r, options.pollMs ?? 200))
  }
}
