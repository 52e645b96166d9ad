// The boot bench's IPv6-only segment (mode uefi-pxe6): the same two peers as bench/boot-lab.ts, neither serving
// DHCPv4, both on the global prefix test/e2e/support/ipv6.ts puts on the lab's server end (2001:db8:X::1/64).
//   rackboot  the settings ipv6-pxe.test.ts runs it with (ipv6LabSettings: DHCPv6 over a range, option 59
//             tftp://[server]/ipxe.efi for the firmware, its RAs with M, O and A, HTTP and TFTP on ::), log level
//             info as in the IPv4 modes.
//   dnsmasq   DHCPv6 over a stateful range (OVMF's PXEv6 asks for an address) with `slaac` (the A flag: the agent
//             takes its address from the RAs, as on rackboot's segment), RAs (enable-ra), option 59
//             tftp://[server]/ipxe.efi for the firmware and, for iPXE's own DHCPv6 (user class "iPXE", option 15),
//             the static boot.ipxe on the HTTP server over IPv6; TFTP on. The agent's report URL names the server's
//             IPv6 address, so it reports over IPv6 (sh/ipv6.sh) as it does against rackboot.
import type { VmLab } from '../test/e2e/support/index.js'
import { ipv6LabSettings } from '../test/e2e/support/ipv6.js'
import { HTTP_PORT, dnsmasqPeer, rackbootPeer, type Peer } from './boot-lab.js'

/** Adds the prefix to the lab's server end (once per lab) and returns both peers for it. */
export async function ipv6Peers(lab: VmLab, assetsDir: string): Promise<Record<Peer['key'], Peer>> {
  const { prefix, settings } = await ipv6LabSettings(lab)
  const server = `${prefix}::1`
  return {
    rackboot: rackbootPeer(lab, assetsDir, { name: 'rackboot6', settings: { ...settings, log: { level: 'info' } } }),
    dnsmasq: dnsmasqPeer(lab, assetsDir, {
      name: 'dnsmasq6', urlHost: `[${server}]`, listen: `[${server}]:${HTTP_PORT}`, bind: server,
      dhcpArgs: (base, tftp) => [
        `--dhcp-range=${prefix}::10,${prefix}::ff,slaac,64,1h`,
        '--enable-ra',
        '--dhcp-userclass=set:ipxe6,iPXE',
        `--dhcp-option=tag:!ipxe6,option6:bootfile-url,tftp://[${server}]/ipxe.efi`,
        `--dhcp-option=tag:ipxe6,option6:bootfile-url,${base}/boot.ipxe`,
        '--enable-tftp', `--tftp-root=${tftp}`,
      ],
    }),
  }
}
