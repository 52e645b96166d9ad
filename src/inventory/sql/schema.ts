// Kysely table types for the SQLite backend. Column names are snake_case, portable to PostgreSQL.
import type { Generated } from 'kysely'

export interface MachinesTable {
  id: string
  name: string | null
  uuid: string | null
  serial: string | null
  manufacturer: string | null
  product: string | null
  arch: string | null
  firmware: string | null
  state: string
  labels: string
  rack: string | null
  rack_unit: number | null
  always_pxe: number
  profile: string | null
  /** 'inventory' when the declarative files own this row (only those are pruned). */
  managed_by: string | null
  /** MachineNetwork as JSON (migration 0005); null: DHCP. */
  network: string | null
  created_at: number
  updated_at: number
  state_changed_at: number
}

export interface NicsTable {
  mac: string
  machine_id: string
  name: string | null
  boot: number
}

export interface HardwareTable {
  machine_id: string
  facts: string
  reported_at: number
  // Summary columns (migration 0002) so lists can filter without parsing JSON.
  cpu_cores: number | null
  memory_bytes: number | null
  disk_count: number | null
  nvme_count: number | null
}

export interface BmcsTable {
  machine_id: string
  type: string
  address: string
  port: number | null
  username: string | null
  password_sealed: string | null
  credentials_ref: string | null
  insecure: number
  fingerprint: string | null
  system_id: string | null
  ca_pem: string | null
  auth: Generated<string>
  /** JSON array of suite numbers. */
  cipher_suites: string | null
  privilege: string | null
  kg_sealed: string | null
  /** Where the K_G came from at import (env:/file:), kept for export like credentials_ref. */
  kg_ref: string | null
  boot_verify: string | null
  boot_method: Generated<string>
  power_state: string | null
  power_checked_at: number | null
  power_error: string | null
  clear_override_after_boot: Generated<number>
}

export interface ClassesTable {
  name: string
  description: string | null
  selectors: string
  profile: string | null
  patches: string
  managed_by: string | null
  created_at: number
  updated_at: number
}

export interface ProfilesTable {
  name: string
  description: string | null
  talos_version: string | null
  arch: string | null
  schematic: string | null
  kernel_args: string
  base_config: string | null
  patches: string
  /** InstallDiskSelector as JSON (migration 0005); null: none. */
  install_disk: string | null
  /** Boot phase deadlines in seconds as JSON (migration 0007); null: the settings'. */
  deadlines: string | null
  managed_by: string | null
  created_at: number
  updated_at: number
}

export interface LeasesTable {
  ip: string
  mac: string
  client_id: string | null
  subnet: string
  state: string
  hostname: string | null
  expires_at: number
  updated_at: number
}

export interface ReservationsTable {
  ip: string
  mac: string | null
  client_id: string | null
  hostname: string | null
  machine_id: string | null
}

export interface EventsTable {
  seq: Generated<number>
  machine_id: string | null
  type: string
  at: number
  message: string
  data: string
}

export interface ApiTokensTable {
  id: string
  name: string
  scopes: string
  hash: string
  created_at: number
  last_used_at: number | null
  expires_at: number | null
  revoked_at: number | null
}

export interface BootTokensTable {
  hash: string
  machine_id: string
  purpose: string
  client_ip: string | null
  issued_at: number
  expires_at: number
  used_at: number | null
  /** The machine's state when issued (migration 0006); an agent token is good for that state only. */
  machine_state: string | null
  /** The address that first fetched with the token; later fetches must come from it. */
  fetch_ip: string | null
  uses: number
  revoked_at: number | null
}

/** Small named values (migration 0006), e.g. the secrets key's check value. */
export interface MetaTable {
  key: string
  value: string
}

export interface Database {
  machines: MachinesTable
  nics: NicsTable
  hardware: HardwareTable
  bmcs: BmcsTable
  classes: ClassesTable
  profiles: ProfilesTable
  leases: LeasesTable
  reservations: ReservationsTable
  events: EventsTable
  api_tokens: ApiTokensTable
  boot_tokens: BootTokensTable
  meta: MetaTable
}

// ---- BMC leases (migration 0011, issue 16) ----

/** Which instance runs an operation on a machine's BMC now, until expires_at (ms) unless renewed. */
export interface BmcLeasesTable {
  machine_id: string
  holder: string
  operation: string | null
  acquired_at: number | null
  expires_at: number
}

/** When a machine was last rebooted by any instance (the minimum reboot interval across instances). */
export interface MachineRebootsTable {
  machine_id: string
  rebooted_at: number
  holder: string | null
}

// Declaration merging: the tables join `Database` above.
export interface Database {
  bmc_leases: BmcLeasesTable
  machine_reboots: MachineRebootsTable
}
