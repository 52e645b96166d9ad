// The lifecycle's side of the protocol servers' ports: what DHCP and TFTP saw goes onto the machine's timeline,
// and DHCP learns what not to boot. The servers know nothing of machines; this maps packets to machines.
import type { ClientArch } from '../dhcp/client-arch.js'
import type { DhcpBootAdvice, DhcpBootEvent, DhcpBootPort } from '../dhcp/ports.js'
import type { RequestFacts } from '../dhcp/facts.js'
import type { Dhcp6BootEvent, Dhcp6BootPort } from '../dhcp6/index.js'
import type { Inventory, Machine } from '../inventory/index.js'
import type { Logger } from '../log.js'
import type { TftpObserver, TftpTransferInfo } from '../tftp/index.js'
import type { IpxeWait } from './ipxe-wait.js'
import type { Lifecycle } from './service.js'

/** The machine's arch and firmware as the client's DHCP arch (option 93 / 61) names them. */
function platformOf(a: ClientArch | null): { arch: 'amd64' | 'arm64' | null; firmware: 'bios' | 'uefi' | null } {
  const family = a?.family
  const arch = family === 'uefiArm64' ? 'arm64' : family === 'bios' || family === 'uefiX64' ? 'amd64' : null
  const firmware = a?.firmware === 'bios' ? 'bios' : a?.firmware === 'uefi' ? 'uefi' : null
  return { arch, firmware }
}

/** The timeline's words for what a client asked: "REQUEST (iPXE)", "SOLICIT (HTTPClient x64 UEFI HTTP)". */
function asked(message: string, ipxe: boolean, clientType: string | null, a: ClientArch | null): string {
  return `${message.toUpperCase()}${ipxe ? ' (iPXE)' : clientType ? ` (${clientType}${a ? ` ${a.name}` : ''})` : ''}`
}

/** What DHCP (v4 and v6) may offer a machine: no boot options while it is in maintenance (it keeps its address). */
function adviceFor(machine: Machine): DhcpBootAdvice {
  return machine.state === 'maintenance' ? { ignore: true, reason: 'machine is in maintenance' } : {}
}

export function createDhcpBootPort(deps: { lifecycle: Lifecycle; log: Logger; ipxeWait?: IpxeWait; clock?: { now(): number } }): DhcpBootPort {
  return {
    async inspect(facts: RequestFacts, event: DhcpBootEvent): Promise<DhcpBootAdvice | void> {
      const { machine } = await deps.lifecycle.identify({ mac: facts.mac, uuid: facts.uuid, ...platformOf(facts.arch) }, 'dhcp')
      const what = asked(facts.message, facts.isIpxe, facts.clientType, facts.arch)
      const answer = event.reply === 'none' ? 'no answer' : `${event.reply.toUpperCase()}${event.ip ? ` ${event.ip}` : ''}`
      const advice = adviceFor(machine)
      deps.lifecycle.record(machine.id, 'boot.dhcp', `DHCP ${what} → ${answer}${advice.ignore ? ' without boot options (maintenance)' : event.bootFile ? `, boot ${event.bootFile}` : ''}`, {
        message: facts.message,
        reply: event.reply,
        mode: event.mode,
        ip: event.ip ?? null,
        subnet: event.subnet ?? null,
        relay: facts.giaddr,
        arch: facts.arch?.name ?? null,
        ipxe: facts.isIpxe,
        bootFile: advice.ignore ? null : (event.bootFile ?? null),
      })
      // iPXE's own lease: the boot script should follow within a second (see ipxe-wait.ts).
      if (facts.isIpxe && event.reply === 'ack' && !advice.ignore) deps.ipxeWait?.leased(machine.id, deps.clock?.now() ?? Date.now(), facts.giaddr !== null)
      return advice
    },
  }
}

/**
 * DHCPv6's side, as DHCPv4's: advice before the boot options (none while in maintenance), and the exchange on the
 * machine's timeline after the fact (the machine created as new when unknown).
 */
export function createDhcp6BootPort(deps: { lifecycle: Lifecycle; log: Logger; ipxeWait?: IpxeWait; clock?: { now(): number } }): Dhcp6BootPort {
  const record = async (e: Dhcp6BootEvent): Promise<void> => {
    const { machine } = await deps.lifecycle.identify({ mac: e.mac, ...platformOf(e.arch) }, 'dhcp6')
    const what = asked(e.message, e.ipxe, e.clientType, e.arch)
    const answer = `${e.reply.toUpperCase()}${e.addresses.length > 0 ? ` ${e.addresses.join(', ')}` : ''}`
    const held = adviceFor(machine).ignore === true
    deps.lifecycle.record(machine.id, 'boot.dhcp', `DHCPv6 ${what} → ${answer}${held ? ' without boot options (maintenance)' : e.bootUrl ? `, boot ${e.bootUrl}` : ''}`, {
      protocol: 'dhcp6',
      message: e.message,
      reply: e.reply,
      ip: e.addresses[0] ?? null,
      relay: e.relayLink,
      arch: e.arch?.name ?? null,
      ipxe: e.ipxe,
      bootFile: e.bootUrl,
    })
    // iPXE's own binding: its script should follow within a second (ipxe-wait.ts).
    if (e.ipxe && e.reply === 'reply' && e.addresses.length > 0) deps.ipxeWait?.leased(machine.id, deps.clock?.now() ?? Date.now(), e.relayLink !== null)
  }
  return {
    async advise(r) {
      const { machine } = await deps.lifecycle.identify({ mac: r.mac, ...platformOf(r.facts.arch) }, 'dhcp6')
      return adviceFor(machine)
    },
    seen(e) {
      record(e).catch((err: unknown) => deps.log.warn({ err, mac: e.mac }, 'dhcp6 exchange not recorded on the timeline'))
    },
  }
}

export function createTftpObserver(deps: { lifecycle: Lifecycle; inventory: Inventory; log: Logger }): TftpObserver {
  return {
    transferFinished(info: TftpTransferInfo) {
      // Fire and forget: the TFTP server never waits on the database.
      void (async () => {
        const lease = await deps.inventory.leases.byIp(info.client.address)
        const machine = lease ? await deps.inventory.machines.byMac(lease.mac) : null
        const secs = info.ms / 1000
        const message = info.ok
          ? `TFTP ${info.file}: ${info.bytes} bytes in ${secs.toFixed(2)} s (blksize ${info.blksize}, window ${info.windowsize})`
          : info.aborted
            ? `TFTP ${info.file}: client ended the transfer (${info.error ?? 'aborted'})`
            : `TFTP ${info.file} failed: ${info.error ?? 'unknown error'}`
        // An address that is no machine's gets no timeline row: a flood of requests would otherwise be a flood of
        // rows. The TFTP counters still count it, and the debug log names it.
        if (!machine) {
          deps.log.debug({ client: info.client.address, file: info.file, ok: info.ok, error: info.error ?? null }, 'TFTP transfer from an address no machine holds')
          return
        }
        deps.lifecycle.record(machine.id, 'boot.tftp', message, {
          file: info.file, bytes: info.bytes, ms: info.ms, ok: info.ok, aborted: info.aborted ?? false, error: info.error ?? null,
          client: info.client.address, blksize: info.blksize, windowsize: info.windowsize,
        })
      })().catch((err) => deps.log.warn({ err }, 'cannot record TFTP transfer'))
    },
  }
}
