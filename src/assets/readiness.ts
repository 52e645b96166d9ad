import { statSync } from 'node:fs'
import { join } from 'node:path'
import type { Profile } from '../inventory/index.js'
import { isGrubImage, loaderFetchCommand, loaderLocation, NO_LOADER, type OfferedLoader } from './loaders.js'
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
  /**
   * Loaders network boot offers (offeredLoaders(settings.dhcp)) when they are served from here (TFTP on, or DHCP
   * pointing at this server); families set to `none` are not in it. An arm64 loader also asks for the arm64 agent.
   */
  loaders: OfferedLoader[]
  profiles: () => Promise<Profile[]>
}

/** One line per kind of missing loader (iPXE, GRUB), naming the files, the fetch and the settings that switch them off. */
function missingLoaderLines(assetsDir: string, loaders: OfferedLoader[]): string[] {
  const missing = loaders.filter((l) => !present(join(assetsDir, loaderLocation(l.file))))
  const out: string[] = []
  for (const [kind, grub] of [['iPXE', false], ['GRUB', true]] as const) {
    const these = missing.filter((l) => isGrubImage(l.file) === grub)
    if (!these.length) continue
    const files = [...new Set(these.map((l) => loaderLocation(l.file)))].join(', ')
    const settings = [...new Set(these.map((l) => l.setting))].map((s) => `${s}: ${NO_LOADER}`).join(', ')
    out.push(`${kind} loaders missing (${files}): run ${loaderFetchCommand(these[0]!.file)}, or set ${settings} to stop network-booting that firmware`)
  }
  return out
}

/** Every missing boot file, one line each with its fix: what /healthz reports as degraded. */
export async function bootFileProblems(check: BootFileCheck): Promise<string[]> {
  const out = missingLoaderLines(check.assetsDir, check.loaders)
  const agent = ['vmlinuz', 'agent.img'].filter((f) => !present(join(check.assetsDir, 'agent', f)))
  if (agent.length) out.push(`discovery agent missing (${agent.map((f) => `agent/${f}`).join(', ')}): run rackboot assets build agent`)
  const arm64 = check.loaders.filter((l) => l.cpu === 'arm64')
  if (arm64.length) {
    const missing = ['vmlinuz', 'agent.img'].filter((f) => !present(join(check.assetsDir, 'agent', 'arm64', f)))
    if (missing.length) {
      out.push(`arm64 discovery agent missing (${missing.map((f) => `agent/arm64/${f}`).join(', ')}): run rackboot assets build agent --arch arm64, ` +
        `or set ${[...new Set(arm64.map((l) => l.setting))].map((s) => `${s}: ${NO_LOADER}`).join(', ')} to stop network-booting arm64`)
    }
  }
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
