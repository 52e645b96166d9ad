// The inventory's domain interface. Every caller goes through these async operations; SQLite is one backend,
// PostgreSQL must be able to slot in behind the same interface.
import type {
  ApiToken, Bmc, BmcInput, BmcPowerState, HardwareFacts, Lease, LeaseState, Machine, MachineClass, MachineInput, MachineState,
  Profile, Reservation, StoredEvent, TokenScope, BootToken, BootTokenPurpose, BootTokenRefusal,
} from './types.js'

export interface MachineFilter {
  state?: MachineState | MachineState[]
  /** Every label given must match exactly. */
  labels?: Record<string, string>
  /** Free text over name, serial, uuid and MACs. */
  text?: string
  rack?: string
  /** Exact serial (serials are not unique in the wild: this may match several machines). */
  serial?: string
  /** Opaque cursor from a previous page. */
  after?: string
  limit?: number
}

export interface MachinePage {
  items: Machine[]
  /** Cursor for the next page, or null at the end. */
  next: string | null
}

export interface MachineRepository {
  get(id: string): Promise<Machine | null>
  byName(name: string): Promise<Machine | null>
  byMac(mac: string): Promise<Machine | null>
  byUuid(uuid: string): Promise<Machine | null>
  bySerial(serial: string): Promise<Machine | null>
  list(filter?: MachineFilter): Promise<MachinePage>
  count(filter?: Omit<MachineFilter, 'after' | 'limit'>): Promise<number>
  create(input: MachineInput & { state?: MachineState }, now: number): Promise<Machine>
  update(id: string, input: MachineInput, now: number): Promise<Machine>
  /** Only lifecycle calls this. Returns false when the machine was not in `from` (a lost race). */
  setState(id: string, from: MachineState, to: MachineState, now: number): Promise<boolean>
  setHardware(id: string, facts: HardwareFacts, now: number): Promise<void>
  delete(id: string): Promise<boolean>
}

export interface BmcRepository {
  /** With `now` (the caller's clock), the power state's checkedAt on the caller's clock (recordPower). */
  get(machineId: string, now?: number): Promise<Bmc | null>
  put(machineId: string, input: BmcInput): Promise<Bmc>
  remove(machineId: string): Promise<boolean>
  /** The decrypted credentials, for the power drivers only. */
  credentials(machineId: string): Promise<{ username: string | null; password: string | null; kg?: Buffer | null } | null>
  /** The BMCs of these machines in one read (a page of the machine list), keyed by machine id. */
  many(machineIds: readonly string[]): Promise<Map<string, Bmc>>
  /** Ids of the machines that have a BMC (the power poller's list). */
  machineIds(): Promise<string[]>
  /**
   * Stores the last power state read; a no-op for a machine without a BMC. With `now` (the caller's clock),
   * checkedAt is stored as the database's time, as far before its now as it is before `now` (instances on several
   * hosts compare it); without, as given.
   */
  recordPower(machineId: string, power: BmcPowerState, now?: number): Promise<void>
  setClearOverrideAfterBoot(machineId: string, value: boolean): Promise<void>
}

export interface ClassRepository {
  get(name: string): Promise<MachineClass | null>
  list(): Promise<MachineClass[]>
  put(cls: Omit<MachineClass, 'createdAt' | 'updatedAt'>, now: number): Promise<MachineClass>
  delete(name: string): Promise<boolean>
}

/** A whole profile as `put` writes it; a missing `installDisk` means none (put replaces the profile). */
export type ProfileInput = Omit<Profile, 'createdAt' | 'updatedAt' | 'installDisk'> & { installDisk?: Profile['installDisk'] }

export interface ProfileRepository {
  get(name: string): Promise<Profile | null>
  list(): Promise<Profile[]>
  put(profile: ProfileInput, now: number): Promise<Profile>
  delete(name: string): Promise<boolean>
}

export interface LeaseRepository {
  byIp(ip: string): Promise<Lease | null>
  /** The newest lease of a client: by client id when given, else by MAC. */
  byClient(mac: string, clientId: string | null): Promise<Lease | null>
  /**
   * Every lease row whose address is one of `ips`, whose client id is one of `clientIds`, or whose MAC is one of
   * `macs`, in one query: a DHCP server sharing the store looks up a burst of unknown clients at once.
   */
  lookupMany?(query: { ips: readonly string[]; clientIds: readonly string[]; macs: readonly string[] }): Promise<Lease[]>
  /** Every lease in a subnet that still holds its address at `now` (offered or bound, not expired). */
  activeIn(subnet: string, now: number): Promise<Lease[]>
  /** With `updatedSince`, only leases written after that time (ms): what other instances changed lately. */
  list(filter?: { subnet?: string; state?: LeaseState; mac?: string; updatedSince?: number }): Promise<Lease[]>
  /** Insert or replace the lease of `lease.ip`. */
  put(lease: Lease): Promise<void>
  /**
   * Writes each lease only where the database agrees its address is this lease's client's to take, atomically per
   * address: free (no row, or released, expired, or past its expiry at the lease's updatedAt), or already held by
   * the same client (same MAC or client id) and not declined. Returns the addresses written. Several DHCP servers
   * on one database claim through this: the database, not a process's memory, decides who holds an address.
   */
  claimMany?(leases: Lease[]): Promise<Set<string>>
  remove(ip: string): Promise<boolean>
  /** Marks offered/bound leases past their expiry as expired; returns how many. */
  expire(now: number): Promise<number>
}

export interface ReservationRepository {
  list(): Promise<Reservation[]>
  byMac(mac: string): Promise<Reservation | null>
  byClientId(clientId: string): Promise<Reservation | null>
  byIp(ip: string): Promise<Reservation | null>
  /** Replaces the reservations of a machine (inventory import). */
  setForMachine(machineId: string, reservations: Omit<Reservation, 'machineId'>[]): Promise<void>
  put(reservation: Reservation): Promise<void>
  remove(ip: string): Promise<boolean>
}

export interface EventRepository {
  append(event: Omit<StoredEvent, 'seq'>): Promise<StoredEvent>
  /** Events after `since` (exclusive), oldest first. */
  /**
   * Events oldest first. With `newest`, the last `limit` events that match (still returned oldest first): a
   * timeline's tail without reading the whole log.
   */
  list(filter?: { machineId?: string; since?: number; limit?: number; types?: string[]; newest?: boolean }): Promise<StoredEvent[]>
  /** Keeps at most `keep` events per machine; returns how many were removed. */
  trim(machineId: string, keep: number): Promise<number>
}

export interface TokenRepository {
  /** Creates a token and returns its secret once; only a hash is stored. */
  create(input: { name: string; scopes: TokenScope[]; expiresAt?: number | null }, now: number): Promise<{ token: ApiToken; secret: string }>
  list(): Promise<ApiToken[]>
  /** The token a presented secret belongs to, when valid (not revoked, not expired); records last use. */
  verify(secret: string, now: number): Promise<ApiToken | null>
  revoke(idOrName: string, now: number): Promise<boolean>
}

export interface BootTokenRepository {
  /**
   * Issues a token for one machine and purpose, for the boot now starting; returns the secret once. Every earlier
   * token of that machine and purpose is voided: a token means one boot.
   */
  issue(input: { machineId: string; purpose: BootTokenPurpose; clientIp: string | null; ttlMs: number; machineState?: MachineState | null }, now: number): Promise<string>
  /** The token a secret belongs to, or why it is not good now (unknown, other purpose, expired, voided). Changes nothing. */
  verify(secret: string, purpose: BootTokenPurpose, now: number): Promise<BootToken | null>
  /** As verify, with the reason for a refusal. */
  check(secret: string, purpose: BootTokenPurpose, now: number): Promise<{ ok: true; token: BootToken } | { ok: false; reason: BootTokenRefusal; token: BootToken | null }>
  /**
   * Honours the token once for `clientIp`, atomically: only while it is live, used fewer than `maxUses` times, and
   * either never used or first used from this same address (which it then stays bound to).
   */
  consume(secret: string, purpose: BootTokenPurpose, clientIp: string, maxUses: number, now: number): Promise<{ ok: true; token: BootToken } | { ok: false; reason: BootTokenRefusal; token: BootToken | null }>
  /** Voids a machine's live tokens (of one purpose, or all); returns how many. */
  revoke(machineId: string, purpose: BootTokenPurpose | null, now: number): Promise<number>
  /** The machine whose live config token was fetched from this address (its current boot), if any. */
  fetchedFrom(ip: string, now: number): Promise<{ machineId: string; issuedAt: number } | null>
  /** Removes expired and voided tokens; returns how many. */
  purge(now: number): Promise<number>
}

export interface Inventory {
  machines: MachineRepository
  bmcs: BmcRepository
  classes: ClassRepository
  profiles: ProfileRepository
  leases: LeaseRepository
  reservations: ReservationRepository
  events: EventRepository
  tokens: TokenRepository
  bootTokens: BootTokenRepository
  /** Runs `fn` atomically: everything it does through the given inventory commits together or not at all. */
  transaction<T>(fn: (inventory: Inventory) => Promise<T>, options?: TransactionOptions): Promise<T>
  /** Inside a transaction opened with `rowLocks` on a backend that runs such transactions side by side (PostgreSQL). */
  rowLocks?: RowLocks
  close(): Promise<void>
}

export interface TransactionOptions {
  /**
   * `fn` locks what it decides on (`Inventory.rowLocks`, `MachineScan.lock`) and guards each write with the condition
   * it read (`setState`'s `from`): PostgreSQL then runs it READ COMMITTED with row locks instead of SERIALIZABLE.
   * SQLite, whose transactions run one at a time, ignores it.
   */
  rowLocks?: boolean
}

/** Locks held until the transaction ends (PostgreSQL, in a transaction opened with `rowLocks`). */
export interface RowLocks {
  /** Waits for, then holds, a lock on this name (an idempotency key): transactions naming it run one after the other. */
  name(name: string): Promise<void>
  /** Waits for, then holds, these machines' rows. */
  machines(ids: readonly string[]): Promise<void>
  /** The error to throw when too few machines were free because other transactions held them: it runs again, alone. */
  contended(message: string): Error
}

// ---- API additions (issue 8) ----
import type { Allocation, AllocatedMachine, Cluster, HardwareBounds, MachineAllocation } from './types.js'

/** A machine list query: the filters of `MachineFilter` plus hardware bounds (SQL pre-filter of selectors). */
export interface MachineScan extends MachineFilter {
  hardware?: HardwareBounds
  /**
   * Page order: by this field, then by id (both descending with `desc`); absent: id order. Machines without a
   * value (no name, rack or serial) come first ascending and last descending. A cursor holds the sort it was made
   * for: one from another order is refused (RB_ERR_VALIDATION).
   */
  sort?: MachineSort
  /**
   * In a transaction with `Inventory.rowLocks` only: lock the machines returned until it ends. A first attempt skips
   * machines another transaction holds (SKIP LOCKED), a retry waits for them. A page may then end short of `limit`
   * only at the end of the list, and `next` is set whenever the page is full.
   */
  lock?: boolean
  /**
   * Also read, in the page's own statement, what the API's machine list shows beside each machine (its BMC's summary
   * and its address as of `now`): the page answers with `views`. A backend that cannot leaves `views` out, and the
   * caller reads them after the page. Never with `lock`.
   */
  views?: { now: number }
}

/** What the machine list shows beside a machine, read with its page (MachineScan.views). */
export interface MachineScanViews {
  bmc: Pick<Bmc, 'type' | 'address' | 'bootMethod' | 'power'> | null
  address: MachineAddress | null
}

/** Fields the machine list can be sorted by. */
export type MachineSortKey = 'name' | 'state' | 'rack' | 'serial' | 'createdAt' | 'updatedAt'

export interface MachineSort {
  key: MachineSortKey
  desc: boolean
}

/** The address a machine is reachable at now, as the API shows it. */
export interface MachineAddress {
  ip: string
  /** lease: an offered or bound DHCP lease that has not expired; reservation: the inventory's fixed address. */
  source: 'lease' | 'reservation'
}

export interface MachineScanPage {
  items: Machine[]
  /** Cursor after the last row examined (not just returned), or null at the end. */
  next: string | null
  /** By machine id, when the scan asked for `views` and the backend reads them with the page. */
  views?: Map<string, MachineScanViews>
}

/** Read-side queries the API needs beyond the per-table repositories. */
export interface QueryRepository {
  /** Machines matching `scan`, in id order (or `scan.sort`'s), one keyset page. */
  scanMachines(scan: MachineScan): Promise<MachineScanPage>
  /** The cursor of the page that starts right after `machine` in this order (for a page a caller ends early). */
  machineCursor(machine: Machine, sort?: MachineSort): string
  /**
   * Each machine's current address, in one read for a page: an active DHCP lease of one of its NICs (bound before
   * offered, the boot NIC first, the newest), else a reservation of one of its MACs (the boot NIC's first).
   * Machines with neither are left out.
   */
  addresses(machineIds: readonly string[], now: number): Promise<Map<string, MachineAddress>>
  /** The newest event's seq (0 when there is none): where a live event stream starts. */
  latestEventSeq(): Promise<number>
}

export interface AllocationRepository {
  byId(id: string): Promise<Allocation | null>
  byKey(idempotencyKey: string): Promise<Allocation | null>
  list(filter?: { cluster?: string; after?: string; limit?: number }): Promise<{ items: Allocation[]; next: string | null }>
  /** Records an allocation and each machine's current allocation (supersedes any stale one), and sets the machines' profile. */
  create(allocation: Allocation, machines: Omit<MachineAllocation, 'allocationId' | 'allocatedAt'>[]): Promise<void>
  /** Replaces the per-machine results (power outcomes) of an allocation. */
  setMachines(id: string, machines: AllocatedMachine[]): Promise<void>
  /** The machine's current allocation, or null. */
  current(machineId: string): Promise<MachineAllocation | null>
  /** Ends the machine's current allocation and gives back its previous profile; returns it, or null when it had none. */
  release(machineId: string, now: number): Promise<MachineAllocation | null>
  /** How many machines a cluster currently holds. */
  countByCluster(cluster: string): Promise<number>
}

export interface ClusterRepository {
  get(name: string): Promise<Cluster | null>
  list(): Promise<Cluster[]>
  /** Creates a cluster; its secrets bundle (text) is sealed at rest. RB_ERR_CONFLICT when the name is taken. */
  create(cluster: Omit<Cluster, 'createdAt' | 'updatedAt'>, secrets: string, now: number): Promise<Cluster>
  /** The decrypted secrets bundle text, for config generation only. */
  secrets(name: string): Promise<string | null>
  delete(name: string): Promise<boolean>
}

export interface Inventory {
  queries: QueryRepository
  allocations: AllocationRepository
  clusters: ClusterRepository
}

// ---- BMC leases (issue 16) ----

/** One instance's hold on a machine's BMC: the power manager's per-BMC queue across instances. */
export interface BmcLease {
  machineId: string
  /** The instance holding it (hostname:pid:random). */
  holder: string
  /** What it is doing (a power operation), for "held by ..." messages. */
  operation: string | null
  acquiredAt: number | null
  /** ms; past this the lease is free for anyone to take over (a crashed holder's). */
  expiresAt: number
}

export type BmcLeaseGrant = { granted: true; lease: BmcLease } | { granted: false; lease: BmcLease | null }

export interface BmcLeaseRepository {
  /**
   * Takes the machine's BMC lease for `holder` for ttlMs from the database's now, atomically (one conditional upsert):
   * granted when there is no lease, it expired (by the database's clock), or `holder` holds it already (then
   * extended). Otherwise not granted, with the lease that stands in the way when it could be read. `now` is the
   * caller's clock: the lease's times come back on it.
   */
  acquire(machineId: string, holder: string, operation: string | null, ttlMs: number, now: number): Promise<BmcLeaseGrant>
  /** Extends `holder`'s lease to ttlMs from the database's now; false when `holder` no longer holds it (it expired and was taken over, or was released). */
  renew(machineId: string, holder: string, ttlMs: number, now: number): Promise<boolean>
  /** Gives the lease up; only `holder`'s own. False when it held none. */
  release(machineId: string, holder: string): Promise<boolean>
  /** The lease; with `now`, its times on the caller's clock (else the database's). */
  get(machineId: string, now?: number): Promise<BmcLease | null>
  /**
   * Records a reboot of the machine at `at` on the caller's clock, whose time is `now` (default `at`); the row holds
   * the database's time. An older record never replaces a newer one.
   */
  recordReboot(machineId: string, at: number, holder: string | null, now?: number): Promise<void>
  /** When the machine was last rebooted by any instance, or null; with `now`, on the caller's clock. */
  lastReboot(machineId: string, now?: number): Promise<number | null>
}

export interface Inventory {
  /** Optional so test fakes of Inventory keep compiling; both SQL backends have them. */
  bmcLeases?: BmcLeaseRepository
  installSlots?: InstallSlotRepository
}

// ---- Install slots (issue 16) ----

/** Bounds on machines installing at once (0: no bound). */
export interface InstallSlotLimits {
  overall: number
  perRack: number
}

/** A machine's install slot, as it counts: only while the machine is in state provisioning. */
export interface InstallSlot {
  machineId: string
  rack: string | null
  /** The instance that gave it. */
  holder: string
  takenAt: number
}

/**
 * A claim's answer, with what it counted besides this machine: slots of machines installing, overall and in its rack
 * (null without a rack). Refused: which bound is full.
 */
export type InstallSlotClaim =
  | { ok: true; installing: number; rackInstalling: number | null }
  | { ok: false; bound: 'overall' | 'rack'; installing: number; rackInstalling: number | null }

export interface InstallSlotRepository {
  /**
   * Gives the machine an install slot if the slots of machines in state provisioning, overall and in `rack`, leave
   * room under `limits`; atomically across every instance on the database. A machine that holds one already is ok.
   */
  claim(machineId: string, rack: string | null, limits: InstallSlotLimits, holder: string, now: number): Promise<InstallSlotClaim>
  /** Gives the machine's slot up (it left provisioning, or a new attempt begins). False when it held none. */
  release(machineId: string): Promise<boolean>
  /** The slots that count now (their machines are provisioning), oldest first. */
  list(): Promise<InstallSlot[]>
}
