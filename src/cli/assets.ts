import { basename } from 'node:path'
import { createAssetStore, IPXE_FILES, talosAssetDir, type ManifestEntry } from '../assets/index.js'
import { loadSettings } from '../settings/index.js'
import { formatBytes, renderTable } from './table.js'
import { parse, printJson, UsageError } from './context.js'

export const ASSETS_USAGE = `rackboot assets <command>

  list [--json]                                  what is in the assets directory, checked against its manifest
  fetch talos VERSION [--arch amd64|arm64] [--schematic ID]
                                                 kernel + initramfs from the Talos release (sha512-verified)
                                                 or the Image Factory (with --schematic)
  fetch ipxe                                     iPXE binaries from Debian's ipxe package (offline)
  build agent [--force] [--cache-dir DIR]          the discovery agent (Debian kernel + busybox initramfs)
  import FILE... [--talos VERSION [--arch A] [--schematic ID]] [--to DIR/]
                                                 add local files: Talos vmlinuz-<arch>/initramfs-<arch>.xz with
                                                 --talos, iPXE binaries by name, anything else with --to`

function printEntries(entries: ManifestEntry[], json: boolean | undefined): void {
  if (json) return printJson(entries)
  console.log(renderTable(entries, [
    { header: 'path', value: (e) => e.path },
    { header: 'size', value: (e) => formatBytes(e.bytes), align: 'right' },
    { header: 'sha256', value: (e) => e.sha256.slice(0, 16) + '…' },
    { header: 'verified', value: (e) => e.verified ?? 'recorded' },
  ]))
}

export async function assetsCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  if (sub === 'build') {
    const [what, ...more] = rest
    if (what !== 'agent') throw new UsageError(`assets build takes agent\n\n${ASSETS_USAGE}`)
    return (await import('./assets-agent.js')).assetsBuildAgent(more)
  }
  const { values, positionals } = parse(rest, {
    arch: { type: 'string' },
    schematic: { type: 'string' },
    talos: { type: 'string' },
    to: { type: 'string' },
  })
  if (!sub || values.help) {
    console.log(ASSETS_USAGE)
    return sub ? 0 : 2
  }
  const settings = loadSettings({ ...(values.config ? { file: values.config } : {}), overrides: values.set ?? [] })
  const store = createAssetStore({ dir: settings.assetsDir })
  const arch = values.arch ?? 'amd64'
  if (arch !== 'amd64' && arch !== 'arm64') throw new UsageError(`--arch must be amd64 or arm64, not '${arch}'`)
  switch (sub) {
    case 'list': {
      const files = await store.list()
      if (values.json) printJson(files)
      else if (files.length === 0) console.log(`no assets in ${settings.assetsDir} yet: try 'rackboot assets fetch ipxe' and 'rackboot assets fetch talos v1.13.9'`)
      else console.log(renderTable(files, [
        { header: 'path', value: (f) => f.path },
        { header: 'size', value: (f) => formatBytes(f.bytes), align: 'right' },
        { header: 'check', value: (f) => (f.ok === null ? 'not in manifest' : f.ok ? 'ok' : 'CHANGED') },
        { header: 'source', value: (f) => f.source },
      ]))
      return files.some((f) => f.ok === false) ? 1 : 0
    }
    case 'fetch': {
      const [what, version] = positionals
      if (what === 'talos') {
        if (!version) throw new UsageError('assets fetch talos needs a VERSION, e.g. v1.13.9')
        const entries = await store.fetchTalos({
          version, arch, schematic: values.schematic ?? null,
          releasesUrl: settings.assetSources.talosReleases, factoryUrl: settings.assetSources.imageFactory,
        })
        printEntries(entries, values.json)
        return 0
      }
      if (what === 'ipxe') {
        printEntries(await store.importIpxe(settings.assetSources.ipxeDir), values.json)
        return 0
      }
      throw new UsageError(`assets fetch takes talos or ipxe\n\n${ASSETS_USAGE}`)
    }
    case 'import': {
      if (positionals.length === 0) throw new UsageError('assets import needs at least one FILE')
      const entries: ManifestEntry[] = []
      for (const file of positionals) {
        const name = basename(file)
        let rel: string
        if (values.to) rel = `${values.to.replace(/\/+$/, '')}/${name}`
        else if (values.talos) {
          const m = /^(vmlinuz|kernel|initramfs)(-(amd64|arm64))?(\.xz)?$/.exec(name)
          if (!m) throw new UsageError(`${name}: with --talos give vmlinuz-<arch> or initramfs-<arch>.xz (or use --to)`)
          const fileArch = m[3] ?? arch
          rel = `${talosAssetDir(values.talos, fileArch, values.schematic ?? null)}/${m[1] === 'initramfs' ? 'initramfs.xz' : 'vmlinuz'}`
        } else if ((IPXE_FILES as readonly string[]).includes(name)) rel = `ipxe/${name}`
        else throw new UsageError(`${name}: say where it goes with --talos VERSION or --to DIR/`)
        entries.push(await store.importFile(file, rel))
      }
      printEntries(entries, values.json)
      return 0
    }
    default:
      throw new UsageError(`unknown assets command '${sub}'\n\n${ASSETS_USAGE}`)
  }
}
