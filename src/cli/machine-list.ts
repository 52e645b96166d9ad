// The machine list table `rackboot machines list` prints, from the API's answer or from --data-dir's database: one
// layout for both, each caller turning its machine shape into these rows.
import { palette, stateColour, terminalWidth } from './common.js'
import { formatAge, renderTable } from './table.js'

export interface MachineRow {
  id: string
  name: string | null
  state: string
  serial: string | null
  nics: readonly { mac: string; boot?: boolean | null }[]
  rack: string | null
  rackUnit: number | null
  labels: Record<string, string>
  /** "32c 256 GiB 4 disks", or '' before the agent reported. */
  hardware: string
  /** When the machine entered its state (ms since the epoch). */
  stateChangedAt: number
}

/** The table, then "N of TOTAL machines" (TOTAL when known) and the hint when more pages follow. */
export function printMachineTable(rows: readonly MachineRow[], total: number | undefined, more: boolean): void {
  const now = Date.now()
  const p = palette()
  console.log(renderTable(rows, [
    { header: 'id', value: (m) => m.id, keep: true },
    { header: 'name', value: (m) => m.name, keep: true },
    { header: 'state', value: (m) => m.state, colour: (c, m) => c.replace(m.state, stateColour(p, m.state)) },
    { header: 'serial', value: (m) => m.serial },
    { header: 'boot mac', value: (m) => (m.nics.find((n) => n.boot) ?? m.nics[0])?.mac },
    { header: 'rack', value: (m) => (m.rack ? `${m.rack}${m.rackUnit ? `/u${m.rackUnit}` : ''}` : null) },
    { header: 'hardware', value: (m) => m.hardware },
    { header: 'labels', value: (m) => Object.entries(m.labels).map(([k, v]) => `${k}=${v}`).join(',') },
    { header: 'changed', value: (m) => formatAge(m.stateChangedAt, now), align: 'right' },
  ], { maxWidth: terminalWidth(), palette: p }))
  const shown = rows.length
  const counted = total !== undefined ? `${shown} of ${total} machine${total === 1 ? '' : 's'}` : `${shown} machine${shown === 1 ? '' : 's'}`
  console.log(`\n${counted}${more ? ' (--all for every one, or --limit N)' : ''}`)
}
