export { createRedfishDriver, baseUrlOf, type RedfishDriverOptions } from './driver.js'
export { createBmcAgent, normalizeFingerprint, type TlsPolicy } from './tls.js'
export { RESET_PREFERENCES, resetCandidates } from './mapping.js'
