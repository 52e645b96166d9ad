// Namespaces left by test runs that died. A test file killed at its time limit (or SIGKILLed) never runs its
// teardown, so its rb-* namespaces stay, with any QEMU or daemon still inside. Labs therefore record which process
// owns each namespace (a marker file /run/rackboot-test-netns/<name>: pid and start time, written before the
// namespace exists) and, when a lab starts, remove the rb-* namespaces whose owner is gone. Tests run in parallel,
// so a namespace whose owner lives is never touched. Namespaces without a marker (made before markers, or by
// createNetLab users that do not record one) are removed only when older than UNOWNED_LIMIT_MS and empty.
//
// Deleting a namespace also deletes the veth pairs with an end inside it, so a root-namespace end (serverSide
// 'host') goes with it once the processes inside have exited.
import { mkdirSync, readdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { run, type NetLab } from '../../support/netns.js'

export const NETNS_DIR = '/run/netns'
export const OWNER_DIR = '/run/rackboot-test-netns'
/** Test namespaces are named rb-<label>-<tag> (createNetLab); nothing else is looked at. */
export const TEST_NETNS_PREFIX = 'rb-'
/** An unowned namespace younger than this may belong to a live run of code that writes no marker. */
export const UNOWNED_LIMIT_MS = 2 * 60 * 60_000

/** A process, by pid and start time (/proc/<pid>/stat field 22): a reused pid is a different owner. */
export interface Owner {
  pid: number
  /** Null when unknown (only the pid is checked then). */
  start: string | null
}

export interface SeenNamespace {
  name: string
  /** Whether /run/netns/<name> exists (a marker is written before its namespace and may outlive it). */
  present: boolean
  /** From the marker; null when there is none or it cannot be read. */
  owner: Owner | null
  /** Since /run/netns/<name> was made (when present). */
  ageMs: number
  /** Whether processes run inside it (when present). */
  busy: boolean
}

export interface SweepVerdict {
  name: string
  /** remove: end the processes inside, delete the namespace and its marker; forget: delete the marker only. */
  action: 'remove' | 'forget' | 'keep'
  why: string
}

/** What to do with each test namespace (and marker) seen. Pure: the caller supplies liveness and ages. */
export function planSweep(seen: SeenNamespace[], alive: (owner: Owner) => boolean, unownedLimitMs = UNOWNED_LIMIT_MS): SweepVerdict[] {
  const verdicts: SweepVerdict[] = []
  for (const ns of seen) {
    if (!ns.name.startsWith(TEST_NETNS_PREFIX)) continue
    const { name, owner } = ns
    if (owner && alive(owner)) verdicts.push({ name, action: 'keep', why: `owner pid ${owner.pid} is alive` })
    else if (!ns.present) verdicts.push({ name, action: 'forget', why: owner ? `namespace gone, owner pid ${owner.pid} too` : 'namespace gone, marker unreadable' })
    else if (owner) verdicts.push({ name, action: 'remove', why: `owner pid ${owner.pid} is gone` })
    else if (ns.ageMs < unownedLimitMs) verdicts.push({ name, action: 'keep', why: 'no owner recorded, too young to be abandoned' })
    else if (ns.busy) verdicts.push({ name, action: 'keep', why: 'no owner recorded and processes run inside' })
    else verdicts.push({ name, action: 'remove', why: `no owner recorded, empty, ${Math.round(ns.ageMs / 60_000)} min old` })
  }
  return verdicts
}

/** /proc/<pid>/stat's fields from the third (the state) on, or null when there is no such process. */
export function statFields(pid: number): string[] | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces and parentheses): [0] is field 3, the state.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  } catch {
    return null
  }
}

/** The running process `pid` as an owner, or null when there is none. */
export function ownerOf(pid: number): Owner | null {
  const f = statFields(pid)
  return f ? { pid, start: f[19] ?? null } : null
}

/** Whether the owner still runs: same pid, same start time, not a zombie (a killed test its runner has not reaped). */
export function ownerAlive(owner: Owner): boolean {
  const f = statFields(owner.pid)
  if (!f || f[0] === 'Z') return false
  return owner.start === null || f[19] === owner.start
}

function parseOwner(text: string): Owner | null {
  const [pid, start] = text.trim().split(/\s+/)
  if (!pid || !/^\d+$/.test(pid) || Number(pid) <= 1) return null
  return { pid: Number(pid), start: start && /^\d+$/.test(start) ? start : null }
}

/** Records `owner` (default: this process) as the owner of namespace `name`; call before creating it. */
export function markOwned(name: string, owner: Owner = ownerOf(process.pid) ?? { pid: process.pid, start: null }): void {
  mkdirSync(OWNER_DIR, { recursive: true, mode: 0o755 })
  writeFileSync(join(OWNER_DIR, name), `${owner.pid} ${owner.start ?? ''}\n`)
}

/** Drops the marker of `name` once the namespace is gone (a namespace that failed to delete keeps its owner). */
export function forgetIfGone(name: string): void {
  if (present(name)) return
  try {
    unlinkSync(join(OWNER_DIR, name))
  } catch {
    // none
  }
}

function present(name: string): boolean {
  try {
    statSync(join(NETNS_DIR, name))
    return true
  } catch {
    return false
  }
}

function list(dir: string): string[] {
  try {
    return readdirSync(dir).filter((n) => n.startsWith(TEST_NETNS_PREFIX))
  } catch {
    return []
  }
}

async function pidsIn(name: string): Promise<number[]> {
  const r = await run(['ip', 'netns', 'pids', name], { check: false, timeoutMs: 5_000 }).catch(() => null)
  return (r?.stdout ?? '').split(/\s+/).filter(Boolean).map(Number).filter((pid) => Number.isInteger(pid) && pid > 1 && pid !== process.pid)
}

/**
 * Looks at every rb-* namespace and marker (or those `only` accepts: a test keeps to its own), removes the abandoned
 * ones; returns every verdict. Never throws.
 */
export async function sweepStaleNamespaces(options: { now?: number; only?: (name: string) => boolean } = {}): Promise<SweepVerdict[]> {
  const now = options.now ?? Date.now()
  const names = new Set([...list(NETNS_DIR), ...list(OWNER_DIR)].filter(options.only ?? (() => true)))
  const seen: SeenNamespace[] = []
  for (const name of names) {
    let owner: Owner | null = null
    try {
      owner = parseOwner(readFileSync(join(OWNER_DIR, name), 'utf8'))
    } catch {
      // no marker
    }
    let ageMs = 0
    let isPresent = false
    try {
      ageMs = now - statSync(join(NETNS_DIR, name)).mtimeMs
      isPresent = true
    } catch {
      // no namespace
    }
    const busy = isPresent && !owner ? (await pidsIn(name)).length > 0 : false
    seen.push({ name, present: isPresent, owner, ageMs, busy })
  }
  const verdicts = planSweep(seen, ownerAlive)
  for (const v of verdicts) {
    if (v.action === 'keep') continue
    if (v.action === 'remove') {
      // Its owner is gone: whatever still runs inside (QEMU, daemons) is a leftover of that run.
      for (const pid of await pidsIn(v.name)) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone
        }
      }
      await run(['ip', 'netns', 'del', v.name], { check: false, timeoutMs: 10_000 }).catch(() => undefined)
    }
    forgetIfGone(v.name)
  }
  return verdicts
}

/** Sweeps before a lab starts, saying what went (a failed sweep must not stop the test). */
export async function sweepBeforeLab(): Promise<void> {
  try {
    for (const v of await sweepStaleNamespaces()) {
      if (v.action === 'remove') console.error(`# removed stale network namespace ${v.name}: ${v.why}`)
    }
  } catch (err) {
    console.error(`# could not sweep stale network namespaces: ${(err as Error).message}`)
  }
}

/** `net`, with each namespace recorded as this process's before it is made, and the record dropped on destroy. */
export function ownedNetLab(net: NetLab): NetLab {
  const names = new Set<string>()
  return {
    tag: net.tag,
    async ns(label, options) {
      // The name createNetLab will give it, so the marker exists before the namespace does.
      const expected = `${TEST_NETNS_PREFIX}${label}-${net.tag}`
      markOwned(expected)
      names.add(expected)
      const ns = await net.ns(label, options)
      if (ns.name !== expected) {
        markOwned(ns.name)
        names.add(ns.name)
      }
      return ns
    },
    ifname: (prefix) => net.ifname(prefix),
    veth: (a, b) => net.veth(a, b),
    bridge: (ns, name, members, cidr) => net.bridge(ns, name, members, cidr),
    async destroy() {
      await net.destroy()
      for (const name of names) forgetIfGone(name)
    },
  }
}
