// One timeline line per BMC attempt, the same from `serve` and the CLI: what was tried, how it ended, and whether
// it will be tried again or was left alone because it may have run.
import type { PowerResult } from './manager.js'

export function powerResultLine(r: PowerResult, via = ''): string {
  const what = `power ${r.action}${via ? ` (${via})` : ''}${r.attempt > 1 ? `, attempt ${r.attempt}` : ''}`
  if (r.ok) return `${what}: done in ${r.ms} ms`
  const next = r.ambiguous ? '; sent without an answer that says whether it ran: not re-sent, reading the BMC back'
    : r.final ? '' : '; trying again'
  return `${what} failed: ${r.error ?? r.errorKind ?? 'unknown error'}${next}`
}
