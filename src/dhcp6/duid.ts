// DUIDs (RFC 8415 §11): the server's own, kept stable across restarts in the data directory, and what a client's
// says about its hardware (DUID-LLT and DUID-LL carry a MAC).
import { randomUUID } from 'node:crypto'
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs'
import { networkInterfaces } from 'node:os'
import { dirname, join } from 'node:path'
import { RackbootError } from '../errors.js'

export const DuidType = { LLT: 1, EN: 2, LL: 3, UUID: 4 } as const

/** RFC 8415 §11.1: a DUID is at most 128 octets (plus its 2-byte type). */
export const MAX_DUID_BYTES = 130
/** DUID-LLT time is seconds since 2000-01-01 UTC. */
const DUID_EPOCH_MS = Date.UTC(2000, 0, 1)
const HW_ETHERNET = 1

/** The file under settings.dataDir that holds the server DUID (hex, one line). */
export const SERVER_DUID_FILE = 'dhcp6-server-duid'

const macBytes = (mac: string): Buffer | null =>
  /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i.test(mac) && mac !== '00:00:00:00:00:00' ? Buffer.from(mac.replace(/:/g, ''), 'hex') : null

export function duidLlt(mac: string, nowMs: number): Buffer {
  const hw = macBytes(mac)
  if (!hw) throw new RangeError(`not a MAC address: ${mac}`)
  const h = Buffer.alloc(8)
  h.writeUInt16BE(DuidType.LLT, 0)
  h.writeUInt16BE(HW_ETHERNET, 2)
  h.writeUInt32BE(Math.max(0, Math.floor((nowMs - DUID_EPOCH_MS) / 1000)) >>> 0, 4)
  return Buffer.concat([h, hw])
}

export function duidUuid(uuid: string = randomUUID()): Buffer {
  const hex = uuid.replace(/-/g, '')
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new RangeError(`not a UUID: ${uuid}`)
  const h = Buffer.alloc(2)
  h.writeUInt16BE(DuidType.UUID, 0)
  return Buffer.concat([h, Buffer.from(hex, 'hex')])
}

/** A well-formed DUID the server can key state by: 3..130 bytes. */
export function isValidDuid(duid: Buffer | undefined): duid is Buffer {
  return !!duid && duid.length >= 3 && duid.length <= MAX_DUID_BYTES
}

/** The Ethernet MAC inside a DUID-LLT or DUID-LL (lower-case, colon-separated), or null. */
export function macFromDuid(duid: Buffer): string | null {
  if (duid.length < 4) return null
  const type = duid.readUInt16BE(0)
  const hwtype = duid.readUInt16BE(2)
  if (hwtype !== HW_ETHERNET) return null
  const addr = type === DuidType.LLT ? duid.subarray(8) : type === DuidType.LL ? duid.subarray(4) : null
  if (!addr || addr.length !== 6) return null
  return [...addr].map((b) => b.toString(16).padStart(2, '0')).join(':')
}

/** The first non-internal interface MAC (or the named interface's). */
function interfaceMac(name?: string): string | null {
  const all = networkInterfaces()
  const entries = name ? [[name, all[name]] as const] : Object.entries(all)
  for (const [, addrs] of entries) {
    for (const a of addrs ?? []) if (!a.internal && macBytes(a.mac)) return a.mac
  }
  return null
}

export interface ServerDuidOptions {
  dataDir: string
  /** The provisioning interface: its MAC makes a DUID-LLT. Without one (or without a MAC) a DUID-UUID is made. */
  interface?: string
  /** 'llt' (default when a MAC is known) or 'uuid'. */
  type?: 'llt' | 'uuid'
  now?: () => number
}

/**
 * The server DUID: read from `<dataDir>/dhcp6-server-duid`, or made once and written there (atomically), so the
 * server keeps its identity across restarts and clients keep renewing with it. A file that does not hold a DUID is
 * an error, not silently replaced: clients bound to the old identity would all fall back to rebinding.
 */
export function loadServerDuid(o: ServerDuidOptions): { duid: Buffer; created: boolean; file: string } {
  const file = join(o.dataDir, SERVER_DUID_FILE)
  let text: string | null = null
  try {
    text = readFileSync(file, 'utf8').trim()
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new RackbootError('RB_ERR_STORAGE', `cannot read the DHCPv6 server DUID from ${file}`, { cause: err })
    }
  }
  if (text !== null) {
    const duid = /^([0-9a-f]{2})+$/i.test(text) ? Buffer.from(text, 'hex') : null
    if (!isValidDuid(duid ?? undefined)) {
      throw new RackbootError('RB_ERR_STORAGE', `${file} does not hold a DUID (hex, 3 to 130 bytes); fix or delete it (a new DUID makes every DHCPv6 client rebind)`)
    }
    return { duid: duid!, created: false, file }
  }
  const mac = o.type === 'uuid' ? null : interfaceMac(o.interface)
  const duid = mac ? duidLlt(mac, (o.now ?? Date.now)()) : duidUuid()
  try {
    mkdirSync(dirname(file), { recursive: true })
    const tmp = `${file}.${process.pid}.tmp`
    writeFileSync(tmp, `${duid.toString('hex')}\n`, { mode: 0o644 })
    renameSync(tmp, file)
  } catch (err) {
    throw new RackbootError('RB_ERR_STORAGE', `cannot write the DHCPv6 server DUID to ${file}`, { cause: err })
  }
  return { duid, created: true, file }
}
