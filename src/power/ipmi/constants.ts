// IPMI v2.0 numbers used by rackboot's RMCP+ client. Table numbers refer to the IPMI v2.0 rev 1.1 specification.

/** RMCP header (table 13-1): version 6, reserved, sequence 0xFF (no RMCP ACK), class 7 (IPMI). */
export const RMCP_HEADER = Buffer.from([0x06, 0x00, 0xff, 0x07])

export const AUTH_TYPE_NONE = 0x00
/** Auth type / format byte that marks an IPMI v2.0 (RMCP+) session header. */
export const AUTH_TYPE_RMCP_PLUS = 0x06

/** Payload types (table 13-16). */
export const PayloadType = {
  IPMI: 0x00,
  OPEN_SESSION_REQUEST: 0x10,
  OPEN_SESSION_RESPONSE: 0x11,
  RAKP1: 0x12,
  RAKP2: 0x13,
  RAKP3: 0x14,
  RAKP4: 0x15,
} as const

export const NetFn = {
  CHASSIS: 0x00,
  APP: 0x06,
} as const

export const Cmd = {
  // NetFn APP
  GET_DEVICE_ID: 0x01,
  GET_CHANNEL_AUTH_CAPABILITIES: 0x38,
  SET_SESSION_PRIVILEGE_LEVEL: 0x3b,
  CLOSE_SESSION: 0x3c,
  // NetFn CHASSIS
  GET_CHASSIS_STATUS: 0x01,
  CHASSIS_CONTROL: 0x02,
  CHASSIS_IDENTIFY: 0x04,
  SET_SYSTEM_BOOT_OPTIONS: 0x08,
  GET_SYSTEM_BOOT_OPTIONS: 0x09,
} as const

/** Chassis Control data byte (table 28-4). */
export const ChassisControl = {
  POWER_DOWN: 0x00,
  POWER_UP: 0x01,
  POWER_CYCLE: 0x02,
  HARD_RESET: 0x03,
  PULSE_DIAG: 0x04,
  SOFT_SHUTDOWN: 0x05,
} as const

/** Privilege levels (table 22-28); RAKP1 adds bit 4 for name-only user lookup. */
export const Privilege = { USER: 0x02, OPERATOR: 0x03, ADMINISTRATOR: 0x04 } as const
export const NAME_ONLY_LOOKUP = 0x10

/** Authentication, integrity and confidentiality algorithm numbers (tables 13-17 to 13-19). */
export const AuthAlg = { NONE: 0x00, RAKP_HMAC_SHA1: 0x01, RAKP_HMAC_MD5: 0x02, RAKP_HMAC_SHA256: 0x03 } as const
export const IntegrityAlg = { NONE: 0x00, HMAC_SHA1_96: 0x01, HMAC_MD5_128: 0x02, MD5_128: 0x03, HMAC_SHA256_128: 0x04 } as const
export const ConfAlg = { NONE: 0x00, AES_CBC_128: 0x01 } as const

/** RMCP+ and RAKP message status codes (table 13-15). */
export const RMCP_STATUS: Record<number, string> = {
  0x01: 'insufficient resources to create a session',
  0x02: 'invalid session ID',
  0x03: 'invalid payload type',
  0x04: 'invalid authentication algorithm',
  0x05: 'invalid integrity algorithm',
  0x06: 'no matching authentication payload',
  0x07: 'no matching integrity payload',
  0x08: 'inactive session ID',
  0x09: 'invalid role',
  0x0a: 'unauthorized role or privilege level requested',
  0x0b: 'insufficient resources to create a session at the requested role',
  0x0c: 'invalid name length',
  0x0d: 'unauthorized name',
  0x0e: 'unauthorized GUID',
  0x0f: 'invalid integrity check value',
  0x10: 'invalid confidentiality algorithm',
  0x11: 'no cipher suite match with proposed security algorithms',
  0x12: 'illegal or unrecognized parameter',
}

/** Open Session statuses that mean "not this cipher suite": the client tries its next one. */
export const SUITE_REFUSED = new Set([0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11])

/** Generic completion codes (table 5-2). */
export const COMPLETION_CODES: Record<number, string> = {
  0xc0: 'node busy',
  0xc1: 'invalid command',
  0xc2: 'command invalid for given LUN',
  0xc3: 'timeout while processing command',
  0xc4: 'out of space',
  0xc5: 'reservation canceled or invalid reservation ID',
  0xc6: 'request data truncated',
  0xc7: 'request data length invalid',
  0xc8: 'request data field length limit exceeded',
  0xc9: 'parameter out of range',
  0xca: 'cannot return number of requested data bytes',
  0xcb: 'requested sensor, data, or record not present',
  0xcc: 'invalid data field in request',
  0xcd: 'command illegal for specified sensor or record type',
  0xce: 'command response could not be provided',
  0xcf: 'cannot execute duplicated request',
  0xd0: 'SDR repository in update mode',
  0xd1: 'device in firmware update mode',
  0xd2: 'BMC initialization in progress',
  0xd3: 'destination unavailable',
  0xd4: 'insufficient privilege level',
  0xd5: 'command not supported in present state',
  0xd6: 'sub-function disabled or unavailable',
  0xff: 'unspecified error',
}

/** Boot option parameters (table 28-14). */
export const BootParam = {
  SET_IN_PROGRESS: 0x00,
  BOOT_FLAG_VALID_CLEARING: 0x03,
  BOOT_INFO_ACK: 0x04,
  BOOT_FLAGS: 0x05,
} as const

/** Boot device selector, data byte 2 bits 5:2 of parameter 5. */
export const BootSelector = {
  NONE: 0x0,
  PXE: 0x1,
  DISK: 0x2,
  SAFE: 0x3,
  DIAG: 0x4,
  CDROM: 0x5,
  BIOS_SETUP: 0x6,
} as const
