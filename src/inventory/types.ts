// Domain shapes of the inventory: what callers see. No SQL, no driver types.

export const MACHINE_STATES = [
  'new', 'discovered', 'ready', 'provisioning', 'installed', 'released', 'maintenance', 'failed',
] as const
export type MachineState = (typeof MACHINE_STATES)[number]

export type Firmware = 'bios' | 'uefi'
export type Arch = 'amd64' | 'arm64'

export interface Nic {
  /** Lower-case, colon separated: 3c:ec:ef:12:34:56. */
  mac: string
  name: string | null
  /** The NIC this machine network-boots from. */
  boot: boolean
}

export const DISK_TYPES = ['nvme', 'ssd', 'hdd', 'virtual', 'other'] as const
export type DiskType = (typeof DISK_TYPES)[number]

export interface DiskFacts {
  name: string
  model?: string
  serial?: string
  sizeBytes: number
  rotational?: boolean
  type?: DiskType
  wwn?: string
}

export interface NicFacts {
  mac: string
  name?: string
  driver?: string
  link?: boolean
  speedMbps?: number
}

/** What the discovery agent (or a tech) reported about the machine's hardware. */
export interface HardwareFacts {
  cpu?: { model?: string; sockets?: number; cores?: number; threads?: number }
  memory?: { totalBytes: number }
  disks?: DiskFacts[]
  nics?: NicFacts[]
  bmc?: { address?: string; mac?: string }
  smbios?: Record<string, string>
  [key: string]: unknown
}

export interface Machine {
  id: string
  /** Hostname-like name, unique when set (declarative inventory's key). */
  name: string | null
  /** SMBIOS system UUID, lower case. */
  uuid: string | null
  serial: string | null
  manufacturer: string | null
  product: string | null
  arch: Arch | null
  firmware: Firmware | null
  state: MachineState
  labels: Record<string, string>
  rack: string | null
  rackUnit: number | null
  /** Boot from the network even once installed. */
  alwaysPxe: boolean
  /** Profile named by the inventory for this machine (classes may choose one otherwise). */
  profile: string | null
  /** 'inventory' when the declarative inventory files own this machine; null for discovered or API-made ones. */
  managedBy: string | null
  /** Static addresses and nameservers written into its Talos config; null: DHCP. */
  network: MachineNetwork | null
  nics: Nic[]
  hardware: HardwareFacts | null
  hardwareReportedAt: number | null
  createdAt: number
  updatedAt: number
  stateChangedAt: number
}

/** Fields a caller may set when creating or updating a machine; state changes go through lifecycle. */
export interface MachineInput {
  name?: string | null
  uuid?: string | null
  serial?: string | null
  manufacturer?: string | null
  product?: string | null
  arch?: Arch | null
  firmware?: Firmware | null
  labels?: Record<string, string>
  rack?: string | null
  rackUnit?: number | null
  alwaysPxe?: boolean
  profile?: string | null
  managedBy?: string | null
  network?: MachineNetwork | null
  nics?: Nic[]
}

/**
 * How a profile picks the install disk among the disks a machine reported (talos/disks.ts applies it). Every
 * condition given must hold; among the disks that pass, `prefer` decides.
 */
export interface InstallDiskSelector {
  /** ">= 100GB", "<= 2TiB", several joined by commas (">= 100GB, < 1TB"), or bounds in bytes or size strings. */
  size?: string | { min?: number | string; max?: number | string }
  /** Disk type(s); inferred from the device name and `rotational` when the report has none. */
  type?: DiskType | DiskType[]
  /** Globs (`*`, `?`) on the model, serial, device name (sda, nvme0n1) and WWN. */
  model?: string
  serial?: string
  name?: string
  wwn?: string
  /** Which matching disk wins; default smallest (big disks stay for data). */
  prefer?: 'smallest' | 'largest'
}

/** Static addresses on one link, chosen by its name or by its permanent MAC (exactly one of the two). */
export interface StaticLinkAddresses {
  link?: string
  /** Lower-case, colon separated. */
  mac?: string
  /** CIDR form: 198.18.0.20/24, fd00::20/64. */
  addresses: string[]
  /** Default gateway via this link. */
  gateway?: string
  mtu?: number
}

/** A machine's own network settings for its Talos config. */
export interface MachineNetwork {
  addresses: StaticLinkAddresses[]
  nameservers?: string[]
}

export type BmcType = 'ipmi' | 'redfish'
export type BmcAuth = 'auto' | 'session' | 'basic'
export type BmcPrivilege = 'user' | 'operator' | 'administrator'
/** How the lifecycle network-boots a machine through its BMC (allocation, release, repair). */
export type BootMethod = 'pxe' | 'uefi-http' | 'virtual-media'
export type IpmiCipherSuite = 3 | 17

/** A BMC's own settings; null means "the settings' default" (settings.power). */
export interface BmcOptions {
  /** Redfish: the system to drive on a service with several (its Id or full @odata.id path). */
  systemId: string | null
  /** Redfish TLS: a CA certificate (PEM) trusted for this BMC besides the system store. */
  caPem: string | null
  /** Redfish: session (X-Auth-Token), basic, or auto (session, Basic where the BMC has no SessionService). */
  auth: BmcAuth
  /** IPMI: cipher suites in the order tried. */
  cipherSuites: IpmiCipherSuite[] | null
  /** IPMI: session privilege (administrator when null). */
  privilege: BmcPrivilege | null
  /** IPMI: boot override read-back strictness. */
  bootVerify: 'strict' | 'device' | null
  bootMethod: BootMethod
}

/** The last power state read from the BMC (operation or poll), kept so every instance and the UI can show it. */
export interface BmcPowerState {
  state: 'on' | 'off' | null
  checkedAt: number
  /** Why the last read failed (state is then null). */
  error: string | null
}

export interface Bmc extends BmcOptions {
  machineId: string
  type: BmcType
  address: string
  port: number | null
  username: string | null
  /** True when a password is stored (the password itself never leaves the repository except through `credentials`). */
  hasPassword: boolean
  /** Name of the inventory credentials entry this came from, kept for export. */
  credentialsRef: string | null
  /** Redfish TLS: skip verification (explicit, per BMC). */
  insecure: boolean
  /** Redfish TLS: sha256 fingerprint of the pinned certificate. */
  fingerprint: string | null
  /** True when an IPMI K_G is stored (sealed like the password; only `credentials` returns it). */
  hasKg: boolean
  /** Name of the inventory's K_G reference (`env:`/`file:`) it came from, kept for export. */
  kgRef: string | null
  power: BmcPowerState | null
  /**
   * The BMC kept a "next boot only" override for every boot (it has only Continuous): rackboot clears the override
   * once the machine has network-booted.
   */
  clearOverrideAfterBoot: boolean
}

export interface BmcInput extends Partial<BmcOptions> {
  type: BmcType
  address: string
  port?: number | null
  username?: string | null
  /** Plain text in, encrypted before it reaches storage; undefined keeps the stored one. */
  password?: string | null
  credentialsRef?: string | null
  insecure?: boolean
  fingerprint?: string | null
  /** IPMI K_G as hex (up to 20 bytes); undefined keeps the stored one, null removes it. */
  kg?: string | null
  kgRef?: string | null
}

export interface MachineClass {
  name: string
  description: string | null
  /** Selector expressions, all of which must hold (see matching/). */
  selectors: string[]
  /** Profile given to machines of this class. */
  profile: string | null
  /** Config patches (Talos strategic merge) applied for this class. */
  patches: unknown[]
  managedBy: string | null
  createdAt: number
  updatedAt: number
}

export interface Profile {
  name: string
  description: string | null
  talosVersion: string | null
  arch: Arch | null
  /** Image Factory schematic ID, when not the plain release. */
  schematic: string | null
  kernelArgs: string[]
  /** Base machine config (YAML text), or null to generate one. */
  baseConfig: string | null
  patches: unknown[]
  /** How the install disk is chosen from the reported disks; null: the smallest fixed disk. */
  installDisk: InstallDiskSelector | null
  /** Seconds per boot phase, overriding the server's repair.deadlines (null: none). */
  deadlines?: PhaseDeadlineOverrides | null
  managedBy: string | null
  createdAt: number
  updatedAt: number
}

export type LeaseState = 'offered' | 'bound' | 'released' | 'declined' | 'expired'

export interface Lease {
  ip: string
  mac: string
  /** Option 61 as lower-case hex, when the client sent one. */
  clientId: string | null
  /** The subnet (CIDR) this address belongs to. */
  subnet: string
  state: LeaseState
  hostname: string | null
  /** Milliseconds since the epoch. */
  expiresAt: number
  updatedAt: number
}

/** A fixed address for a client, from the inventory. */
export interface Reservation {
  ip: string
  mac: string | null
  clientId: string | null
  hostname: string | null
  machineId: string | null
}

/** One entry on a machine's boot timeline (or the global stream when machineId is null). */
export interface StoredEvent {
  seq: number
  machineId: string | null
  type: string
  at: number
  message: string
  data: Record<string, unknown>
}

export const TOKEN_SCOPES = ['read', 'provision', 'admin'] as const
export type TokenScope = (typeof TOKEN_SCOPES)[number]

export interface ApiToken {
  id: string
  name: string
  scopes: TokenScope[]
  createdAt: number
  lastUsedAt: number | null
  expiresAt: number | null
  revokedAt: number | null
}

export type BootTokenPurpose = 'agent' | 'config'

/** A per-boot credential a machine presents back (agent report, Talos config fetch). */
export interface BootToken {
  machineId: string
  purpose: BootTokenPurpose
  /** The address the boot script was served to; the token is checked against it where known. */
  clientIp: string | null
  issuedAt: number
  expiresAt: number
  usedAt: number | null
  /** The machine's state when the token was issued (an agent token is good for that state only). */
  machineState: MachineState | null
  /** The address that first fetched with it; later fetches must come from the same address. */
  fetchIp: string | null
  /** Times it was honoured. */
  uses: number
}

/** Why a presented boot token was not honoured (the caller turns it into a 403 and an event). */
export type BootTokenRefusal = 'unknown' | 'wrong-purpose' | 'expired' | 'void' | 'used-up' | 'other-address'

// ---- API additions (issue 8): allocations and clusters ----

export type MachineRole = 'controlplane' | 'worker'

/** Inclusive bounds on a hardware summary column, for pre-filtering selectors in SQL. */
export interface NumberRange {
  min?: number
  max?: number
}

/** Bounds on the hardware summary columns (migration 0002); a machine outside them cannot match. */
export interface HardwareBounds {
  cpuCores?: NumberRange
  memoryBytes?: NumberRange
  /** Machines that never reported disks count as 0. */
  diskCount?: NumberRange
  nvmeCount?: NumberRange
}

/** What became of powering one allocated or released machine on. */
export interface PowerOutcome {
  status: 'requested' | 'done' | 'failed' | 'skipped'
  message: string
}

/** One machine of an allocation, as it was handed out. */
export interface AllocatedMachine {
  id: string
  name: string | null
  uuid: string | null
  serial: string | null
  macs: string[]
  role: MachineRole | null
  power: PowerOutcome | null
}

export interface Allocation {
  id: string
  idempotencyKey: string | null
  /** sha256 of the request (idempotency key left out): a replay with another body is refused. */
  requestHash: string
  class: string | null
  selector: string | null
  count: number
  cluster: string | null
  role: MachineRole | null
  profile: string | null
  patches: unknown[]
  machines: AllocatedMachine[]
  createdAt: number
}

/** A machine's current allocation (until it is released). */
export interface MachineAllocation {
  machineId: string
  allocationId: string
  class: string | null
  cluster: string | null
  role: MachineRole | null
  profile: string | null
  /** The profile the machine had before, given back on release. */
  previousProfile: string | null
  patches: unknown[]
  allocatedAt: number
}

export interface Cluster {
  name: string
  /** Kubernetes API endpoint, https://host:port. */
  endpoint: string
  talosVersion: string
  kubernetesVersion: string | null
  createdAt: number
  updatedAt: number
}

/** Per-phase deadline overrides in seconds (lifecycle/repair.ts names the phases). */
export interface PhaseDeadlineOverrides {
  boot?: number
  download?: number
  config?: number
  installing?: number
  installed?: number
}
