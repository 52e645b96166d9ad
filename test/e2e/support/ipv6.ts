// The IPv6-only segment of the IPv6 netboot tests (ipv6.test.ts, ipv6-pxe.test.ts): a global prefix on the server's
// end, rackboot's DHCPv6 over a range in it, its router advertisements (M, O and A flags), no DHCPv4 at all, HTTP and
// TFTP on both families.
import type { VmLab } from './lab.js'

/** Adds 2001:db8:X::1/64 to the lab's server end and returns rackboot's settings for an IPv6-only segment. */
export async function ipv6LabSettings(lab: VmLab): Promise<{ prefix: string; settings: Record<string, unknown> }> {
  const prefix = `2001:db8:${lab.serverIp.split('.')[2]}`
  await lab.serverNs!.ip(['addr', 'add', `${prefix}::1/64`, 'dev', lab.serverInterface, 'nodad'])
  return {
    prefix,
    settings: {
      log: { level: 'debug' },
      http: { listen: '::', port: 8080, publicUrl: `http://${lab.serverIp}:8080` },
      tftp: { listen: '::', port: 69 },
      dhcp: { mode: 'off', routerAdverts: 'on', interface: lab.serverInterface },
      dhcp6: { enabled: true, interface: lab.serverInterface, serverAddress: `${prefix}::1`, prefix: `${prefix}::/64`, rangeStart: `${prefix}::100`, rangeEnd: `${prefix}::1ff` },
    },
  }
}
