import { Counter, type Registry } from 'prom-client'
import type { EventType } from '../events/bus.js'
import type { Logger } from '../log.js'
import type { Lifecycle } from './service.js'

// Something on the provisioning network tried what it may not: a refused identity claim, a token from the wrong
// address, feedback from an address that is not the machine's. Each goes on the machine's timeline (where a tech
// looks), in the log at warn (not a stack trace: the LAN caused it), and in one counter by kind.

export type SecurityEventKind =
  | 'identity-refused'
  | 'config-token-refused'
  | 'config-second-address'
  | 'agent-token-refused'
  | 'feedback-unbound'
  | 'new-machine-bound'

export interface SecurityEvents {
  record(kind: SecurityEventKind, machineId: string | null, type: EventType, message: string, data?: Record<string, unknown>): void
}

export function createSecurityEvents(deps: { lifecycle: Lifecycle; log: Logger; registry?: Registry; quietMs?: number; now?: () => number }): SecurityEvents {
  const counter = deps.registry
    ? (deps.registry.getSingleMetric('rackboot_security_events_total') as Counter<'kind'> | undefined) ??
      new Counter({ name: 'rackboot_security_events_total', help: 'Refused claims, tokens and feedback from the provisioning network, by kind', labelNames: ['kind'] as const, registers: [deps.registry] })
    : null
  // A flood of the same refusal counts every time but writes the timeline and the log once per key per window.
  const quietMs = deps.quietMs ?? 10_000
  const now = deps.now ?? Date.now
  const lastSaid = new Map<string, number>()
  return {
    record(kind, machineId, type, message, data = {}) {
      counter?.inc({ kind })
      const key = `${kind} ${machineId ?? ''} ${String(data.clientIp ?? '')}`
      const t = now()
      const last = lastSaid.get(key)
      if (last !== undefined && t - last < quietMs) return
      lastSaid.delete(key)
      lastSaid.set(key, t)
      if (lastSaid.size > 10_000) lastSaid.delete(lastSaid.keys().next().value!)
      deps.log.warn({ kind, machineId, ...data }, message)
      deps.lifecycle.record(machineId, type, message, { ...data, security: kind })
    },
  }
}
