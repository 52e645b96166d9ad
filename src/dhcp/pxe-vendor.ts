// Option 43 for PXE clients (PXE specification 2.1, §2.4): vendor options encapsulated as sub-options.
import { encodeSubOptions, ipBytes, parseSubOptions, readIp } from './options.js'

export const PxeSubOption = {
  MtftpIp: 1,
  MtftpClientPort: 2,
  MtftpServerPort: 3,
  MtftpTimeout: 4,
  MtftpDelay: 5,
  /** Bit 0: no broadcast discovery; 1: no multicast; 2: only listed servers; 3: boot file in this packet. */
  DiscoveryControl: 6,
  DiscoveryMulticastAddress: 7,
  BootServers: 8,
  BootMenu: 9,
  MenuPrompt: 10,
  BootItem: 71,
} as const

/** Discovery control value "use the boot file and server given here, skip boot server discovery". */
export const DISCOVERY_USE_BOOT_FILE = 0x08

export interface PxeBootItem {
  /** Boot server type (0 = PXE bootstrap server). */
  type: number
  /** Layer (bit 15 = credentials requested). */
  layer: number
}

export interface PxeVendorOptions {
  discoveryControl?: number
  bootServers?: { type: number; addresses: string[] }[]
  bootMenu?: { type: number; description: string }[]
  menuPrompt?: { timeout: number; prompt: string }
  bootItem?: PxeBootItem
  /** Every sub-option as received, including those not named above. */
  raw: Map<number, Buffer>
}

/** Reads option 43 as PXE sub-options; undefined when malformed. */
export function decodePxeVendor(value: Buffer): PxeVendorOptions | undefined {
  const raw = parseSubOptions(value)
  if (!raw) return undefined
  const out: PxeVendorOptions = { raw }
  const dc = raw.get(PxeSubOption.DiscoveryControl)
  if (dc && dc.length === 1) out.discoveryControl = dc[0]!
  const item = raw.get(PxeSubOption.BootItem)
  if (item && item.length === 4) out.bootItem = { type: item.readUInt16BE(0), layer: item.readUInt16BE(2) }
  const servers = raw.get(PxeSubOption.BootServers)
  if (servers) {
    const list: { type: number; addresses: string[] }[] = []
    let i = 0
    while (i + 3 <= servers.length) {
      const type = servers.readUInt16BE(i)
      const count = servers[i + 2]!
      i += 3
      if (i + count * 4 > servers.length) break
      const addresses: string[] = []
      for (let k = 0; k < count; k++) addresses.push(readIp(servers, i + k * 4))
      i += count * 4
      list.push({ type, addresses })
    }
    out.bootServers = list
  }
  const menu = raw.get(PxeSubOption.BootMenu)
  if (menu) {
    const list: { type: number; description: string }[] = []
    let i = 0
    while (i + 3 <= menu.length) {
      const type = menu.readUInt16BE(i)
      const len = menu[i + 2]!
      if (i + 3 + len > menu.length) break
      list.push({ type, description: menu.toString('latin1', i + 3, i + 3 + len) })
      i += 3 + len
    }
    out.bootMenu = list
  }
  const prompt = raw.get(PxeSubOption.MenuPrompt)
  if (prompt && prompt.length >= 1) out.menuPrompt = { timeout: prompt[0]!, prompt: prompt.toString('latin1', 1) }
  return out
}

/** Builds option 43 for a PXE client; always terminated by END as PXE ROMs expect. */
export function encodePxeVendor(opts: Omit<PxeVendorOptions, 'raw'>): Buffer {
  const subs: [number, Buffer][] = []
  if (opts.discoveryControl !== undefined) subs.push([PxeSubOption.DiscoveryControl, Buffer.from([opts.discoveryControl])])
  if (opts.bootServers) {
    subs.push([
      PxeSubOption.BootServers,
      Buffer.concat(
        opts.bootServers.map((s) => {
          const head = Buffer.alloc(3)
          head.writeUInt16BE(s.type, 0)
          head[2] = s.addresses.length
          return Buffer.concat([head, ...s.addresses.map(ipBytes)])
        }),
      ),
    ])
  }
  if (opts.bootMenu) {
    subs.push([
      PxeSubOption.BootMenu,
      Buffer.concat(
        opts.bootMenu.map((m) => {
          const d = Buffer.from(m.description, 'latin1')
          const head = Buffer.alloc(3)
          head.writeUInt16BE(m.type, 0)
          head[2] = d.length
          return Buffer.concat([head, d])
        }),
      ),
    ])
  }
  if (opts.menuPrompt) {
    subs.push([PxeSubOption.MenuPrompt, Buffer.concat([Buffer.from([opts.menuPrompt.timeout]), Buffer.from(opts.menuPrompt.prompt, 'latin1')])])
  }
  if (opts.bootItem) {
    const b = Buffer.alloc(4)
    b.writeUInt16BE(opts.bootItem.type, 0)
    b.writeUInt16BE(opts.bootItem.layer, 2)
    subs.push([PxeSubOption.BootItem, b])
  }
  return encodeSubOptions(subs, { end: true })
}
