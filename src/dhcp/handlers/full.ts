// Full DHCP (RFC 2131 §4.3): pools per subnet, directly attached or behind relays (chosen by giaddr), reservations
// from the inventory, leases written through to the inventory's LeaseRepository, NAKs for requests that cannot be
// honoured, silence for requests meant for another server. PXE boot options come from boot-file.ts.
import type { Logger } from '../../log.js'
import { createLeaseLookups } from '../lease-lookups.js'
import type { LeaseRepository, ReservationRepository } from '../../inventory/repositories.js'
import type { Reservation } from '../../inventory/types.js'
import { chooseBoot, type BootChoice, type BootFileConfig } from '../boot-file.js'
import { bootModifiers, choiceTarget, consultBootPort, notifyBootPort, overrideOf, type AdviceDeps } from '../boot-options.js'
import { emptyPacket, type DhcpPacket } from '../codec.js'
import { requestFacts, type RequestFacts, type RequestMeta } from '../facts.js'
import { ignore, silent, type DhcpHandler, type DhcpReply, type DhcpResult } from '../handler.js'
import {
  replyTo, withBroadcastFlag, withCiaddr, withEchoes, withHostName, withLeaseTime, withMessage, withMessageType,
  withNetwork, withOption, withServerId, withYiaddr, type Modifier,
} from '../modifiers.js'
import { MessageType, OptionCode, intToIp, ipBytes, ipToInt, type DhcpOptions, type MessageName } from '../options.js'
import { LeasePool, isActive, sameClient, toLease, type ClientKey, type PoolEntry } from '../pool.js'
import { indexReservations, loadReservations, type ReservationIndex } from '../reservations.js'
import { findSubnet, subnetContains, type Subnet } from '../subnet.js'
import type { DhcpBootAdvice } from '../ports.js'
import { createLeaseWriter, type BatchLeaseRepository, type LeaseTransaction } from '../lease-writer.js'
import type { UnservedRelayReporter } from '../unserved-relays.js'

export interface FullHandlerSettings {
  offerSeconds: number
  declineSeconds: number
  authoritative: boolean
  reservationRefreshSeconds: number
  ipxeNoPxedhcp: boolean
}

export interface FullHandlerDeps {
  /** Option 54: this server's address. */
  serverId: string
  subnets: Subnet[]
  settings: FullHandlerSettings
  /** Lease storage; `putMany`, when the store has it, takes a whole batch of writes in one call. */
  leases: BatchLeaseRepository
  /** Lets concurrent lease writes share one commit (group commit); without it each write commits alone. */
  leaseTransaction?: LeaseTransaction
  reservations: ReservationRepository
  boot: BootFileConfig
  advice: AdviceDeps
  log: Logger
  now?: () => number
  /** Ask the boot port about every client, not only network-boot ones (PXE, HTTP boot, iPXE). */
  inspectAllClients?: boolean
  /** Told of a relayed DISCOVER whose giaddr no subnet covers (it is dropped): warns, bounded. */
  unservedRelay?: UnservedRelayReporter
  /**
   * Other DHCP servers share this lease store (several rackboot instances on one PostgreSQL). Every offer and binding
   * is then claimed in the store before it is sent (LeaseRepository.claimMany): the database decides who holds an
   * address, this server offers only what it claimed, learns the leases the others granted (to renew them) and
   * says nothing when the store cannot be reached.
   */
  shared?: { syncSeconds?: number; startAt?: number }
}

export interface FullHandler extends DhcpHandler {
  readonly mode: 'full'
  /** Reloads reservations from the inventory now (also done every reservationRefreshSeconds). */
  reloadReservations(): Promise<void>
  poolUsage(): { subnet: string; used: number; total: number }[]
  /** The pool of a subnet (tests and diagnostics). */
  pool(cidr: string): LeasePool | undefined
}

const ZERO = '0.0.0.0'

export function createFullHandler(deps: FullHandlerDeps): FullHandler {
  const now = deps.now ?? Date.now
  const { serverId, settings } = deps
  const serverInt = ipToInt(serverId)
  const directSubnet = findSubnet(deps.subnets, serverInt) ?? null
  const pools = new Map<string, LeasePool>()
  for (const s of deps.subnets) {
    // Never hand out this server's address or a router's.
    pools.set(s.cidr, new LeasePool(s, [serverId, ...s.routers], deps.shared ? (deps.shared.startAt ?? Math.floor(Math.random() * 2 ** 31)) : 0))
  }
  const shared = deps.shared !== undefined
  let reservations: ReservationIndex = indexReservations([])
  const writer = createLeaseWriter({ leases: deps.leases, claim: shared, ...(deps.leaseTransaction ? { transaction: deps.leaseTransaction } : {}) })
  let timers: NodeJS.Timeout[] = []

  const applyReservations = (index: ReservationIndex): void => {
    reservations = index
    for (const pool of pools.values()) {
      const mine = new Map<number, ClientKey>()
      for (const [ip, owner] of index.byIp) if (subnetContains(pool.subnet, ip)) mine.set(ip, owner)
      pool.setReservations(mine)
    }
  }

  const reloadReservations = async (): Promise<void> => {
    applyReservations(await loadReservations(deps.reservations))
  }

  const clientOf = (f: RequestFacts): ClientKey => ({ mac: f.mac, clientId: f.clientId })

  /** The subnet a request belongs to: link selection, then giaddr, then ciaddr (unicast renewals), then ours. */
  const subnetFor = (f: RequestFacts): Subnet | undefined => {
    if (f.linkSelection) return findSubnet(deps.subnets, f.linkSelection)
    if (f.giaddr) return findSubnet(deps.subnets, f.giaddr)
    if (f.ciaddr && f.message !== 'discover') return findSubnet(deps.subnets, f.ciaddr) ?? directSubnet ?? undefined
    return directSubnet ?? undefined
  }

  const isOurs = (f: RequestFacts, id: string): boolean => id === serverId || id === f.relayAgent?.serverIdOverride

  const reservationIn = (c: ClientKey, subnet: Subnet): { r: Reservation; ip: number } | undefined => {
    const r = reservations.forClient(c)
    if (!r) return undefined
    const ip = ipToInt(r.ip)
    return subnetContains(subnet, ip) ? { r, ip } : undefined
  }

  const shouldInspect = (f: RequestFacts): boolean => deps.inspectAllClients === true || f.isNetboot

  /**
   * Boot choice and the lifecycle's advice for a reply that is going to be sent. Synchronous for a client the
   * lifecycle is not asked about (most DHCP clients): no promise and no turn of the microtask queue per reply.
   */
  const bootFor = (
    f: RequestFacts,
    event: { reply: 'offer' | 'ack'; ip?: string; subnet?: string },
  ): { choice: BootChoice; advice: DhcpBootAdvice } | Promise<{ choice: BootChoice; advice: DhcpBootAdvice }> => {
    const planned = chooseBoot(f, deps.boot)
    if (!shouldInspect(f) || f.message === 'unknown') return { choice: planned, advice: {} }
    return adviseBoot(f, f.message, event, planned)
  }
  const adviseBoot = async (
    f: RequestFacts,
    message: MessageName,
    event: { reply: 'offer' | 'ack'; ip?: string; subnet?: string },
    planned: BootChoice,
  ): Promise<{ choice: BootChoice; advice: DhcpBootAdvice }> => {
    const bootFile = choiceTarget(planned)
    const advice = await consultBootPort(deps.advice, f, {
      message,
      mode: 'full',
      reply: event.reply,
      ...(event.ip ? { ip: event.ip } : {}),
      ...(event.subnet ? { subnet: event.subnet } : {}),
      ...(bootFile ? { bootFile } : {}),
    })
    if (advice.ignore) return { choice: { kind: 'none', reason: advice.reason ?? 'lifecycle: ignore' }, advice }
    const override = overrideOf(advice)
    const choice = override ? chooseBoot(f, deps.boot, override) : planned
    deps.advice.missingLoader?.(f, choice)
    return { choice, advice }
  }

  // Per-subnet options are the same in every reply: encode them once.
  const networkOptions = new Map<string, DhcpOptions>()
  const leaseOptions = new Map<string, DhcpOptions>()
  for (const sub of deps.subnets) {
    const probe = replyTo(emptyPacket(), withNetwork({
      subnetMask: sub.maskIp,
      routers: sub.routers,
      dnsServers: sub.dnsServers,
      ...(sub.domainName ? { domainName: sub.domainName } : {}),
      broadcastAddress: sub.broadcastIp,
    }))
    networkOptions.set(sub.cidr, probe.options)
    leaseOptions.set(sub.cidr, replyTo(emptyPacket(), withLeaseTime(sub.leaseSeconds)).options)
  }
  const withOptions = (o: DhcpOptions): Modifier => (p) => {
    for (const [k, v] of o) p.options.set(k, v)
  }
  const serverIdBytes = ipBytes(serverId)
  const withOurId = (f: RequestFacts): Modifier =>
    f.relayAgent?.serverIdOverride ? withServerId(f.relayAgent.serverIdOverride) : withOption(OptionCode.ServerIdentifier, serverIdBytes)

  const leaseReply = (
    req: DhcpPacket,
    f: RequestFacts,
    type: typeof MessageType.Offer | typeof MessageType.Ack,
    subnet: Subnet,
    ip: number,
    choice: BootChoice,
    hostname: string | null,
  ): DhcpReply => {
    const mods: Modifier[] = [
      withMessageType(type),
      withOurId(f),
      withYiaddr(intToIp(ip)),
      withOptions(leaseOptions.get(subnet.cidr)!),
      withOptions(networkOptions.get(subnet.cidr)!),
    ]
    if (type === MessageType.Ack && req.ciaddr !== ZERO) mods.push(withCiaddr(req.ciaddr))
    if (hostname) mods.push(withHostName(hostname))
    mods.push(...bootModifiers(f, choice, { mode: 'full', ipxeNoPxedhcp: settings.ipxeNoPxedhcp }), withEchoes(req))
    const reply: DhcpReply = { kind: 'reply', type: type === MessageType.Offer ? 'offer' : 'ack', packet: replyTo(req, ...mods) }
    if (f.maxMessageSize) reply.maxSize = f.maxMessageSize - 28
    return reply
  }

  const nak = (req: DhcpPacket, f: RequestFacts, text: string, subnet?: Subnet): DhcpReply => {
    const mods: Modifier[] = [withMessageType(MessageType.Nak), withOurId(f), withMessage(text)]
    // A relay cannot unicast to a client without an address: ask it to broadcast (RFC 2131 §4.3.2).
    if (f.giaddr) mods.push(withBroadcastFlag())
    mods.push(withEchoes(req))
    if (shouldInspect(f) && f.message !== 'unknown') {
      notifyBootPort(deps.advice, f, {
        message: f.message,
        mode: 'full',
        reply: 'nak',
        ...(f.requestedIp || f.ciaddr ? { ip: (f.requestedIp ?? f.ciaddr)! } : {}),
        ...(subnet ? { subnet: subnet.cidr } : {}),
      })
    }
    return { kind: 'reply', type: 'nak', packet: replyTo(req, ...mods) }
  }

  /**
   * Stores the entries; null when the store failed, else whether each was stored (always, unless shared: a claim
   * another server's lease refused).
   */
  const persist = async (entries: PoolEntry[], subnet: Subnet): Promise<boolean[] | null> => {
    try {
      // One write, nearly always: no Promise.all and no array of promises for it.
      if (entries.length === 1) return [await writer.write(toLease(entries[0]!, subnet))]
      return await Promise.all(entries.map((e) => writer.write(toLease(e, subnet))))
    } catch (err) {
      deps.advice.metrics.storageFailure()
      deps.log.error({ err, subnet: subnet.cidr }, 'dhcp lease write failed')
      return null
    }
  }

  /**
   * Shared store: what it holds for an address and/or a client replaces this server's view of them (another
   * instance may have granted, renewed or released them). False when the store cannot be read.
   */
  // Batched: a burst of unknown clients costs about one query, not one each (lease-lookups.ts).
  const lookups = createLeaseLookups(deps.leases)
  const learn = async (pool: LeasePool, what: { ip?: number; client?: ClientKey }): Promise<boolean> => {
    try {
      const found = await Promise.all([
        what.ip !== undefined ? lookups.byIp(intToIp(what.ip)) : null,
        what.client ? lookups.byClient(what.client.mac, what.client.clientId) : null,
      ])
      pool.load(found.filter((l): l is NonNullable<typeof l> => l !== null && l.subnet === pool.subnet.cidr), true)
      return true
    } catch (err) {
      deps.advice.metrics.storageFailure()
      deps.log.error({ err, subnet: pool.subnet.cidr }, 'dhcp lease read failed')
      return false
    }
  }

  /** Attempts at a free address when other servers' claims keep winning, per DISCOVER. */
  const CLAIM_ATTEMPTS = 8

  const discover = async (req: DhcpPacket, f: RequestFacts): Promise<DhcpResult> => {
    const subnet = subnetFor(f)
    if (!subnet) {
      deps.unservedRelay?.(f)
      return ignore('no-subnet', f.giaddr ? `no subnet for giaddr ${f.giaddr}` : 'no directly attached subnet')
    }
    const pool = pools.get(subnet.cidr)!
    const client = clientOf(f)
    const t = now()
    const reserved = reservationIn(client, subnet)
    // A client this server has not seen may hold a lease another instance granted: offer it that one.
    if (shared && !pool.clientEntry(client) && !(await learn(pool, { client }))) return ignore('storage-error')
    const existing = pool.clientEntry(client)
    let ip: number | undefined
    if (reserved && pool.available(reserved.ip, client, t)) ip = reserved.ip
    else if (!reserved) {
      // The client's previous address, then the one it asks for, then a free one.
      if (existing && pool.available(existing.ip, client, t)) ip = existing.ip
      else if (f.requestedIp) {
        const want = ipToInt(f.requestedIp)
        if (!Number.isNaN(want) && pool.available(want, client, t)) ip = want
      }
    }
    for (let attempt = 1; ; attempt++) {
      ip ??= pool.allocate(t)
      if (ip === undefined) {
        deps.log.warn({ subnet: subnet.cidr }, 'dhcp pool exhausted')
        return ignore('pool-exhausted', subnet.cidr)
      }
      // Hold it for this client, unless the client is already bound to it. Alone, in memory only (an offer is not a
      // lease); shared, claimed in the store first, so no other server offers or binds it meanwhile.
      const current = pool.entry(ip)
      if (current && current.state === 'bound' && isActive(current, t) && sameClient(current, client)) break
      const offered: PoolEntry = {
        ip, mac: f.mac, clientId: f.clientId, state: 'offered', expiresAt: t + settings.offerSeconds * 1000,
        hostname: f.hostname, updatedAt: t,
      }
      // The client moves (e.g. to a new reservation): remember its old binding so the ACK can release it.
      if (existing && existing.ip !== ip && existing.state === 'bound' && isActive(existing, t)) offered.replaces = existing.ip
      else if (existing?.replaces !== undefined && existing.replaces !== ip) offered.replaces = existing.replaces
      pool.put(offered)
      if (!shared) break
      const stored = await persist([offered], subnet)
      if (!stored) return ignore('storage-error')
      if (stored[0]) break
      // Another server holds it: take the store's word for it and try another address; or the client is bound to
      // it already (another server's ACK): offer it that binding.
      if (!(await learn(pool, { ip }))) return ignore('storage-error')
      const held = pool.entry(ip)
      if (held && held.state === 'bound' && isActive(held, t) && sameClient(held, client)) break
      if (attempt >= CLAIM_ATTEMPTS || reserved) return ignore('claim-lost', `${intToIp(ip)} is held through another server`)
      ip = undefined
    }
    const boot = bootFor(f, { reply: 'offer', ip: intToIp(ip), subnet: subnet.cidr })
    const { choice } = boot instanceof Promise ? await boot : boot
    return leaseReply(req, f, MessageType.Offer, subnet, ip, choice, reserved?.r.hostname ?? null)
  }

  /** Binds `ip` to the requesting client, or says why not (RFC 2131 §4.3.2). */
  const bind = async (req: DhcpPacket, f: RequestFacts, subnet: Subnet, ip: number, initReboot: boolean): Promise<DhcpResult> => {
    const pool = pools.get(subnet.cidr)!
    const client = clientOf(f)
    const t = now()
    const reserved = reservationIn(client, subnet)
    if (shared) {
      // This server's view may be stale: another instance may have granted the address (a renewal of its lease) or
      // released it. Ask the store unless this server itself holds it for this client.
      const local = pool.entry(ip)
      if (!(local && sameClient(local, client) && pool.clientEntry(client) === local) && !(await learn(pool, { ip, client }))) return ignore('storage-error')
    }
    // A client with a reservation is moved onto it, unless someone else still holds the reserved address.
    if (reserved && reserved.ip !== ip && pool.available(reserved.ip, client, t)) {
      return nak(req, f, 'address reserved elsewhere for this client', subnet)
    }
    const holder = pool.holder(ip, t)
    if (holder && !sameClient(holder, client)) return nak(req, f, 'address in use', subnet)
    if (!pool.available(ip, client, t)) return nak(req, f, 'address not available', subnet)
    const prev = pool.clientEntry(client)
    if (initReboot && !deps.settings.authoritative && !holder && prev?.ip !== ip) {
      return ignore('unknown-client', 'non-authoritative: no record of this client')
    }
    const hostname = reserved?.r.hostname ?? f.hostname ?? null
    const entry: PoolEntry = {
      ip, mac: f.mac, clientId: f.clientId, state: 'bound', expiresAt: t + subnet.leaseSeconds * 1000, hostname, updatedAt: t,
    }
    const writes: PoolEntry[] = []
    // The client moved: its old binding goes back to the pool, and an offer it did not take is forgotten.
    const olds: PoolEntry[] = []
    if (prev && prev.ip !== ip) olds.push(prev)
    if (prev?.replaces !== undefined && prev.replaces !== ip) {
      const e = pool.entry(prev.replaces)
      if (e && sameClient(e, client)) olds.push(e)
    }
    for (const old of olds) {
      if (old.state === 'bound' && isActive(old, t)) {
        const { replaces: _, ...rest } = old
        const released: PoolEntry = { ...rest, state: 'released', expiresAt: t, updatedAt: t }
        pool.put(released)
        writes.push(released)
      } else if (old.state === 'offered') pool.drop(old)
    }
    pool.put(entry)
    writes.push(entry)
    const stored = await persist(writes, subnet)
    if (!stored) return ignore('storage-error')
    if (!stored[stored.length - 1]) {
      // Shared store: another server's client got the address first.
      await learn(pool, { ip })
      return nak(req, f, 'address in use', subnet)
    }
    const boot = bootFor(f, { reply: 'ack', ip: intToIp(ip), subnet: subnet.cidr })
    const { choice } = boot instanceof Promise ? await boot : boot
    return leaseReply(req, f, MessageType.Ack, subnet, ip, choice, reserved?.r.hostname ?? null)
  }

  const request = async (req: DhcpPacket, f: RequestFacts): Promise<DhcpResult> => {
    const subnet = subnetFor(f)
    if (f.serverId) {
      // SELECTING: the client names the server it chose.
      if (!isOurs(f, f.serverId)) {
        if (subnet) {
          const pool = pools.get(subnet.cidr)!
          const e = pool.clientEntry(clientOf(f))
          if (e && e.state === 'offered') pool.drop(e)
        }
        return ignore('other-server', `client chose ${f.serverId}`)
      }
      if (!subnet) return ignore('no-subnet')
      const want = f.requestedIp ?? f.ciaddr
      if (!want) return nak(req, f, 'no requested address', subnet)
      const ip = ipToInt(want)
      if (!subnetContains(subnet, ip)) return nak(req, f, 'wrong network', subnet)
      return bind(req, f, subnet, ip, false)
    }
    if (!subnet) return ignore('no-subnet')
    if (f.requestedIp && !f.ciaddr) {
      // INIT-REBOOT: the client checks the address it remembers.
      const ip = ipToInt(f.requestedIp)
      if (!subnetContains(subnet, ip)) {
        return settings.authoritative ? nak(req, f, 'wrong network', subnet) : ignore('unknown-client', 'wrong network')
      }
      return bind(req, f, subnet, ip, true)
    }
    if (f.ciaddr) {
      // RENEWING (unicast) or REBINDING (broadcast).
      const ip = ipToInt(f.ciaddr)
      if (!subnetContains(subnet, ip)) return nak(req, f, 'wrong network', subnet)
      return bind(req, f, subnet, ip, false)
    }
    return ignore('bad-request', 'REQUEST without server id, requested address or ciaddr')
  }

  const decline = async (f: RequestFacts): Promise<DhcpResult> => {
    if (f.serverId && !isOurs(f, f.serverId)) return ignore('other-server')
    const subnet = subnetFor(f)
    if (!subnet || !f.requestedIp) return ignore('bad-decline')
    const pool = pools.get(subnet.cidr)!
    const ip = ipToInt(f.requestedIp)
    if (shared && !(await learn(pool, { ip }))) return ignore('storage-error')
    const e = pool.entry(ip)
    if (!e || !sameClient(e, clientOf(f))) return ignore('bad-decline', 'address not leased to this client')
    const t = now()
    const declined: PoolEntry = {
      ...e,
      state: settings.declineSeconds > 0 ? 'declined' : 'released',
      expiresAt: t + settings.declineSeconds * 1000,
      updatedAt: t,
    }
    pool.put(declined)
    deps.log.warn({ ip: f.requestedIp, mac: f.mac }, 'dhcp address declined by client (in use on the network?)')
    return (await persist([declined], subnet))?.[0] ? silent('declined') : ignore('storage-error')
  }

  const release = async (f: RequestFacts): Promise<DhcpResult> => {
    if (f.serverId && !isOurs(f, f.serverId)) return ignore('other-server')
    const subnet = subnetFor(f)
    if (!subnet || !f.ciaddr) return ignore('bad-release')
    const pool = pools.get(subnet.cidr)!
    if (shared && !(await learn(pool, { ip: ipToInt(f.ciaddr) }))) return ignore('storage-error')
    const e = pool.entry(ipToInt(f.ciaddr))
    if (!e || !sameClient(e, clientOf(f)) || e.state !== 'bound') return ignore('bad-release', 'address not bound to this client')
    const t = now()
    const released: PoolEntry = { ...e, state: 'released', expiresAt: t, updatedAt: t }
    pool.put(released)
    return (await persist([released], subnet))?.[0] ? silent('released') : ignore('storage-error')
  }

  const inform = async (req: DhcpPacket, f: RequestFacts): Promise<DhcpResult> => {
    const subnet = subnetFor(f)
    if (!subnet) return ignore('no-subnet')
    const boot = bootFor(f, { reply: 'ack', subnet: subnet.cidr })
    const { choice } = boot instanceof Promise ? await boot : boot
    const mods: Modifier[] = [
      withMessageType(MessageType.Ack),
      withOurId(f),
      withCiaddr(req.ciaddr),
      withOptions(networkOptions.get(subnet.cidr)!),
      ...bootModifiers(f, choice, { mode: 'full', ipxeNoPxedhcp: settings.ipxeNoPxedhcp }),
      withEchoes(req),
    ]
    const reply: DhcpReply = { kind: 'reply', type: 'ack', packet: replyTo(req, ...mods) }
    if (f.maxMessageSize) reply.maxSize = f.maxMessageSize - 28
    return reply
  }

  return {
    mode: 'full',
    async start() {
      const t = now()
      for (const [cidr, pool] of pools) pool.load(await deps.leases.list({ subnet: cidr }))
      await reloadReservations()
      deps.log.info(
        { subnets: [...pools.keys()], reservations: reservations.size, usage: [...pools.values()].map((p) => p.usage(t)) },
        'dhcp leases loaded',
      )
      const refresh = setInterval(() => {
        reloadReservations().catch((err: unknown) => deps.log.warn({ err }, 'dhcp reservation reload failed'))
      }, settings.reservationRefreshSeconds * 1000)
      // Marks stored leases past their expiry; the in-memory pools judge expiry by time already.
      const expire = setInterval(() => {
        deps.leases.expire(now()).catch((err: unknown) => deps.log.warn({ err }, 'dhcp lease expiry sweep failed'))
      }, 60_000)
      refresh.unref()
      expire.unref()
      timers = [refresh, expire]
      if (shared) {
        // What the other servers granted lately, so this one neither offers their addresses nor forgets their clients.
        let since = t - 1000
        const sync = setInterval(() => {
          const from = now()
          Promise.all([...pools].map(async ([cidr, pool]) => pool.load(await deps.leases.list({ subnet: cidr, updatedSince: since }))))
            .then(() => { since = from - 5000 }) // margin for clock skew between the servers
            .catch((err: unknown) => deps.log.warn({ err }, 'dhcp shared lease sync failed'))
        }, (deps.shared?.syncSeconds ?? 5) * 1000)
        sync.unref()
        timers.push(sync)
      }
    },
    async stop() {
      for (const t of timers) clearInterval(t)
      timers = []
      await writer.flush()
    },
    async handle(req: DhcpPacket, meta: RequestMeta): Promise<DhcpResult> {
      if (req.op !== 1) return ignore('not-a-request')
      const f = requestFacts(req, meta)
      switch (f.message) {
        case 'discover':
          return discover(req, f)
        case 'request':
          return request(req, f)
        case 'decline':
          return decline(f)
        case 'release':
          return release(f)
        case 'inform':
          return inform(req, f)
        case 'unknown':
          return ignore('no-message-type')
        default:
          return ignore('unexpected-message-type', f.message)
      }
    },
    reloadReservations,
    poolUsage() {
      const t = now()
      return [...pools.values()].map((p) => ({ subnet: p.subnet.cidr, ...p.usage(t) }))
    },
    pool: (cidr) => pools.get(cidr),
  }
}
