// A reply that names a loader rackboot cannot serve sends the machine into a TFTP "file not found" (or an HTTP 404)
// that its console shows for a second. Say so where a tech looks: once per machine and file on its timeline
// (a failed step with the fix), once per file in the log. The check itself is the caller's cached stat.
import type { Logger } from '../log.js'
import type { BootChoice } from './boot-file.js'
import type { RequestFacts } from './facts.js'
import type { DhcpLoaderCheck, DhcpProblemPort } from './ports.js'
import { createRecentKeys } from './recent-keys.js'

export interface MissingLoaderDeps {
  check: DhcpLoaderCheck
  problems?: DhcpProblemPort | undefined
  log: Logger
  now: () => number
  /** How often the same machine is told again about the same file (default 60 s: one boot attempt). */
  machineWindowMs?: number
}

/** The file behind a choice that rackboot itself serves (a TFTP loader, or the loader of an HTTP boot URL). */
export function offeredLoader(choice: BootChoice): { file: string; setting?: string | undefined } | null {
  if (choice.kind === 'tftp') return { file: choice.file, setting: choice.setting }
  if (choice.kind === 'http' && choice.loader) return { file: choice.loader, setting: choice.setting }
  return null
}

export type MissingLoaderReporter = (facts: RequestFacts, choice: BootChoice) => void

export function createMissingLoaderReporter(deps: MissingLoaderDeps): MissingLoaderReporter {
  // Keys come from client MACs: bounded, oldest forgotten first.
  const told = createRecentKeys({ max: 1024, windowMs: deps.machineWindowMs ?? 60_000, now: deps.now })
  const logged = createRecentKeys({ max: 64, windowMs: 10 * 60_000, now: deps.now })
  return (facts, choice) => {
    const loader = offeredLoader(choice)
    if (!loader) return
    const problem = deps.check.missing(loader.file, loader.setting)
    if (!problem) return
    if (logged.fresh(loader.file)) deps.log.warn({ file: loader.file, setting: loader.setting ?? null, mac: facts.mac }, problem)
    if (deps.problems && told.fresh(`${facts.mac}|${loader.file}`)) {
      deps.problems.report(facts, { kind: 'missing-loader', file: loader.file, message: problem })
    }
  }
}
