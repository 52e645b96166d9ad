// What rackboot knows about particular Redfish services, as data: who made the BMC (from its service root, or its
// Manager when the root does not say), the quirks it is known for, and the "try again later" errors each vendor
// answers with. Every entry names the public issue, source or document it comes from.
import type { Json } from './client.js'

export type Vendor = 'hpe' | 'dell' | 'supermicro' | 'lenovo' | 'ami' | 'openbmc' | 'sushy-emulator'

export interface Quirk {
  name: string
  /** The vendors it is seen on; 'all' for behaviour rackboot applies to every BMC. */
  vendors: Vendor[] | 'all'
  reference: string
  /** What rackboot does about it. */
  effect: string
}

export const QUIRKS: readonly Quirk[] = [
  {
    name: 'identity-encoding', vendors: 'all',
    reference: 'https://github.com/openstack/sushy/blob/master/sushy/connector.py',
    effect: 'every request asks for Accept-Encoding: identity: gzip makes BMCs hand out weak ETags',
  },
  {
    name: 'if-match-on-patch', vendors: 'all',
    reference: 'https://github.com/stmcginnis/gofish/issues/171',
    effect: 'a PATCH carries the ETag just read, as given (AMI-based BMCs answer 428 without it); 412/428 re-reads it once',
  },
  {
    name: 'weak-etag-strong-retry', vendors: 'all',
    reference: 'https://github.com/ansible-collections/community.general/pull/6434',
    effect: 'a PATCH whose weak ETag (W/"x") is answered 412 is sent once more with the strong form ("x"), as sushy does',
  },
  {
    name: 'boot-override-readback', vendors: 'all',
    reference: 'https://github.com/bmc-toolbox/bmclib/pull/459',
    effect: 'a boot override answered 2xx is read back; fields that did not stick are an error naming each one',
  },
  {
    name: 'boot-mode-refused', vendors: ['hpe'],
    reference: 'https://github.com/bmc-toolbox/bmclib/pull/318',
    effect: 'a boot PATCH refused with BootSourceOverrideMode is sent once without it; the read-back decides',
  },
  {
    name: 'once-reads-continuous', vendors: ['sushy-emulator'],
    reference: 'https://github.com/openstack/sushy-tools/blob/master/sushy_tools/emulator/templates/system.json',
    effect: 'Once read back as Continuous is accepted with fallback "continuous"; the caller clears it after the boot',
  },
  {
    name: 'boot-in-settings-object', vendors: ['dell', 'ami'],
    reference: 'https://github.com/DMTF/Redfish-Tacklebox/issues/144',
    effect: 'where Boot is read-only on the system, the override goes to its @Redfish.Settings object and is read back there',
  },
  {
    name: 'advertised-reset-refused', vendors: 'all',
    reference: 'https://github.com/quadsproject/badfish/issues/10',
    effect: 'a ResetType answered 400/405/501 (advertised, then refused) moves on to the next candidate: nothing ran',
  },
  {
    name: 'ilo-busy-during-post', vendors: ['hpe'],
    reference: 'https://github.com/ironcore-dev/metal-operator/issues/997',
    effect: 'iLO UnableToModifyDuringSystemPOST is a temporary error: busy, not run, retried after the POST',
  },
  {
    name: 'ilo-invalid-state', vendors: ['hpe'],
    reference: 'https://github.com/openstack/sushy/blob/master/sushy/connector.py',
    effect: 'iLO InvalidOperationForSystemState is a temporary error: busy, not run',
  },
  {
    name: 'idrac-sys518', vendors: ['dell'],
    reference: 'https://github.com/ironcore-dev/metal-operator/issues/170',
    effect: 'iDRAC SYS518 (data sources unavailable, 500 or 503) is a temporary error: busy, not run',
  },
  {
    name: 'idrac-409-power-on', vendors: ['dell'],
    reference: 'https://github.com/dell/dellemc-openmanage-ansible-modules/issues/132',
    effect: 'iDRAC answers 409 to a power-on it will not do now (PSU501 "already powered ON"): busy, not run; the read-back decides',
  },
  {
    name: 'service-temporarily-unavailable', vendors: 'all',
    reference: 'https://github.com/openbmc/bmcweb/blob/master/redfish-core/src/utils/dbus_utils.cpp',
    effect: 'Base ServiceTemporarilyUnavailable is busy, not run, with the wait its first argument names',
  },
]

/** A vendor's "try again later" answer: proves the request was not carried out, and says roughly when to retry. */
export interface TemporaryError {
  /** The quirk (QUIRKS) it belongs to. */
  quirk: string
  /** Matches one MessageId of the error body; absent when the rule is by status alone. */
  messageId?: RegExp
  /** Only these HTTP statuses (any when absent). */
  status?: number[]
  /** Only for these vendors (any when absent: the message ids are vendor-prefixed anyway). */
  vendors?: Vendor[]
  /** Only for ComputerSystem.Reset with one of these ResetTypes. */
  resetTypes?: string[]
  /** Wait when neither Retry-After nor the message says. */
  defaultWaitMs: number
  /** The message argument holding the wait in seconds, when the message has one. */
  waitArg?: number
}

export const TEMPORARY_ERRORS: readonly TemporaryError[] = [
  // A ProLiant in POST refuses changes for the minutes POST lasts (iLO.2.37.UnableToModifyDuringSystemPOST, HTTP 400).
  { quirk: 'ilo-busy-during-post', messageId: /^iLO\.[\d.]+\.UnableToModifyDuringSystemPOST$/, defaultWaitMs: 30_000 },
  // sushy retries it as "iLO is not ready after previous operation" (iLO.2.15.InvalidOperationForSystemState, 400).
  { quirk: 'ilo-invalid-state', messageId: /^iLO\.[\d.]+\.InvalidOperationForSystemState$/, defaultWaitMs: 10_000 },
  // "iDRAC is currently unable to display any information because data sources are unavailable" (IDRAC.2.8.SYS518),
  // sent with 503 and with 500; sushy retries it too.
  { quirk: 'idrac-sys518', messageId: /^IDRAC\.[\d.]+\.SYS518$/i, defaultWaitMs: 30_000 },
  // DMTF Base registry: "The service is temporarily unavailable. Retry in %1 seconds." (bmcweb sends it with "10").
  { quirk: 'service-temporarily-unavailable', messageId: /^Base\.[\d.]+\.ServiceTemporarilyUnavailable$/, waitArg: 0, defaultWaitMs: 10_000 },
  // iDRAC's 409 to a power-on (PSU501 and others): the BMC did not act on it.
  { quirk: 'idrac-409-power-on', status: [409], vendors: ['dell'], resetTypes: ['On', 'ForceOn'], defaultWaitMs: 10_000 },
]

export interface ErrorContext {
  status: number
  /** MessageIds of the error body, with each one's MessageArgs. */
  messages: { id: string; args: string[] }[]
  vendor: Vendor | null
  /** The ResetType of the request, when it was a ComputerSystem.Reset. */
  resetType?: string
}

/** The temporary-error rule an answer matches, and the wait it suggests (ms); null when it is not one. */
export function temporaryError(ctx: ErrorContext): { rule: TemporaryError; waitMs: number } | null {
  for (const rule of TEMPORARY_ERRORS) {
    if (rule.status && !rule.status.includes(ctx.status)) continue
    if (rule.vendors && (!ctx.vendor || !rule.vendors.includes(ctx.vendor))) continue
    if (rule.resetTypes && (!ctx.resetType || !rule.resetTypes.includes(ctx.resetType))) continue
    const message = rule.messageId ? ctx.messages.find((m) => rule.messageId!.test(m.id)) : undefined
    if (rule.messageId && !message) continue
    const seconds = rule.waitArg !== undefined ? Number(message?.args[rule.waitArg]) : NaN
    return { rule, waitMs: Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : rule.defaultWaitMs }
  }
  return null
}

// Service root Oem keys and Vendor strings, lower-cased, to vendor.
const OEM_KEYS: Record<string, Vendor> = {
  hpe: 'hpe', hp: 'hpe', dell: 'dell', supermicro: 'supermicro', lenovo: 'lenovo', ami: 'ami', openbmc: 'openbmc',
}
const NAME_PATTERNS: [RegExp, Vendor][] = [
  [/\b(hpe?|hewlett|ilo)\b/i, 'hpe'],
  [/\b(dell|idrac)\b/i, 'dell'],
  [/supermicro/i, 'supermicro'],
  [/\b(lenovo|xclarity|xcc)\b/i, 'lenovo'],
  [/\b(ami|megarac)\b/i, 'ami'],
  [/openbmc/i, 'openbmc'],
]

function vendorOfName(name: unknown): Vendor | null {
  if (typeof name !== 'string' || !name.trim()) return null
  return NAME_PATTERNS.find(([re]) => re.test(name))?.[1] ?? null
}

/**
 * The vendor a service root says (Vendor, then Oem keys, then Product); sushy-tools' emulator has none of these
 * and is known by its root's Id "RedvirtService" / Name "Redvirt Service" (sushy_tools/emulator/templates/root.json).
 */
export function vendorFromRoot(root: Json): Vendor | null {
  const fromVendor = vendorOfName(root.Vendor)
  if (fromVendor) return fromVendor
  const oem = root.Oem && typeof root.Oem === 'object' ? Object.keys(root.Oem as Json) : []
  for (const key of oem) {
    const vendor = OEM_KEYS[key.toLowerCase()]
    if (vendor) return vendor
  }
  const fromProduct = vendorOfName(root.Product)
  if (fromProduct) return fromProduct
  if (root.Id === 'RedvirtService' || root.Name === 'Redvirt Service') return 'sushy-emulator'
  return null
}

/** The vendor a Manager resource says (Manufacturer, Model such as "iDRAC 9" or "iLO 5"). */
export function vendorFromManager(manager: Json): Vendor | null {
  return vendorOfName(manager.Manufacturer) ?? vendorOfName(manager.Model)
}

/** Names of the quirks in force for a vendor (an unknown vendor gets the ones every BMC gets). */
export function quirksFor(vendor: Vendor | null): string[] {
  return QUIRKS.filter((q) => q.vendors === 'all' || (vendor !== null && q.vendors.includes(vendor))).map((q) => q.name)
}
