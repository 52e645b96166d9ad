// ProxyDHCP (PXE specification 2.1 §2.2): beside an existing DHCP server, answer network-boot clients only, with
// boot information and no address. On the DHCP port: DISCOVER → OFFER (yiaddr 0.0.0.0), and a REQUEST naming this
// server → ACK. On the boot-server port (4011): REQUEST/INFORM → ACK, sent back from 4011 to the client's port.
import type { Logger } from '../../log.js'
import { chooseBoot, type BootChoice, type BootFileConfig } from '../boot-file.js'
import { bootModifiers, choiceTarget, consultBootPort, overrideOf, type AdviceDeps } from '../boot-options.js'
import type { DhcpPacket } from '../codec.js'
import { requestFacts, type RequestFacts, type RequestMeta } from '../facts.js'
import { ignore, type DhcpHandler, type DhcpReply, type DhcpResult } from '../handler.js'
import {
  replyTo, withBootFile, withBroadcastFlag, withCiaddr, withEchoes, withMessageType, withNextServer, withPxeVendor,
  withServerId, withVendorClass, type Modifier,
} from '../modifiers.js'
import { MessageType, OptionCode } from '../options.js'
import { decodePxeVendor } from '../pxe-vendor.js'

export interface ProxyHandlerDeps {
  /** Option 54: this server's address. */
  serverId: string
  boot: BootFileConfig
  advice: AdviceDeps
  log: Logger
}

const ZERO = '0.0.0.0'

export function createProxyHandler(deps: ProxyHandlerDeps): DhcpHandler & { readonly mode: 'proxy' } {
  const { serverId } = deps

  const decide = async (f: RequestFacts, reply: 'offer' | 'ack'): Promise<BootChoice | { ignore: string; detail?: string }> => {
    const planned = chooseBoot(f, deps.boot)
    if (planned.kind === 'none') return { ignore: 'no-boot-file', detail: planned.reason }
    if (f.message === 'unknown') return { ignore: 'no-message-type' }
    const bootFile = choiceTarget(planned)
    const advice = await consultBootPort(deps.advice, f, {
      message: f.message,
      mode: 'proxy',
      reply,
      ...(bootFile ? { bootFile } : {}),
    })
    if (advice.ignore) return { ignore: 'lifecycle-ignore', ...(advice.reason ? { detail: advice.reason } : {}) }
    let choice: BootChoice = planned
    const override = overrideOf(advice)
    if (override) {
      choice = chooseBoot(f, deps.boot, override)
      if (choice.kind === 'none') return { ignore: 'no-boot-file', detail: choice.reason }
    }
    deps.advice.missingLoader?.(f, choice)
    return choice
  }

  const finish = (req: DhcpPacket, f: RequestFacts, type: 'offer' | 'ack', mods: Modifier[]): DhcpReply => {
    const reply: DhcpReply = { kind: 'reply', type, packet: replyTo(req, ...mods, withEchoes(req)) }
    if (f.maxMessageSize) reply.maxSize = f.maxMessageSize - 28
    return reply
  }

  /** Answer on the DHCP port: boot information only, as a ProxyDHCP offer (or ACK to a REQUEST naming us). */
  const onDhcpPort = async (req: DhcpPacket, f: RequestFacts, type: 'offer' | 'ack'): Promise<DhcpResult> => {
    const choice = await decide(f, type)
    if ('ignore' in choice) return ignore(choice.ignore, choice.detail)
    const mods: Modifier[] = [
      withMessageType(type === 'offer' ? MessageType.Offer : MessageType.Ack),
      withServerId(serverId),
      // The client has no address from us: it must be able to hear the answer.
      withBroadcastFlag(),
    ]
    if (type === 'ack' && req.ciaddr !== ZERO) mods.push(withCiaddr(req.ciaddr))
    mods.push(...bootModifiers(f, choice, { mode: 'proxy', ipxeNoPxedhcp: false }))
    return finish(req, f, type, mods)
  }

  /** Answer on the boot-server port: the boot file, plus the boot item echoed when the client named one. */
  const onBootServerPort = async (req: DhcpPacket, f: RequestFacts): Promise<DhcpResult> => {
    const choice = await decide(f, 'ack')
    if ('ignore' in choice) return ignore(choice.ignore, choice.detail)
    const mods: Modifier[] = [withMessageType(MessageType.Ack), withServerId(serverId)]
    if (req.ciaddr !== ZERO) mods.push(withCiaddr(req.ciaddr))
    switch (choice.kind) {
      case 'tftp':
      case 'ipxe-script':
        if (choice.nextServer) mods.push(withNextServer(choice.nextServer))
        mods.push(withBootFile(choice.kind === 'tftp' ? choice.file : choice.url), withVendorClass('PXEClient'))
        break
      case 'http':
        mods.push(withBootFile(choice.url), withVendorClass('HTTPClient'))
        break
    }
    const vendor = req.options.get(OptionCode.VendorSpecific)
    const item = vendor ? decodePxeVendor(vendor)?.bootItem : undefined
    if (item) mods.push(withPxeVendor({ bootItem: item }))
    return finish(req, f, 'ack', mods)
  }

  return {
    mode: 'proxy',
    async handle(req: DhcpPacket, meta: RequestMeta): Promise<DhcpResult> {
      if (req.op !== 1) return ignore('not-a-request')
      const f = requestFacts(req, meta)
      if (!f.isNetboot) return ignore('not-netboot')
      if (f.bootServerRequest) {
        if (f.message === 'request' || f.message === 'inform') return onBootServerPort(req, f)
        return ignore('unexpected-message-type', f.message)
      }
      switch (f.message) {
        case 'discover':
          return onDhcpPort(req, f, 'offer')
        case 'request':
          // A REQUEST naming another server is the client taking its address from the real DHCP server.
          if (f.serverId !== serverId) return ignore('other-server')
          return onDhcpPort(req, f, 'ack')
        default:
          return ignore('not-for-proxy', f.message)
      }
    },
  }
}
