import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { stringify } from 'yaml'
import type { Inventory } from '../repositories.js'
import type { Machine } from '../types.js'
import type { FileClass, FileMachine, FileProfile } from './schema.js'

export interface ExportResult {
  files: string[]
  machines: number
  classes: number
  profiles: number
}

function clean<T extends object>(obj: T): T {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined && v !== null)) as T
}

/** Every machine, page by page. */
export async function allMachines(inventory: Inventory): Promise<Machine[]> {
  const out: Machine[] = []
  let after: string | undefined
  do {
    const page = await inventory.machines.list({ limit: 1000, ...(after ? { after } : {}) })
    out.push(...page.items)
    after = page.next ?? undefined
  } while (after)
  return out
}

/** The export's files in memory: name (relative) and content, and what they hold. */
export interface RenderedInventory {
  files: { path: string; content: string }[]
  machines: number
  classes: number
  profiles: number
}

/** Writes the database's machines, classes and profiles as inventory files that `import` reads back unchanged. */
export async function exportInventory(inventory: Inventory, dir: string): Promise<ExportResult> {
  const rendered = await renderInventoryFiles(inventory)
  mkdirSync(dir, { recursive: true })
  const files: string[] = []
  for (const f of rendered.files) {
    const file = join(dir, f.path)
    writeFileSync(file, f.content)
    files.push(file)
  }
  return { files, machines: rendered.machines, classes: rendered.classes, profiles: rendered.profiles }
}

/** The export as files in memory (profiles.yaml, classes.yaml, machines.yaml), for the API or a directory. */
export async function renderInventoryFiles(inventory: Inventory): Promise<RenderedInventory> {
  const reservations = await inventory.reservations.list()
  const machines = (await allMachines(inventory)).sort((a, b) => (a.name ?? a.id).localeCompare(b.name ?? b.id))
  const fileMachines: FileMachine[] = []
  for (const m of machines) {
    const bmc = await inventory.bmcs.get(m.id)
    const ipOf = (mac: string) => reservations.find((r) => r.machineId === m.id && r.mac === mac)?.ip
    fileMachines.push(
      clean({
        name: m.name ?? m.id,
        serial: m.serial ?? undefined,
        uuid: m.uuid ?? undefined,
        manufacturer: m.manufacturer ?? undefined,
        product: m.product ?? undefined,
        arch: m.arch ?? undefined,
        firmware: m.firmware ?? undefined,
        nics: m.nics.length > 0 ? m.nics.map((n) => clean({ mac: n.mac, name: n.name ?? undefined, boot: n.boot || undefined, ip: ipOf(n.mac) })) : undefined,
        rack: m.rack ?? undefined,
        unit: m.rackUnit ?? undefined,
        labels: Object.keys(m.labels).length > 0 ? m.labels : undefined,
        profile: m.profile ?? undefined,
        alwaysPxe: m.alwaysPxe || undefined,
        network: m.network ?? undefined,
        bmc: bmc
          ? (() => {
              // Secrets never: only where they come from. Defaults (auth auto, boot method pxe) are left out.
              const refs = { passwordFrom: bmc.credentialsRef, kgFrom: bmc.kgRef }
              return clean({
                type: bmc.type,
                address: bmc.address,
                port: bmc.port ?? undefined,
                username: bmc.username ?? undefined,
                passwordFrom: refs.passwordFrom ?? undefined,
                insecure: bmc.insecure || undefined,
                fingerprint: bmc.fingerprint ?? undefined,
                systemId: bmc.systemId ?? undefined,
                ca: bmc.caPem ?? undefined,
                auth: bmc.auth === 'auto' ? undefined : bmc.auth,
                cipherSuites: bmc.cipherSuites ?? undefined,
                privilege: bmc.privilege ?? undefined,
                kgFrom: refs.kgFrom ?? undefined,
                bootVerify: bmc.bootVerify ?? undefined,
                bootMethod: bmc.bootMethod === 'pxe' ? undefined : bmc.bootMethod,
              })
            })()
          : undefined,
      }),
    )
  }
  const classes: FileClass[] = (await inventory.classes.list()).map((c) =>
    clean({ name: c.name, description: c.description ?? undefined, selectors: c.selectors, profile: c.profile ?? undefined, patches: c.patches.length > 0 ? c.patches : undefined }),
  )
  const profiles: FileProfile[] = (await inventory.profiles.list()).map((p) =>
    clean({
      name: p.name,
      description: p.description ?? undefined,
      talosVersion: p.talosVersion ?? undefined,
      arch: p.arch ?? undefined,
      schematic: p.schematic ?? undefined,
      kernelArgs: p.kernelArgs.length > 0 ? p.kernelArgs : undefined,
      baseConfig: p.baseConfig ?? undefined,
      patches: p.patches.length > 0 ? p.patches : undefined,
      installDisk: p.installDisk ?? undefined,
      deadlines: p.deadlines ?? undefined,
    }),
  )
  const header = '# Written by `rackboot inventory export`; `rackboot inventory import` reads it back.\n'
  const files = [
    { path: 'profiles.yaml', content: header + stringify({ profiles }, { lineWidth: 0 }) },
    { path: 'classes.yaml', content: header + stringify({ classes }, { lineWidth: 0 }) },
    { path: 'machines.yaml', content: header + stringify({ machines: fileMachines }, { lineWidth: 0 }) },
  ]
  return { files, machines: fileMachines.length, classes: classes.length, profiles: profiles.length }
}
