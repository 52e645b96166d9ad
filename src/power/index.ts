// The power layer's public door: one BmcDriver interface, the IPMI and Redfish drivers, and the power manager.
export type {
  BmcCredentials, BmcDescription, BmcDriver, BmcTarget, BootDevice, BootMode, BootOverride, BootReadback, CallOptions, Capability,
  PowerAction, PowerState,
} from './types.js'
export { POWER_ACTIONS } from './types.js'
export { PowerError, isPowerError, type PowerErrorKind } from './errors.js'
export { createBmcDriver, type DriverFactory, type DriverOptions } from './driver.js'
export { createIpmiDriver, type IpmiDriverOptions } from './ipmi/index.js'
export { createRedfishDriver, type RedfishDriverOptions } from './redfish/index.js'
export {
  createPowerManager, DEFAULT_POWER_SETTINGS, isAmbiguous, type KnownStatus, type NetbootOptions, type PowerManager,
  type PowerManagerDeps, type PowerManagerSettings, type PowerObserver, type PowerOperation, type PowerOutcome,
  type PowerResult, type PowerStatusChange, type PxeBootOptions, type PxeBootResult, type RebootOptions,
} from './manager.js'
export { systemClock, type Clock } from './clock.js'
export { powerResultLine } from './result-line.js'
export { confirmedFields } from './readback.js'
