// Shared by both modes: asking the lifecycle for per-machine advice (bounded in time, failures counted), and turning
// a boot choice into reply modifiers.
import type { Logger } from '../log.js'
import type { BootChoice, BootOverride } from './boot-file.js'
import type { RequestFacts } from './facts.js'
import type { DhcpMetrics } from './metrics.js'
import type { MissingLoaderReporter } from './missing-loaders.js'
import {
  withBootFile, withIpxeOptions, withNextServer, withPxeVendor, withVendorClass, type Modifier,
} from './modifiers.js'
import type { DhcpBootAdvice, DhcpBootEvent, DhcpBootPort } from './ports.js'
import { DISCOVERY_USE_BOOT_FILE } from './pxe-vendor.js'

export interface AdviceDeps {
  bootPort: DhcpBootPort
  timeoutMs: number
  metrics: DhcpMetrics
  log: Logger
  /** Told of every boot choice a reply is about to carry: says when its loader is not on this server. */
  missingLoader?: MissingLoaderReporter
}

const TIMEOUT = Symbol('timeout')

/**
 * The advice `ask` gives within `timeoutMs`; a failure or a timeout yields no advice (`failed` is told which), never
 * a failed reply. DHCPv4 (consultBootPort) and DHCPv6 (dhcp6/handler.ts) ask the lifecycle through it.
 */
export async function adviceWithin(
  ask: () => Promise<DhcpBootAdvice | void>, timeoutMs: number, failed: (kind: 'timeout' | 'error', err?: unknown) => void,
): Promise<DhcpBootAdvice> {
  let timer: NodeJS.Timeout | undefined
  let pending: Promise<DhcpBootAdvice | void>
  try {
    pending = ask()
  } catch (err) {
    failed('error', err)
    return {}
  }
  try {
    const result = await Promise.race([
      pending,
      new Promise<typeof TIMEOUT>((resolve) => {
        timer = setTimeout(resolve, timeoutMs, TIMEOUT)
      }),
    ])
    if (result === TIMEOUT) {
      failed('timeout')
      pending.catch(() => undefined)
      return {}
    }
    return result ?? {}
  } catch (err) {
    failed('error', err)
    return {}
  } finally {
    clearTimeout(timer)
  }
}

/** Asks the port; a failure or a timeout yields no advice (counted), never a failed reply. */
export function consultBootPort(deps: AdviceDeps, facts: RequestFacts, event: DhcpBootEvent): Promise<DhcpBootAdvice> {
  return adviceWithin(() => deps.bootPort.inspect(facts, event), deps.timeoutMs, (kind, err) => {
    deps.metrics.portFailure(kind)
    if (kind === 'timeout') deps.log.warn({ mac: facts.mac, timeoutMs: deps.timeoutMs }, 'dhcp boot port timed out; replying without advice')
    else deps.log.warn({ err, mac: facts.mac }, 'dhcp boot port failed')
  })
}

/** The boot file or next server the advice puts in place of the table's choice; null when it names neither. */
export function overrideOf(advice: DhcpBootAdvice): BootOverride | null {
  if (advice.bootFile === undefined && advice.nextServer === undefined) return null
  const override: BootOverride = {}
  if (advice.bootFile !== undefined) override.bootFile = advice.bootFile
  if (advice.nextServer !== undefined) override.nextServer = advice.nextServer
  return override
}

/** Tells the port about an exchange without waiting (NAKs, releases): the timeline still sees it. */
export function notifyBootPort(deps: AdviceDeps, facts: RequestFacts, event: DhcpBootEvent): void {
  try {
    deps.bootPort.inspect(facts, event).catch((err: unknown) => {
      deps.metrics.portFailure('error')
      deps.log.warn({ err, mac: facts.mac }, 'dhcp boot port failed')
    })
  } catch (err) {
    deps.metrics.portFailure('error')
    deps.log.warn({ err, mac: facts.mac }, 'dhcp boot port failed')
  }
}

export function choiceTarget(choice: BootChoice): string | undefined {
  switch (choice.kind) {
    case 'tftp':
      return choice.file
    case 'ipxe-script':
    case 'http':
      return choice.url
    default:
      return undefined
  }
}

export interface BootModifierOptions {
  mode: 'full' | 'proxy'
  ipxeNoPxedhcp: boolean
}

/**
 * Reply modifiers for a boot choice.
 * - PXE firmware: siaddr + file, option 60 "PXEClient" and 43 with discovery control 8 ("boot the file given here,
 *   skip boot server discovery"). In proxy mode UEFI firmware gets no option 43: EDK2-based firmware does not boot
 *   from a ProxyDHCP offer that carries one, and instead asks the boot server on 4011, which answers with the file.
 * - iPXE: the script URL; option 175.176 (no-pxedhcp) in full mode so it does not wait for ProxyDHCP offers; in
 *   proxy mode option 60 "PXEClient", which is how iPXE recognises a ProxyDHCP offer.
 * - UEFI HTTP boot: the http:// URL and option 60 "HTTPClient", which the firmware requires.
 */
export function bootModifiers(facts: RequestFacts, choice: BootChoice, o: BootModifierOptions): Modifier[] {
  switch (choice.kind) {
    case 'none':
      return []
    case 'tftp': {
      const mods: Modifier[] = []
      if (choice.nextServer) mods.push(withNextServer(choice.nextServer))
      mods.push(withBootFile(choice.file), withVendorClass('PXEClient'))
      const uefi = facts.arch?.firmware === 'uefi'
      if (o.mode === 'full' || !uefi) mods.push(withPxeVendor({ discoveryControl: DISCOVERY_USE_BOOT_FILE }))
      return mods
    }
    case 'ipxe-script': {
      const mods: Modifier[] = []
      if (choice.nextServer) mods.push(withNextServer(choice.nextServer))
      mods.push(withBootFile(choice.url))
      if (o.mode === 'proxy') mods.push(withVendorClass('PXEClient'))
      else if (o.ipxeNoPxedhcp) mods.push(withIpxeOptions({ noPxedhcp: true }))
      return mods
    }
    case 'http':
      return [withVendorClass('HTTPClient'), withBootFile(choice.url)]
  }
}
