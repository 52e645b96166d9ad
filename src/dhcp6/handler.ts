// The DHCPv6 server's decisions (RFC 8415 §18.3): stateful IA_NA addresses from one range, plus the netboot options
// of RFC 5970 chosen by the same table as DHCPv4 (dhcp/boot-file.ts) and the same per-machine advice (maintenance:
// no boot options; an override boot file). The bindings live in memory (leases.ts); with several servers on one
// database each is claimed there first (shared.ts). "Not for us", "malformed" and "the store failed" are values
// ({ kind: 'ignore', reason }), never throws.
import { chooseBoot, type BootChoice, type BootFileConfig } from '../dhcp/boot-file.js'
import { adviceWithin, overrideOf } from '../dhcp/boot-options.js'
import type { DhcpBootAdvice } from '../dhcp/ports.js'
import type { Logger } from '../log.js'
import { bigintToIpv6, ipv6ToBigint } from './address.js'
import { replyEnvelopes, type Dhcp6Decoded, type Dhcp6Message } from './codec.js'
import { bootFacts, requestFacts6, type RequestFacts6 } from './facts.js'
import type { ClientRef, Lease6, Lease6Store } from './leases.js'
import {
  MessageType6, Option6, PXE_ENTERPRISE, StatusCode6, allOptions, decodeIaAddr, decodeIaNa, encodeAddressList,
  encodeIaAddr, encodeIaNa, encodeStatus, encodeVendorClass6, firstOption, messageName6, u8, type IaNa, type Options6,
} from './options.js'
import type { Shared6 } from './shared.js'

export interface Dhcp6HandlerConfig {
  serverDuid: Buffer
  /** The server's address, in tftp://[...]/ boot-file URLs. */
  serverAddress: string
  preferredSeconds: number
  validSeconds: number
  /** How long an advertised address stays held for the client. */
  offerSeconds: number
  /** How long a declined address stays out of the pool. */
  declineSeconds: number
  /** Answer a SOLICIT carrying Rapid Commit with a REPLY at once (RFC 8415 §18.3.1). */
  rapidCommit: boolean
  /** Option 7 in ADVERTISE; 255 makes the client take this server's offer without waiting for others. */
  preference: number
  /** Option 23. */
  dnsServers: readonly string[]
  /** The loaders by architecture, the iPXE script URL and the http URL of a loader: as for DHCPv4. */
  boot: BootFileConfig
}

/** What the lifecycle is asked about a network-boot client with a known MAC before its boot options are sent. */
export interface Dhcp6AdviceRequest {
  mac: string
  duid: string | null
  message: string
  facts: RequestFacts6
  /** The choice before any advice. */
  planned: BootChoice
}

export interface Dhcp6HandlerDeps {
  config: Dhcp6HandlerConfig
  store: Lease6Store
  log: Logger
  now?: () => number
  /**
   * Per-machine advice, as DHCPv4's boot port gives it (dhcp/ports.ts DhcpBootAdvice): `ignore` (maintenance) sends
   * the addresses without boot options; `bootFile` / `nextServer` override the loader. Slow or failing: no advice.
   */
  advise?: (request: Dhcp6AdviceRequest) => Promise<DhcpBootAdvice | void>
  /** How long a reply waits for advice (default 500 ms, DHCPv4's bootPortTimeoutMs). */
  adviseTimeoutMs?: number
  /** Other servers share the binding table: every offer and binding is claimed there before it is sent. */
  shared?: Shared6
}

export type Dhcp6Result =
  | { kind: 'reply'; reply: Dhcp6Decoded; type: string; facts: RequestFacts6; boot: BootChoice | null }
  | { kind: 'ignore'; reason: string; facts: RequestFacts6 | null }

export interface Dhcp6Handler {
  /** `source`: the datagram's source address (a direct client's link-local one names its MAC). */
  handle(req: Dhcp6Decoded, source?: string | null): Promise<Dhcp6Result>
}

/** Attempts at a free address per IA while other servers' claims keep winning (as DHCPv4's CLAIM_ATTEMPTS). */
const CLAIM_ATTEMPTS = 8

type Taken = { ok: true; lease: Lease6 } | { ok: false; reason: string }

/** The store could not be read or written: the message is not answered (the client retransmits). */
class StorageError extends Error {}

const CLIENT_MESSAGES = new Set<number>([
  MessageType6.Solicit, MessageType6.Request, MessageType6.Confirm, MessageType6.Renew, MessageType6.Rebind,
  MessageType6.Release, MessageType6.Decline, MessageType6.InformationRequest,
])

export function createDhcp6Handler(deps: Dhcp6HandlerDeps): Dhcp6Handler {
  const c = deps.config
  const store = deps.store
  const now = deps.now ?? Date.now
  const serverId = c.serverDuid
  const validMs = c.validSeconds * 1000
  const t1 = Math.floor(c.preferredSeconds * 0.5)
  const t2 = Math.floor(c.preferredSeconds * 0.8)

  const ignore = (reason: string, facts: RequestFacts6 | null = null): Dhcp6Result => ({ kind: 'ignore', reason, facts })

  const iaFailed = (iaid: number, code: number, message: string): Options6[number] => ({
    code: Option6.IaNa,
    data: encodeIaNa({ iaid, t1: 0, t2: 0, options: [encodeStatus(code, message)] }),
  })
  const iaWith = (iaid: number, addrs: { address: string; preferred: number; valid: number }[]): Options6[number] => ({
    code: Option6.IaNa,
    data: encodeIaNa({
      iaid,
      // Addresses that are withdrawn (lifetimes 0) alone: no renewal times.
      t1: addrs.some((a) => a.valid > 0) ? t1 : 0,
      t2: addrs.some((a) => a.valid > 0) ? t2 : 0,
      options: addrs.map((a) => ({ code: Option6.IaAddr, data: encodeIaAddr({ ...a, options: [] }) })),
    }),
  })
  const granted = (address: bigint) => ({ address: bigintToIpv6(address), preferred: c.preferredSeconds, valid: c.validSeconds })
  const withdrawn = (address: string) => ({ address, preferred: 0, valid: 0 })

  const iasOf = (m: Dhcp6Message): IaNa[] | null => {
    const out: IaNa[] = []
    for (const raw of allOptions(m.options, Option6.IaNa)) {
      const ia = decodeIaNa(raw)
      if (!ia) return null
      out.push(ia)
    }
    return out
  }
  const addrsOf = (ia: IaNa): bigint[] | null => {
    const out: bigint[] = []
    for (const raw of allOptions(ia.options, Option6.IaAddr)) {
      const a = decodeIaAddr(raw)
      if (!a) return null
      out.push(ipv6ToBigint(a.address)!)
    }
    return out
  }

  /** IA_TA and IA_PD are not served: said so per IA (RFC 8415 §18.3.9). */
  const unservedIas = (m: Dhcp6Message): Options6 => {
    const out: Options6 = []
    for (const raw of allOptions(m.options, Option6.IaTa)) {
      if (raw.length >= 4) out.push({ code: Option6.IaTa, data: Buffer.concat([raw.subarray(0, 4), encodeOptionsOne(encodeStatus(StatusCode6.NoAddrsAvail, 'temporary addresses are not served'))]) })
    }
    for (const raw of allOptions(m.options, Option6.IaPd)) {
      if (raw.length >= 12) out.push({ code: Option6.IaPd, data: encodeIaNa({ iaid: raw.readUInt32BE(0), t1: 0, t2: 0, options: [encodeStatus(6, 'prefix delegation is not served')] }) })
    }
    return out
  }

  const adviseTimeoutMs = deps.adviseTimeoutMs ?? 500
  /** The lifecycle's advice for a network-boot client, or none when it is slow or fails (never holds the reply back long). */
  const adviceFor = async (f: RequestFacts6, planned: BootChoice): Promise<DhcpBootAdvice> => {
    if (!deps.advise || !f.mac || !f.isNetboot) return {}
    const advise = deps.advise
    return adviceWithin(() => advise({ mac: f.mac!, duid: f.duid, message: f.message, facts: f, planned }), adviseTimeoutMs, (kind, err) => {
      if (kind === 'timeout') deps.log.warn({ mac: f.mac, timeoutMs: adviseTimeoutMs }, 'dhcp6 boot advice timed out; replying without it')
      else deps.log.warn({ err, mac: f.mac }, 'dhcp6 boot advice failed; replying without it')
    })
  }

  /** Netboot and DNS options for ADVERTISE and REPLY (not for RELEASE/DECLINE/CONFIRM answers). */
  const configOptions = async (f: RequestFacts6, receivedAt: number): Promise<{ options: Options6; boot: BootChoice | null }> => {
    const options: Options6 = []
    if (c.dnsServers.length > 0 && (f.requested.includes(Option6.DnsServers) || f.isNetboot)) {
      options.push({ code: Option6.DnsServers, data: encodeAddressList(c.dnsServers) })
    }
    if (!f.isNetboot && !f.requested.includes(Option6.BootfileUrl)) return { options, boot: null }
    const facts = bootFacts(f, receivedAt)
    const planned = chooseBoot(facts, c.boot)
    // As DHCPv4 (dhcp/handlers/full.ts bootFor): maintenance means no boot options, an override replaces the loader.
    const advice = await adviceFor(f, planned)
    const override = overrideOf(advice)
    const choice: BootChoice = advice.ignore ? { kind: 'none', reason: advice.reason ?? 'lifecycle: ignore' } : override ? chooseBoot(facts, c.boot, override) : planned
    const url = bootUrl(choice, c.serverAddress)
    if (url) options.push({ code: Option6.BootfileUrl, data: Buffer.from(url, 'utf8') })
    // UEFI HTTP boot takes an offer as an HTTP one only when it carries vendor class "HTTPClient" (enterprise 343).
    if (choice.kind === 'http') {
      options.push({ code: Option6.VendorClass, data: encodeVendorClass6({ enterprise: PXE_ENTERPRISE, classes: ['HTTPClient'] }) })
    }
    return { options, boot: choice }
  }

  const shared = deps.shared
  /** Shared only: the store's view of an address, unless this server holds it for this very IA already. */
  const learnUnlessOwn = async (ref: ClientRef, address: bigint): Promise<void> => {
    const l = store.at(address)
    if (shared && !(l && l.duid === ref.duid && l.iaid === ref.iaid)) await shared.learn({ address })
  }
  const claim = async (l: Lease6): Promise<boolean> => {
    try {
      return await shared!.claim(l)
    } catch (err) {
      throw new StorageError('claim failed', { cause: err })
    }
  }
  const learn = async (what: { address?: bigint; client?: ClientRef }): Promise<void> => {
    try {
      await shared!.learn(what)
    } catch (err) {
      throw new StorageError('lookup failed', { cause: err })
    }
  }
  /**
   * An address for the IA (store.take); shared, claimed in the table first: a refused claim takes the table's word
   * for that address and tries another, so this server advertises and binds only what it claimed.
   */
  const take = async (ref: ClientRef, state: 'offered' | 'bound', forMs: number, hint: bigint | null): Promise<Taken> => {
    if (!shared) return store.take(ref, state, forMs, hint)
    // The table's rows are per MAC (shared.ts): a client no MAC is known for cannot be claimed for.
    if (!ref.mac) return { ok: false, reason: 'no-mac' }
    // A client this server has not seen may hold a binding another instance granted: that one comes back.
    if (!store.find(ref.duid, ref.iaid)) await learn({ client: ref })
    // The address the client asks for may have been released through another instance since this one last heard.
    if (hint !== null && store.inRange(hint) && !store.find(ref.duid, ref.iaid)) await learnUnlessOwn(ref, hint)
    for (let attempt = 1; ; attempt++) {
      const r = store.take(ref, state, forMs, hint)
      if (!r.ok) return r
      if (await claim(r.lease)) return r
      await learn({ address: r.lease.address })
      if (attempt >= CLAIM_ATTEMPTS) return { ok: false, reason: 'claim-lost' }
      hint = null
    }
  }

  const base = (req: Dhcp6Message, type: number, clientId: Buffer | undefined): Dhcp6Message => ({
    type,
    transactionId: req.transactionId,
    options: [
      ...(clientId ? [{ code: Option6.ClientId, data: clientId }] : []),
      { code: Option6.ServerId, data: serverId },
    ],
  })

  return {
    async handle(req, source = null) {
      try {
        return await handle(req, source)
      } catch (err) {
        if (!(err instanceof StorageError)) throw err
        deps.log.error({ err: err.cause }, 'dhcp6 binding store failed: no reply (the client retransmits)')
        return ignore('storage-error')
      }
    },
  }

  async function handle(req: Dhcp6Decoded, source: string | null): Promise<Dhcp6Result> {
      const m = req.message
      if (!CLIENT_MESSAGES.has(m.type)) return ignore('not-client-message')
      if (req.relays.some((r) => r.type !== MessageType6.RelayForw)) return ignore('not-client-message')
      const f = requestFacts6(req, source)
      const t = now()
      // A relayed message is served only when the relay's link is the configured prefix's.
      if (f.linkAddress !== null) {
        const link = ipv6ToBigint(f.linkAddress)
        if (link === null || link === 0n || !store.onLink(link)) return ignore('unserved-link', f)
      }
      const clientIdRaw = firstOption(m.options, Option6.ClientId)
      const serverIdRaw = firstOption(m.options, Option6.ServerId)
      const forUs = serverIdRaw !== undefined && serverIdRaw.equals(serverId)
      if (clientIdRaw !== undefined && f.duid === null) return ignore('bad-client-id', f)
      const needsClient = m.type !== MessageType6.InformationRequest
      if (needsClient && f.duid === null) return ignore('no-client-id', f)
      // RFC 8415 §16: SOLICIT, CONFIRM and REBIND carry no Server ID; REQUEST, RENEW, RELEASE, DECLINE carry ours.
      switch (m.type) {
        case MessageType6.Solicit:
        case MessageType6.Confirm:
        case MessageType6.Rebind:
          if (serverIdRaw !== undefined) return ignore('unexpected-server-id', f)
          break
        case MessageType6.InformationRequest:
          if (serverIdRaw !== undefined && !forUs) return ignore('other-server', f)
          break
        default:
          if (serverIdRaw === undefined) return ignore('no-server-id', f)
          if (!forUs) return ignore('other-server', f)
      }
      const ias = iasOf(m)
      if (!ias) return ignore('malformed-ia', f)
      const client = { duid: f.duid ?? '', mac: f.mac }
      const reply = (type: number, options: Options6, boot: BootChoice | null = null): Dhcp6Result => {
        const msg = base(m, type, clientIdRaw)
        msg.options.push(...options)
        return { kind: 'reply', reply: { message: msg, relays: replyEnvelopes(req.relays) }, type: messageName6(type), facts: f, boot }
      }

      switch (m.type) {
        case MessageType6.Solicit: {
          const rapid = f.rapidCommit && c.rapidCommit
          const out: Options6 = []
          let any = false
          for (const ia of ias) {
            const hint = addrsOf(ia)?.[0] ?? null
            const r = await take({ ...client, iaid: ia.iaid }, rapid ? 'bound' : 'offered', rapid ? validMs : c.offerSeconds * 1000, hint)
            if (r.ok) {
              any = true
              out.push(iaWith(ia.iaid, [granted(r.lease.address)]))
            } else {
              deps.log.debug({ duid: f.duid, iaid: ia.iaid, reason: r.reason }, 'dhcp6 no address for IA_NA')
              out.push(iaFailed(ia.iaid, StatusCode6.NoAddrsAvail, r.reason))
            }
          }
          // No address at all: the Advertise says so at the top level too (RFC 8415 §18.3.9).
          if (!any) out.push(encodeStatus(StatusCode6.NoAddrsAvail, ias.length === 0 ? 'no IA_NA requested' : 'no addresses available'))
          out.push(...unservedIas(m))
          const cfg = await configOptions(f, t)
          out.push(...cfg.options)
          if (rapid && any) return reply(MessageType6.Reply, [{ code: Option6.RapidCommit, data: Buffer.alloc(0) }, ...out], cfg.boot)
          if (c.preference > 0) out.push({ code: Option6.Preference, data: u8(c.preference) })
          return reply(MessageType6.Advertise, out, cfg.boot)
        }
        case MessageType6.Request: {
          const out: Options6 = []
          for (const ia of ias) {
            const hint = addrsOf(ia)?.[0] ?? null
            const r = await take({ ...client, iaid: ia.iaid }, 'bound', validMs, hint)
            out.push(r.ok ? iaWith(ia.iaid, [granted(r.lease.address)]) : iaFailed(ia.iaid, StatusCode6.NoAddrsAvail, r.reason))
          }
          out.push(...unservedIas(m))
          const cfg = await configOptions(f, t)
          return reply(MessageType6.Reply, [...out, ...cfg.options], cfg.boot)
        }
        case MessageType6.Renew:
        case MessageType6.Rebind: {
          const out: Options6 = []
          for (const ia of ias) {
            const addrs = addrsOf(ia)
            if (!addrs) return ignore('malformed-ia', f)
            const ref = { ...client, iaid: ia.iaid }
            if (addrs.length === 0) {
              const r = await take(ref, 'bound', validMs, null)
              out.push(r.ok ? iaWith(ia.iaid, [granted(r.lease.address)]) : iaFailed(ia.iaid, StatusCode6.NoAddrsAvail, r.reason))
              continue
            }
            const entries: ReturnType<typeof granted>[] = []
            for (const a of addrs.slice(0, 8)) {
              // Shared: the binding may be another instance's grant (renewed here), or gone to another client.
              if (shared) await learnUnlessOwn(ref, a)
              const r = store.extend(ref, a, validMs)
              let ok = typeof r !== 'string'
              if (ok && shared && !(await claim(r as Lease6))) {
                await learn({ address: a })
                ok = false
              }
              // Not ours to give (another client's, off the range): lifetimes 0 tell the client to stop using it.
              entries.push(ok ? granted(a) : withdrawn(bigintToIpv6(a)))
            }
            const own = store.find(client.duid, ia.iaid)
            if (own && !entries.some((e) => e.address === bigintToIpv6(own.address))) entries.push(granted(own.address))
            out.push(iaWith(ia.iaid, entries))
          }
          const cfg = await configOptions(f, t)
          return reply(MessageType6.Reply, [...out, ...cfg.options], cfg.boot)
        }
        case MessageType6.Release:
        case MessageType6.Decline: {
          const out: Options6 = []
          for (const ia of ias) {
            const addrs = addrsOf(ia) ?? []
            let all = addrs.length > 0
            for (const a of addrs.slice(0, 8)) {
              const ref = { ...client, iaid: ia.iaid }
              if (shared) await learnUnlessOwn(ref, a)
              const held = store.at(a)
              const ok = m.type === MessageType6.Release ? store.release(ref, a) : store.decline(ref, a, c.declineSeconds * 1000)
              // Shared: the table says so too (a declined address stays out of every server's pool).
              if (ok && shared && held) {
                try {
                  if (m.type === MessageType6.Release) await shared.released(held)
                  else await shared.claim({ ...held, state: 'declined', expiresAt: now() + c.declineSeconds * 1000 })
                } catch (err) {
                  throw new StorageError('release failed', { cause: err })
                }
              }
              all &&= ok
            }
            if (!all) out.push(iaFailed(ia.iaid, StatusCode6.NoBinding, 'no binding for this IA'))
          }
          if (m.type === MessageType6.Decline) deps.log.warn({ duid: f.duid, mac: f.mac }, 'dhcp6 client declined an address (in use on the link)')
          return reply(MessageType6.Reply, [encodeStatus(StatusCode6.Success, m.type === MessageType6.Release ? 'released' : 'declined'), ...out])
        }
        case MessageType6.Confirm: {
          const addrs: bigint[] = []
          for (const ia of ias) {
            const a = addrsOf(ia)
            if (!a) return ignore('malformed-ia', f)
            addrs.push(...a)
          }
          // Nothing to confirm: no reply (RFC 8415 §18.3.3).
          if (addrs.length === 0) return ignore('confirm-without-addresses', f)
          const onLink = addrs.every((a) => store.onLink(a))
          return reply(MessageType6.Reply, [onLink ? encodeStatus(StatusCode6.Success, 'on link') : encodeStatus(StatusCode6.NotOnLink, 'not on this link')])
        }
        case MessageType6.InformationRequest: {
          const cfg = await configOptions(f, t)
          return reply(MessageType6.Reply, cfg.options, cfg.boot)
        }
        default:
          return ignore('not-client-message', f)
      }
  }
}

function encodeOptionsOne(o: Options6[number]): Buffer {
  const h = Buffer.alloc(4)
  h.writeUInt16BE(o.code, 0)
  h.writeUInt16BE(o.data.length, 2)
  return Buffer.concat([h, o.data])
}

/** The option 59 value for a boot choice (RFC 5970 §3.1): tftp://[server]/file, an http URL, or the script URL. */
export function bootUrl(choice: BootChoice, serverAddress: string): string | null {
  switch (choice.kind) {
    case 'tftp': {
      // A machine's next-server override counts when it is an IPv6 address (a DHCPv4 one is no use here).
      const host = choice.nextServer?.includes(':') ? choice.nextServer : serverAddress
      return `tftp://[${host}]/${choice.file.replace(/^\/+/, '')}`
    }
    case 'http':
      return choice.url
    case 'ipxe-script':
      return choice.url
    default:
      return null
  }
}
