import type { Inventory } from '../../src/inventory/index.js'

/**
 * Records that rackboot's DHCP bound `ip` to `mac`, as a real boot would before it asks for its script: the network's
 * word for who is at that address (tests of the boot flow that do not run DHCP themselves).
 */
export async function leaseAddress(inventory: Inventory, ip: string, mac: string, options: { subnet?: string; ttlMs?: number } = {}): Promise<void> {
  const now = Date.now()
  await inventory.leases.put({
    ip, mac: mac.toLowerCase().replace(/-/g, ':'), clientId: null, subnet: options.subnet ?? (ip.startsWith('127.') ? '127.0.0.0/8' : `${ip.split('.').slice(0, 3).join('.')}.0/24`),
    state: 'bound', hostname: null, expiresAt: now + (options.ttlMs ?? 3_600_000), updatedAt: now,
  })
}
