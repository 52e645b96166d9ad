// The one interface every BMC driver implements (DESIGN.md "Power"). Drivers know bytes and HTTP; they hold no
// queue, no retry policy and no credentials store: the power manager adds those around them.
import type { BmcType } from '../inventory/types.js'

export type PowerState = 'on' | 'off'

/** What the manager can ask a BMC to do with the machine's power. */
export type PowerAction = 'on' | 'off' | 'soft-off' | 'cycle' | 'reset'

export const POWER_ACTIONS: readonly PowerAction[] = ['on', 'off', 'soft-off', 'cycle', 'reset']

/**
 * Next-boot devices rackboot sets. `none` clears an override (boot the firmware's own order); `cd` is the virtual
 * media drive (Redfish Cd); `http` is UEFI HTTP boot (Redfish UefiHttp, with `uri`).
 */
export type BootDevice = 'pxe' | 'disk' | 'cd' | 'http' | 'none'

export type BootMode = 'uefi' | 'bios'

export interface BootOverride {
  device: BootDevice
  /** Firmware mode for the override; omitted means "whatever the firmware uses" (no mode is sent). */
  mode?: BootMode
  /** Every boot from now on, rather than the next boot only. */
  persistent?: boolean
  /** `http` only: the boot file's URL (Redfish HttpBootUri); without it the firmware asks DHCP. */
  uri?: string
}

/** What the BMC says its next-boot override is, as read back. Fields a BMC does not report are null. */
export interface BootReadback {
  /** `other` for devices rackboot never sets (CD, diag, BIOS setup, ...). */
  device: BootDevice | 'other'
  mode: BootMode | null
  persistent: boolean | null
  /** The override is in force (IPMI "boot flags valid", Redfish Enabled != Disabled). */
  enabled: boolean
  /** The raw value from the BMC, for logs and the timeline (IPMI: the 5 data bytes in hex; Redfish: the target). */
  raw: string
  /**
   * Which fields of the request the read-back confirmed. A field the BMC does not keep or report (ipmi_sim drops
   * mode and persistence; `ipmiBootVerify: device`) is false: callers must not say it was verified.
   */
  verified?: { device: boolean; mode: boolean; persistent: boolean }
  /**
   * Set when the BMC kept a different persistence than asked and the driver accepted it as a documented fallback:
   * `continuous` = asked for the next boot only, the BMC keeps it for every boot; the caller clears it after the boot.
   */
  fallback?: 'continuous'
}

export type Capability =
  | 'power.status'
  | 'power.on'
  | 'power.off'
  | 'power.soft-off'
  | 'power.cycle'
  | 'power.reset'
  | 'boot.pxe'
  | 'boot.disk'
  | 'boot.uefi'
  | 'boot.bios'
  | 'boot.persistent'
  | 'boot.readback'
  | 'boot.cd'
  | 'boot.http'
  | 'media.virtual'
  | 'identify'

export interface CallOptions {
  /** Aborts the call (the manager's per-operation timeout); the driver then throws a timeout PowerError. */
  signal?: AbortSignal
  /**
   * Called just before the request that changes the machine (Chassis Control, ComputerSystem.Reset, InsertMedia)
   * leaves. From then on a failure is ambiguous (the BMC may have done it) unless the error has `notRun`: the
   * manager never re-sends such a request; it reads the BMC back instead.
   */
  onSend?: () => void
}

export interface BmcDriver {
  readonly type: BmcType
  /** What this BMC can do. Redfish asks the BMC (AllowableValues); IPMI answers from the protocol. */
  capabilities(options?: CallOptions): Promise<Capability[]>
  powerStatus(options?: CallOptions): Promise<PowerState>
  power(action: PowerAction, options?: CallOptions): Promise<void>
  /**
   * Sets the next boot device and reads it back. Resolves with the readback only when it matches what was asked;
   * an override the BMC accepted and dropped throws a PowerError of kind `not-applied`.
   */
  setBootDevice(override: BootOverride, options?: CallOptions): Promise<BootReadback>
  getBootDevice(options?: CallOptions): Promise<BootReadback>
  /**
   * Virtual media (Redfish VirtualMedia, the CD-type slot): insert the image at `url` (the BMC fetches it), eject.
   * Drivers without virtual media throw `unsupported`.
   */
  insertMedia(url: string, options?: CallOptions): Promise<void>
  ejectMedia(options?: CallOptions): Promise<void>
  /** What the driver learnt of the BMC (Redfish vendor and the quirks applied); null before the first call. */
  describe?(): BmcDescription | null
  /** Chassis identify light: on for `seconds` (IPMI; 0 = off), or on until turned off (Redfish). */
  identify(on: boolean, options?: CallOptions & { seconds?: number }): Promise<void>
  /** Ends any session the driver holds (Redfish logout, IPMI close). Safe to call twice. */
  close(): Promise<void>
}

export interface BmcDescription {
  vendor: string | null
  model: string | null
  /** Names of the quirks in force (src/power/redfish/quirks.ts). */
  quirks: string[]
}

/** Where and how to reach one BMC: the shape of `BmcRepository.get` (src/inventory), less what drivers ignore. */
export interface BmcTarget {
  type: BmcType
  /** Host name or IP; for Redfish also a full `https://host:port` (or an explicit `http://` URL, for labs). */
  address: string
  port: number | null
  /** Redfish TLS: skip verification (explicit, per BMC). */
  insecure: boolean
  /** Redfish TLS: sha256 fingerprint of the pinned certificate (hex, colons optional). */
  fingerprint: string | null
  /** Redfish: the system to drive on a service with several (its Id or full @odata.id path). */
  systemId?: string | null
  /** Redfish TLS: a CA (PEM) trusted for this BMC besides the system store. */
  caPem?: string | null
  /** Redfish: session (X-Auth-Token), basic, or auto (session, Basic where the BMC has no SessionService). */
  auth?: 'auto' | 'session' | 'basic'
  /** IPMI: cipher suites in the order tried; null: the settings' default. */
  cipherSuites?: (3 | 17)[] | null
  /** IPMI: session privilege; null: administrator. */
  privilege?: 'user' | 'operator' | 'administrator' | null
  /** IPMI: boot override read-back strictness; null: the settings' default. */
  bootVerify?: 'strict' | 'device' | null
}

export interface BmcCredentials {
  username: string | null
  password: string | null
  /** IPMI BMC key K_G (two-key login), when the BMC has one set. */
  kg?: Buffer | null
}
