export { createIpmiDriver, type IpmiDriverOptions } from './driver.js'
export { openSession, type IpmiSession, type IpmiSessionOptions, type SuiteId } from './session.js'
export { CIPHER_SUITES, type CipherSuite } from './crypto.js'
export { encodeBootFlags, decodeBootFlags } from './boot-flags.js'
