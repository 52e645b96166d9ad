// Other programs and processes: finding an executable, telling whether a pid is still alive, stopping a child.
import type { ChildProcess } from 'node:child_process'
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'

/** Finds a program on PATH (plus the sbin directories, which a non-login root shell may lack), or null. */
export function which(program: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']
  for (const dir of dirs) {
    if (!dir) continue
    const full = join(dir, program)
    try {
      accessSync(full, constants.X_OK)
      return full
    } catch {
      // not here
    }
  }
  return null
}

/** Whether a process with this pid exists (one we may not signal counts: it is alive). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/**
 * SIGTERM, then after `graceMs` SIGKILL (or `forceKill`, e.g. for a whole process group); resolves when the child has
 * exited (at once when it already has).
 */
export function stopChild(child: ChildProcess, graceMs: number, forceKill: () => void = () => child.kill('SIGKILL')): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return resolve()
    const timer = setTimeout(() => {
      try {
        forceKill()
      } catch {
        // already gone
      }
    }, graceMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve()
    })
    try {
      child.kill('SIGTERM')
    } catch {
      clearTimeout(timer)
      resolve()
    }
  })
}
