// A stand-in for Talos for the end-to-end tests, which cannot download Talos: the same Debian kernel with a busybox
// initramfs whose /init does what Talos does with talos.config= (sh/fake-talos-init.sh): KSPP check, DHCP,
// variable substitution in the URL, the fetch with Talos's retry schedule and status handling, and console markers
// ("fake-talos: config fetched <bytes> bytes sha256=<hex>" or "fake-talos: config failed <reason>").
import { readFileSync } from 'node:fs'
import { silentLogger, type Logger } from '../log.js'
import type { DebArch } from './apt.js'
import type { ProgressFn } from './debian.js'
import { buildImage, type BuiltAssets } from './image.js'
import { AGENT_MODULES, agentModules } from './initramfs.js'
import { fakeTalosInitScript, ipv6Script, udhcpcScript } from './scripts.js'

export interface FakeTalosOptions {
  /** Written: outDir/vmlinuz and outDir/fake-talos.img. Give each architecture its own outDir. */
  outDir: string
  /** Debian architecture (default amd64). */
  arch?: DebArch
  cacheDir: string
  log?: Logger
  onProgress?: ProgressFn
  kernelPackage?: string
  force?: boolean
}

/** The awk program that rewrites talos.config= URLs as Talos does (also used by tests directly). */
export function talosUrlAwk(): string {
  return readFileSync(new URL('./sh/talos-url.awk', import.meta.url), 'utf8')
}

export const talosUrlAwkPath = (): string => new URL('./sh/talos-url.awk', import.meta.url).pathname

export function buildFakeTalosAssets(options: FakeTalosOptions): Promise<BuiltAssets> {
  const arch = options.arch ?? 'amd64'
  // The agent's QEMU and PC drivers: on arm64 only virtio_pci and virtio_net must exist, the rest come when present.
  const modules = agentModules(arch)
  const optional = AGENT_MODULES.filter((m) => !modules.required.includes(m))
  return buildImage({
    imageName: 'fake-talos.img',
    outDir: options.outDir,
    cacheDir: options.cacheDir,
    log: options.log ?? silentLogger(),
    onProgress: options.onProgress,
    kernelPackage: options.kernelPackage,
    arch,
    modules: modules.required,
    ...(arch === 'amd64' ? {} : { optionalModules: optional }),
    init: fakeTalosInitScript(),
    files: [
      { path: 'etc/rackboot/udhcpc.script', data: udhcpcScript(), mode: 0o755 },
      { path: 'etc/fake-talos/url.awk', data: talosUrlAwk() },
      { path: 'etc/rackboot/ipv6.sh', data: ipv6Script() },
    ],
    force: options.force,
  })
}
