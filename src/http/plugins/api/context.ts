import type { FastifyRequest } from 'fastify'
import type { Registry } from 'prom-client'
import { RackbootError } from '../../../errors.js'
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
  /** The boot assets directory (settings.assetsDir): GET /assets lists it; without it that route answers 503. */
  assetsDir?: string
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The machine a /machines/{id}/... route names, resolved once before its handler (machineRefHook). */
    machine?: Machine
  }
}

/**
 * A machine by what a tech has at hand: its id, name, a MAC (any spelling), its SMBIOS UUID, or a serial only one
 * machine has. 404 RB_ERR_MACHINE_NOT_FOUND naming the ref; 409 RB_ERR_CONFLICT naming the candidates when the
 * serial is several machines'.
 */
export function findMachine(inventory: Inventory, ref: string): Promise<Machine> {
  return findMachineByRef(inventory, ref, { serial: true })
}

/** Routes whose `:id` is a machine reference: /machines/:id and everything under it. */
const MACHINE_ROUTE = /\/machines\/:id(\/|$)/

/**
 * A preHandler hook for the API context: every route under /machines/:id gets its machine resolved here, once,
 * after authentication and validation (an unauthenticated caller learns nothing of which machines exist), as
 * `request.machine`. Handlers take it with machineOf().
 */
export function machineRefHook(inventory: Inventory) {
  return async (request: FastifyRequest): Promise<void> => {
    if (!MACHINE_ROUTE.test(request.routeOptions.url ?? '')) return
    request.machine = await findMachine(inventory, (request.params as { id: string }).id)
  }
}

/** The machine this request's `:id` names (resolved by machineRefHook). */
export function machineOf(request: FastifyRequest): Machine {
  if (!request.machine) throw new RackbootError('RB_ERR_INTERNAL', `no machine resolved for ${request.routeOptions.url ?? request.url}`)
  return request.machine
}

/** Who did it, for the timeline: the token's name. */
export function actor(request: { apiToken?: { name: string } }): string {
  return request.apiToken ? `token ${request.apiToken.name}` : 'the API'
}
