import { statSync } from 'node:fs'
import { join } from 'node:path'
import type { Profile } from '../inventory/index.js'
import { talosAssetDir } from './store.js'

// Whether the files a boot needs are on this server, and what fetches them when not: checked where a mistake is
// cheap to fix (a profile saved, an allocation asked, /healthz), not when a machine's boot stops at a 404.

function present(file: string): boolean {
  try {
    return statSync(file).isFile()
  } catch {
    return false
  }
}

/** The command that puts a profile's Talos files in place. */
export function talosFetchCommand(profile: Pick<Profile, 'talosVersion' | 'arch' | 'schematic'>): string {
  return `rackboot assets fetch talos ${profile.talosVersion}${profile.arch && profile.arch !== 'amd64' ? ` --arch ${profile.arch}` : ''}${profile.schematic ? ` --schematic ${profile.schematic}` : ''}` +
    ' (or rackboot assets import FILE... --talos VERSION on a site without internet)'
}

/** What is missing for a profile's Talos boot (kernel, initramfs), with the fix; null when both are there. */
export function missingTalosAssets(assetsDir: string, profile: Pick<Profile, 'talosVersion' | 'arch' | 'schematic'>): string | null {
  if (!profile.talosVersion) return null
  const dir = talosAssetDir(profile.talosVersion, profile.arch ?? 'amd64', profile.schematic)
  const missing = ['vmlinuz', 'initramfs.xz'].filter((f) => !present(join(assetsDir, dir, f)))
  if (missing.length === 0) return null
  return `Talos ${profile.talosVersion} ${profile.arch ?? 'amd64'} boot files missing (${missing.map((f) => join(dir, f)).join(', ')} under ${assetsDir}): run ${talosFetchCommand(profile)}`
}

export interface BootFileCheck {
  assetsDir: string
  /** Loaders TFTP serves (from dhcp.bootFiles), when TFTP is on. */
  ipxeFiles: string[]
  profiles: () => Promise<Profile[]>
}

/** Every missing boot file, one line each with its fix: what /healthz reports as degraded. */
export async function bootFileProblems(check: BootFileCheck): Promise<string[]> {
  const out: string[] = []
  const ipxe = check.ipxeFiles.filter((f) => !present(join(check.assetsDir, 'ipxe', f)))
  if (ipxe.length) out.push(`iPXE loaders missing (${ipxe.map((f) => `ipxe/${f}`).join(', ')}): run rackboot assets fetch ipxe`)
  const agent = ['vmlinuz', 'agent.img'].filter((f) => !present(join(check.assetsDir, 'agent', f)))
  if (agent.length) out.push(`discovery agent missing (${agent.map((f) => `agent/${f}`).join(', ')}): run rackboot assets build agent`)
  const seen = new Set<string>()
  for (const p of await check.profiles()) {
    const key = `${p.talosVersion}/${p.arch}/${p.schematic}`
    if (!p.talosVersion || seen.has(key)) continue
    seen.add(key)
    const missing = missingTalosAssets(check.assetsDir, p)
    if (missing) out.push(`profile ${p.name}: ${missing}`)
  }
  return out
}
