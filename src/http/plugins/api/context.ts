import type { Registry } from 'prom-client'
import type { EventBus } from '../../../events/bus.js'
import { findMachineByRef, type Inventory, type Machine, type Profile } from '../../../inventory/index.js'
import type { Allocator, Clock, Lifecycle, Repair } from '../../../lifecycle/index.js'
import type { ApiAuth } from '../../auth.js'
import type { EventStreamOptions } from './event-hub.js'
import type { PowerManager } from '../../../power/index.js'
import type { KernelLogStore } from '../../../talos/receivers/index.js'

/** What the /api/v1 route groups need; buildApp passes it through. */
export interface ApiDeps {
  inventory: Inventory
  lifecycle: Lifecycle
  allocator: Allocator
  /** The repair ladder: each provisioning machine's phase and deadline, and the line for install slots. */
  repair?: Pick<Repair, 'queue' | 'status'>
  /** Why a profile's boot files are not on this server, with the command that fetches them (profiles are refused). */
  missingAssets?: (profile: Pick<Profile, 'talosVersion' | 'arch' | 'schematic'>) => string | null
  bus: EventBus
  auth: ApiAuth
  registry: Registry
  version: string
  clock?: Clock
  /** Waits until bus events are in the events table (attachTimeline's flush), so the stream sees them at once. */
  flushTimeline?: () => Promise<void>
  events?: EventStreamOptions
  /** Event streams one API token may hold open (settings.http.maxEventStreamsPerToken); default 8. */
  maxEventStreamsPerToken?: number
  /** BMC power: /machines/{id}/power is served when given. */
  power?: PowerManager
  /** Talos kernel logs kept in memory, and the addresses a machine is known by: /machines/{id}/logs when given. */
  kernelLogs?: { store: KernelLogStore; peersOf(machineId: string): Promise<string[]> }
}

/** A machine by id, or by its name, a MAC or its SMBIOS UUID (what a tech has at hand). */
export function findMachine(inventory: Inventory, ref: string): Promise<Machine> {
  return findMachineByRef(inventory, ref)
}

/** Who did it, for the timeline: the token's name. */
export function actor(request: { apiToken?: { name: string } }): string {
  return request.apiToken ? `token ${request.apiToken.name}` : 'the API'
}
