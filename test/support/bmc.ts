// A whole BMC record for tests that build one by hand: the inventory's defaults, overridden as given.
import type { Bmc } from '../../src/inventory/types.js'

export function bmcRecord(fields: Pick<Bmc, 'machineId' | 'type' | 'address'> & Partial<Bmc>): Bmc {
  return {
    port: null, username: 'admin', hasPassword: true, credentialsRef: null, insecure: false, fingerprint: null,
    systemId: null, caPem: null, auth: 'auto', cipherSuites: null, privilege: null, bootVerify: null, bootMethod: 'pxe',
    hasKg: false, kgRef: null, power: null, clearOverrideAfterBoot: false,
    ...fields,
  }
}
