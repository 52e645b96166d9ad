// The one interface every BMC driver implements (DESIGN.md "Power"). Drivers know bytes and HTTP; they hold no
// queue, no retry policy and no credentials store: the power manager adds those around them.
import type { BmcType } from '../inventory/types.js'

export type PowerState = 'on' | 'off'

/** What the manager can ask a BMC to do with the machine's power. */
export type PowerAction = 'on' | 'off' | 'soft-off' | 'cycle' | 'reset'

export const POWER_ACTIONS: readonly PowerAction[] = ['on', 'off', 'soft-off', 'cycle', 'reset']

/** Next-boot devices rackboot sets. `none` clears an override (boot the firmware's own order). */
export type BootDevice = 'pxe' | 'disk' | 'none'

export type BootMode = 'uefi' | 'bios'

export interface BootOverride {
  device: BootDevice
  /** Firmware mode for the override; omitted means "whatever the firmware uses" (no mode is sent). */
  mode?: BootMode
  /** Every boot from now on, rather than the next boot only. */
  persistent?: boolean
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
  | 'identify'

export interface CallOptions {
  /** Aborts the call (the manager's per-operation timeout); the driver then throws a timeout PowerError. */
  signal?: AbortSignal
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
  /** Chassis identify light: on for `seconds` (IPMI; 0 = off), or on until turned off (Redfish). */
  identify(on: boolean, options?: CallOptions & { seconds?: number }): Promise<void>
  /** Ends any session the driver holds (Redfish logout, IPMI close). Safe to call twice. */
  close(): Promise<void>
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
}

export interface BmcCredentials {
  username: string | null
  password: string | null
}
