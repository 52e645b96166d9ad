// Picks the driver for a BMC by its inventory type.
import type { Logger } from '../log.js'
import { PowerError } from './errors.js'
import { createIpmiDriver, type IpmiDriverOptions } from './ipmi/index.js'
import { createRedfishDriver, type RedfishDriverOptions } from './redfish/index.js'
import type { BmcCredentials, BmcDriver, BmcTarget } from './types.js'

export interface DriverOptions {
  /** Wall-clock budget of one driver call. */
  timeoutMs?: number
  log?: Logger
  /** IPMI tuning (cipher suites, retransmit interval, boot readback strictness). */
  ipmi?: Pick<IpmiDriverOptions, 'suites' | 'retransmitMs' | 'bootVerify' | 'kg' | 'privilege' | 'onStats'>
  /** Redfish tuning (system to drive, task polling, readback, an extra CA). */
  redfish?: Pick<RedfishDriverOptions, 'systemId' | 'taskPollMs' | 'verifyReads' | 'verifyIntervalMs' | 'ca' | 'agent'>
}

export type DriverFactory = (bmc: BmcTarget, credentials: BmcCredentials, options?: DriverOptions) => BmcDriver

export const createBmcDriver: DriverFactory = (bmc, credentials, options = {}) => {
  const log = options.log?.child({ bmc: bmc.address, type: bmc.type })
  if (bmc.type === 'ipmi') {
    // The BMC's own settings win over the settings' defaults.
    return createIpmiDriver({
      host: bmc.address, port: bmc.port ?? 623,
      // IPMI allows the null user and an empty password; the BMC decides.
      username: credentials.username ?? '', password: credentials.password ?? '',
      timeoutMs: options.timeoutMs, log, ...options.ipmi,
      ...(bmc.cipherSuites?.length ? { suites: bmc.cipherSuites } : {}),
      ...(bmc.privilege ? { privilege: bmc.privilege } : {}),
      ...(bmc.bootVerify ? { bootVerify: bmc.bootVerify } : {}),
      ...(credentials.kg?.length ? { kg: credentials.kg } : {}),
    })
  }
  if (bmc.type === 'redfish') {
    if (!credentials.username || credentials.password === null) {
      throw new PowerError('no-bmc', `Redfish BMC ${bmc.address} has no username or password in the inventory`)
    }
    return createRedfishDriver({
      address: bmc.address, port: bmc.port, username: credentials.username, password: credentials.password,
      insecure: bmc.insecure, fingerprint: bmc.fingerprint, timeoutMs: options.timeoutMs, log, ...options.redfish,
      ...(bmc.systemId ? { systemId: bmc.systemId } : {}),
      ...(bmc.caPem ? { ca: bmc.caPem } : {}),
      ...(bmc.auth ? { auth: bmc.auth } : {}),
    })
  }
  throw new PowerError('invalid', `unknown BMC type ${String((bmc as { type: unknown }).type)}`)
}
