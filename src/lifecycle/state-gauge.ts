import { Gauge, type Registry } from 'prom-client'
import { MACHINE_STATES, type Inventory } from '../inventory/index.js'

/** rackboot_machines{state}: machines per state, counted by the inventory when /metrics is scraped. */
export function registerStateGauge(registry: Registry, inventory: Pick<Inventory, 'machines'>): void {
  new Gauge({
    name: 'rackboot_machines',
    help: 'Machines in the inventory by state',
    labelNames: ['state'] as const,
    registers: [registry],
    async collect() {
      const counts = await Promise.all(MACHINE_STATES.map((state) => inventory.machines.count({ state })))
      MACHINE_STATES.forEach((state, i) => this.set({ state }, counts[i]!))
    },
  })
}
