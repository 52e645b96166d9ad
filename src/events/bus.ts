// The one in-process event bus (DESIGN.md "One event bus"): lifecycle publishes machine changes and boot events;
// the timeline store, the API's event stream, the web UI and the metrics subscribe.

export type EventType =
  | 'machine.created'
  | 'machine.updated'
  | 'machine.deleted'
  | 'machine.state'
  | 'boot.dhcp'
  | 'boot.tftp'
  | 'boot.script'
  | 'boot.asset'
  | 'boot.agent'
  | 'boot.config'
  | 'boot.talos'
  | 'power'
  /** A boot failed: a missed phase deadline, a failure Talos reported, a failed download, a boot loop. */
  | 'boot.failure'
  /** What the repair ladder did about it (power-cycle, wait, quarantine). */
  | 'boot.repair'
  | 'inventory.imported'

export interface RackbootEvent {
  type: EventType
  /** The machine this concerns, or null when the sender could not be matched to one. */
  machineId: string | null
  /** Milliseconds since the epoch. */
  at: number
  /** One short human line: what the timeline and the web page show. */
  message: string
  data: Record<string, unknown>
}

export type EventListener = (event: RackbootEvent) => void

export interface EventBus {
  publish(event: RackbootEvent): void
  subscribe(listener: EventListener): () => void
}

/** Listeners run synchronously in publish order; one failing listener never stops the others or the publisher. */
export function createEventBus(onListenerError: (err: unknown, event: RackbootEvent) => void = () => {}): EventBus {
  const listeners = new Set<EventListener>()
  return {
    publish(event) {
      for (const listener of listeners) {
        try {
          listener(event)
        } catch (err) {
          onListenerError(err, event)
        }
      }
    },
    subscribe(listener) {
      listeners.add(listener)
      return () => listeners.delete(listener)
    },
  }
}
