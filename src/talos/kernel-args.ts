import { RackbootError } from '../errors.js'
import type { Arch } from '../inventory/types.js'
import { Cmdline } from './cmdline.js'
import { parseTalosVersion, versionAtLeast, type TalosVersion } from './version.js'

// Kernel arguments for PXE-booting Talos, rebuilt the way Talos's imager builds `cmdline-metal-<arch>`
// (pkg/imager/imager.go buildCmdline): talos.platform, the platform's console args, kernel.DefaultArgs(quirks),
// then extra args that may override console/talos.platform and delete with `-arg`. Version gates are the imager
// quirks (shared/reference/talos.md §1.4); they ignore pre-release tags, so v1.14.0-rc.1 counts as 1.14.0.

export interface KernelArgsOptions {
  talosVersion: string | TalosVersion
  arch: Arch
  /** Only 'metal' is supported: rackboot boots bare metal. */
  platform?: 'metal'
  /** `talos.config=<url>`: where Talos fetches its machine config. */
  configUrl?: string
  /** Replaces the platform's console args, e.g. ['ttyS0,115200n8', 'tty0'] (the last one is /dev/console). */
  console?: readonly string[]
  /** `talos.events.sink=<host:port>` (plaintext gRPC EventSinkService). */
  eventsSink?: string
  /** `talos.logging.kernel=<tcp|udp://host:port/>` (kernel log as JSON lines). */
  loggingKernel?: string
  /** SecureBoot images add lockdown=confidentiality below 1.14. */
  secureBoot?: boolean
  /**
   * Extra args, applied last as a schematic's extraKernelArgs are: `console=` and `talos.platform=` replace,
   * `-name` removes every value of name, `-name=value` removes one value, anything else is added.
   */
  extra?: readonly string[]
}

/** Linux truncates longer command lines; Talos's docs warn at 4096 bytes (talos.md §2.7). */
export const MAX_CMDLINE_BYTES = 4096

// KSPP parameters Talos refuses to boot without (pkg/kernel/kspp RequiredKSPPKernelParameters).
const REQUIRED_KSPP: ReadonlyArray<[string, string]> = [['slab_nomerge', ''], ['pti', 'on']]

function validationError(message: string, details?: unknown): RackbootError {
  return new RackbootError('RB_ERR_VALIDATION', message, { details })
}

/** The metal platform's console args (platform/metal/metal.go KernelArgs). */
function metalConsole(v: TalosVersion, arch: Arch): string[] {
  if (arch === 'arm64') return ['ttyAMA0', 'tty0']
  // ttyS0 was dropped for amd64 in 1.8 (quirk SupportsMetalPlatformConsoleTTYS0).
  return versionAtLeast(v, 1, 8) ? ['tty0'] : ['ttyS0', 'tty0']
}

/** kernel.DefaultArgs(quirks) from pkg/machinery/kernel/kernel.go. */
function defaultArgs(v: TalosVersion): string[] {
  const args: string[] = []
  if (!versionAtLeast(v, 1, 14)) args.push('init_on_alloc=1')
  args.push('slab_nomerge', 'pti=on', 'consoleblank=0')
  // From 1.14 nvme_core.io_timeout is set only on AWS.
  if (!versionAtLeast(v, 1, 14)) args.push('nvme_core.io_timeout=4294967295')
  args.push('printk.devkmsg=on')
  // IMA up to 1.10.x (maxTalosVersionIMASupported = 1.10.99).
  if (!versionAtLeast(v, 1, 11)) args.push('ima_template=ima-ng', 'ima_appraise=fix', 'ima_hash=sha512')
  if (versionAtLeast(v, 1, 10)) args.push('selinux=1')
  if (versionAtLeast(v, 1, 12)) args.push('module.sig_enforce=1')
  if (versionAtLeast(v, 1, 13)) args.push('proc_mem.force_override=never')
  return args
}

/**
 * The command line Talos's own imager produces for `cmdline-metal-<arch>` of that version: exactly what
 * Image Factory serves for the vanilla schematic.
 */
export function defaultKernelArgs(talosVersion: string | TalosVersion, arch: Arch): string[] {
  const v = parseTalosVersion(talosVersion)
  const cmdline = new Cmdline(['talos.platform=metal'])
  cmdline.set('console', metalConsole(v, arch))
  cmdline.appendAll(defaultArgs(v))
  return cmdline.strings()
}

function checkArgValue(name: string, value: string): void {
  if (value === '' || /\s/.test(value)) {
    throw validationError(`kernel argument ${name} must be a non-empty value without whitespace`, { [name]: value })
  }
}

function checkConfigUrl(url: string): void {
  checkArgValue('talos.config', url)
  // Talos accepts http(s), tftp and file URLs, or the keywords metal-iso / none (platform/metal/metal.go).
  if (url === 'none' || url === 'metal-iso') return
  let scheme: string
  try {
    scheme = new URL(url).protocol
  } catch (cause) {
    throw new RackbootError('RB_ERR_VALIDATION', `talos.config is not a URL: ${url}`, { cause })
  }
  if (!['http:', 'https:', 'tftp:', 'file:'].includes(scheme)) {
    throw validationError(`talos.config must be an http(s), tftp or file URL, got ${scheme}`, { configUrl: url })
  }
}

/**
 * The full kernel argument list for PXE-booting Talos `talosVersion` on `arch`: the version's imager defaults,
 * then rackboot's own args (config URL, events sink, kernel log), then `extra`.
 */
export function kernelArgs(options: KernelArgsOptions): string[] {
  const v = parseTalosVersion(options.talosVersion)
  const platform = options.platform ?? 'metal'
  if (platform !== 'metal') throw validationError(`unsupported Talos platform '${String(platform)}' (only metal)`)
  if (options.arch !== 'amd64' && options.arch !== 'arm64') {
    throw validationError(`unsupported architecture '${String(options.arch)}' (amd64 or arm64)`)
  }

  const cmdline = new Cmdline(['talos.platform=metal'])
  cmdline.set('console', metalConsole(v, options.arch))
  if (options.console !== undefined) {
    if (options.console.length === 0) cmdline.deleteAll('console')
    else {
      for (const c of options.console) checkArgValue('console', c)
      cmdline.set('console', options.console)
    }
  }
  cmdline.appendAll(defaultArgs(v))
  if (options.secureBoot && !versionAtLeast(v, 1, 14)) cmdline.appendAll(['lockdown=confidentiality'])

  if (options.configUrl !== undefined) {
    checkConfigUrl(options.configUrl)
    cmdline.set('talos.config', [options.configUrl])
  }
  if (options.eventsSink !== undefined) {
    checkArgValue('talos.events.sink', options.eventsSink)
    cmdline.set('talos.events.sink', [options.eventsSink])
  }
  if (options.loggingKernel !== undefined) {
    checkArgValue('talos.logging.kernel', options.loggingKernel)
    cmdline.set('talos.logging.kernel', [options.loggingKernel])
  }
  if (options.extra?.length) {
    cmdline.appendAll(options.extra, { overwrite: ['console', 'talos.platform'], deleteNegated: true })
  }

  if (cmdline.get('talos.platform')?.[0] !== 'metal') {
    throw validationError('extra kernel args must not change talos.platform away from metal', { extra: options.extra })
  }
  for (const [key, value] of REQUIRED_KSPP) {
    if (!cmdline.get(key)?.includes(value)) {
      throw validationError(`Talos refuses to boot without ${value ? `${key}=${value}` : key} (KSPP)`, { extra: options.extra })
    }
  }
  const args = cmdline.strings()
  const bytes = Buffer.byteLength(args.join(' '))
  if (bytes > MAX_CMDLINE_BYTES) {
    throw validationError(`kernel command line is ${bytes} bytes, longer than ${MAX_CMDLINE_BYTES}`, { bytes })
  }
  return args
}
