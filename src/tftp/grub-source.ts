// GRUB over TFTP. A GRUB netboot image (grub-mknetdir) whose prefix is on TFTP asks, in normal mode, for
// <prefix>/grub.cfg-01-<mac> first (2.12 asks grub.cfg-<uuid> before it), then grub.cfg-<hex of its address>
// shortened a digit at a time, then grub.cfg; and it loads its modules and lists (<cpu>-<platform>/*.mod, *.lst)
// from the same place. This answers grub.cfg-01-<mac> with the machine's config, generated the way /boot.ipxe is
// (the caller's `config`, which asks the lifecycle), serves a bootstrap for a grub.cfg that is not on disk, and keeps
// GRUB's other probes for files that are not there off the boot timeline: "not found" to GRUB, a counter here.
//
//   const grub = createGrubTftp({ config: (mac, ip) => configs.forMac({ mac }, ip, base), bootstrap: () => configs.bootstrap(base), files, registry })
//   grub.attach(routingSource)
//   createTftpServer({ ..., observer: grub.quiet(timelineObserver) })
import { Counter, type Registry } from 'prom-client'
import type { Logger } from '../log.js'
import type { TftpObserver, TftpTransferInfo } from './server.js'
import { bufferContent, type RoutingSource, type TftpClient, type TftpHandler, type TftpSource } from './source.js'

/** grub.cfg-01-<mac> in any directory (GRUB writes the MAC in lowercase with dashes; case is not relied on). */
export const GRUB_CONFIG_ROUTE = /(?:^|\/)grub\.cfg-01-((?:[0-9a-f]{2}-){5}[0-9a-f]{2})$/i
/** A plain grub.cfg in any directory. */
export const GRUB_BOOTSTRAP_ROUTE = /(?:^|\/)grub\.cfg$/

/** `<cpu>-<platform>` directories GRUB loads modules and lists from (x86_64-efi, i386-pc, arm64-efi...). */
const MODULE_DIR = /(?:^|\/)(?:x86_64|i386|arm64|arm|riscv32|riscv64|loongarch64|ia64|powerpc|sparc64|mips|mipsel)-[a-z0-9_]+\/[^/]+\.(?:mod|lst|cfg|sh)$/

export type GrubProbeKind = 'config' | 'module' | 'locale' | 'font' | 'env'

/** What a GRUB file name is, when it is one GRUB asks for on its own (and may well not exist); else null. */
export function grubProbeKind(path: string): GrubProbeKind | null {
  const p = path.replace(/^\/+/, '')
  const base = p.slice(p.lastIndexOf('/') + 1)
  if (/^grub\.cfg(?:-[0-9A-Za-z.:-]{1,64})?$/.test(base)) return 'config'
  if (MODULE_DIR.test(p)) return 'module'
  if (/(?:^|\/)locale\/[^/]+\.mo$/.test(p)) return 'locale'
  if (/(?:^|\/)fonts\/[^/]+\.pf2$/.test(p)) return 'font'
  if (base === 'grubenv') return 'env'
  return null
}

export interface GrubTftpDeps {
  /** The machine's config for a MAC GRUB names (aa-bb-cc-dd-ee-ff), asked from `clientIp`: the lifecycle decides. */
  config(mac: string, clientIp: string): Promise<string>
  /** The bootstrap config, served for a grub.cfg that is not on disk; absent: such a grub.cfg is just not found. */
  bootstrap?: () => string
  /** The operator's files (the TFTP file source): a grub.cfg there wins over the bootstrap. */
  files?: TftpSource
  registry?: Registry
  log?: Logger
  now?: () => number
  /** How long a config just served is served again, as is, to the same address (default 5 s); see `attach`. */
  reuseMs?: number
}

export interface GrubTftp {
  /** The per-machine config handler (route GRUB_CONFIG_ROUTE). */
  config: TftpHandler
  /** The bootstrap handler (route GRUB_BOOTSTRAP_ROUTE); returns null where no bootstrap is configured. */
  bootstrap: TftpHandler
  /** Registers both handlers on a routing source; returns a function that removes them. */
  attach(source: RoutingSource): () => void
  /** Wraps the timeline observer: a GRUB probe for a file that is not there is counted, not passed on. */
  quiet(observer: TftpObserver): TftpObserver
}

const MAX_REUSE_ENTRIES = 4096

export function createGrubTftp(deps: GrubTftpDeps): GrubTftp {
  const now = deps.now ?? Date.now
  const reuseMs = deps.reuseMs ?? 5_000
  const registers = deps.registry ? [deps.registry] : []
  const served = new Counter({ name: 'rackboot_tftp_grub_configs_total', help: 'Per-machine GRUB configs asked for over TFTP (grub.cfg-01-<mac>), by result', labelNames: ['result'] as const, registers })
  const probes = new Counter({ name: 'rackboot_tftp_grub_probes_total', help: 'GRUB probes over TFTP for files that are not there (other config names, optional modules, locales, fonts): answered "not found", kept off the timeline', labelNames: ['kind'] as const, registers })

  // GRUB opens the config it found, closes it, and opens it again to read it: two requests within milliseconds.
  // The second gets the same bytes (one plan, one token per boot), not a second plan.
  const recent = new Map<string, { text: string; at: number }>()
  function remembered(key: string): string | null {
    const hit = recent.get(key)
    if (!hit) return null
    if (now() - hit.at > reuseMs) {
      recent.delete(key)
      return null
    }
    return hit.text
  }
  function remember(key: string, text: string): void {
    recent.delete(key)
    recent.set(key, { text, at: now() })
    while (recent.size > MAX_REUSE_ENTRIES) recent.delete(recent.keys().next().value!)
  }

  const config: TftpHandler = async (path: string, client: TftpClient) => {
    const m = GRUB_CONFIG_ROUTE.exec(path)
    if (!m) return null
    const mac = m[1]!.toLowerCase()
    const key = `${client.address}|${mac}`
    const again = remembered(key)
    if (again !== null) {
      served.inc({ result: 'reused' })
      return bufferContent(again)
    }
    try {
      const text = await deps.config(mac, client.address)
      remember(key, text)
      served.inc({ result: 'served' })
      return bufferContent(text)
    } catch (err) {
      // The TFTP server answers "internal server error" and the timeline shows the failed step.
      served.inc({ result: 'error' })
      deps.log?.warn({ err, client: client.address, mac }, 'cannot make a GRUB config')
      throw err
    }
  }

  const bootstrap: TftpHandler = async (path: string, client: TftpClient) => {
    if (!deps.bootstrap || !GRUB_BOOTSTRAP_ROUTE.test(path)) return null
    const onDisk = deps.files ? await deps.files.open(path, client) : null
    if (onDisk !== null) return onDisk
    return bufferContent(deps.bootstrap())
  }

  return {
    config,
    bootstrap,
    attach(source) {
      const off = [source.register(GRUB_CONFIG_ROUTE, config), source.register(GRUB_BOOTSTRAP_ROUTE, bootstrap)]
      return () => off.forEach((f) => f())
    },
    quiet(observer) {
      return {
        transferFinished(info: TftpTransferInfo) {
          const kind = !info.ok && !info.aborted && /not found/i.test(info.error ?? '') ? grubProbeKind(info.file) : null
          if (kind) {
            probes.inc({ kind })
            deps.log?.debug({ client: info.client.address, file: info.file }, 'GRUB probe: not found')
            return
          }
          observer.transferFinished(info)
        },
      }
    },
  }
}
