// An RMCP+ (IPMI v2.0 lanplus) session: Get Channel Authentication Capabilities, Open Session (cipher suite 17,
// then 3), RAKP 1-4, Set Session Privilege Level, then integrity-protected, AES-encrypted commands, and Close.
import { randomBytes, randomInt } from 'node:crypto'
import { PowerError } from '../errors.js'
import { asNotRun, describeCompletionCode } from './completion.js'
import {
  Cmd, NAME_ONLY_LOOKUP, NetFn, PayloadType, Privilege, RMCP_STATUS, SUITE_REFUSED,
} from './constants.js'
import {
  CIPHER_SUITES, decryptPayload, deriveKeys, encryptPayload, equalCodes, packetAuthCode, rakp2AuthCode,
  rakp3AuthCode, rakp4Icv, suiteByAlgorithms, type CipherSuite, type RakpContext, type SessionKeys,
} from './crypto.js'
import { decodePacket, decodeResponse, encodeRequest, encodeV15, encodeV20, type IpmiResponse } from './packet.js'
import { UdpChannel } from './transport.js'

export { describeCompletionCode } from './completion.js'

export type SuiteId = 3 | 17

export interface IpmiSessionOptions {
  host: string
  port: number
  username: string
  password: string
  /** BMC key K_G for two-key logins; null or empty uses the password (the usual case). */
  kg?: Buffer | null
  /** Cipher suites in the order to try. */
  suites: SuiteId[]
  privilege?: number
  /** Absolute time (Date.now()) by which session set-up and every command must be done. */
  deadline: number
  retransmitMs: number
  signal?: AbortSignal
}

export interface CommandOptions {
  /** Names the step in errors ("Chassis Control (power cycle)"); the command's name by default. */
  what?: string
  /**
   * Send one copy and never retransmit it: for commands a BMC carries out again when a copy arrives twice
   * (Chassis Control). A lost answer is then a timeout that says the command may have been carried out.
   */
  once?: boolean
  /** Called immediately before the request leaves. */
  onSend?: () => void
  /** Absolute time by which the answer must be in; the session's deadline by default. */
  deadline?: number
}

export interface IpmiSession {
  readonly suite: CipherSuite
  readonly label: string
  /** Sends one command and returns the response; a non-zero completion code is returned, not thrown. */
  command(netFn: number, cmd: number, data?: Buffer | number[], options?: CommandOptions): Promise<IpmiResponse>
  /** Close Session, best effort within a short budget; always releases the socket. */
  close(): Promise<void>
  readonly stats: IpmiStats
}

export interface IpmiStats {
  sent: number
  retransmitted: number
  /** Datagrams received and dropped: not for this session, failed integrity, replayed, undecodable. */
  dropped: number
}

function status(code: number): string {
  return `${RMCP_STATUS[code] ?? 'unknown status'} (0x${code.toString(16).padStart(2, '0')})`
}

/**
 * Opens a session. Throws PowerError: auth (credentials), timeout, unsupported (no common suite), rejected; always
 * `notRun`, since no command of the caller has left yet.
 */
export async function openSession(opts: IpmiSessionOptions): Promise<IpmiSession> {
  const target = `${opts.host}:${opts.port}`
  const username = Buffer.from(opts.username, 'utf8')
  const kuid = Buffer.from(opts.password, 'utf8')
  if (username.length > 16) {
    throw new PowerError('invalid', `BMC ${target}: IPMI user names are at most 16 bytes`, { notRun: true })
  }
  if (kuid.length > 20) throw new PowerError('invalid', `BMC ${target}: IPMI v2.0 passwords are at most 20 bytes`, { notRun: true })
  const privilege = opts.privilege ?? Privilege.ADMINISTRATOR
  const channel = new UdpChannel({ host: opts.host, port: opts.port, deadline: opts.deadline,
    retransmitMs: opts.retransmitMs, signal: opts.signal })
  const bmc = channel.label
  try {
    // 1. Get Channel Authentication Capabilities, session-less in IPMI v1.5 framing. Also tells "is anyone there".
    const capsSeq = randomInt(1, 64)
    const caps = await channel.exchange({
      what: 'Get Channel Authentication Capabilities',
      build: () => encodeV15(encodeRequest({ netFn: NetFn.APP, cmd: Cmd.GET_CHANNEL_AUTH_CAPABILITIES, rqSeq: capsSeq,
        data: Buffer.from([0x8e, privilege]) })),
      accept: (dgram) => {
        const p = decodePacket(dgram)
        const msg = p?.format === 'v15' ? p.message : p?.format === 'v20' && p.payloadType === 0 ? p.payload : null
        const r = msg ? decodeResponse(msg) : null
        return r && r.cmd === Cmd.GET_CHANNEL_AUTH_CAPABILITIES && r.rqSeq === capsSeq ? r : undefined
      },
    })
    if (caps.completionCode !== 0) {
      throw new PowerError('rejected', `BMC ${bmc} refused Get Channel Authentication Capabilities: ${describeCompletionCode(caps.completionCode)}`)
    }
    const v2 = ((caps.data[1] ?? 0) & 0x80) !== 0 && ((caps.data[3] ?? 0) & 0x02) !== 0
    if (!v2) throw new PowerError('unsupported', `BMC ${bmc} does not offer IPMI v2.0 (RMCP+) on this channel`)

    // 2. Open Session: each suite in turn until the BMC accepts one.
    const consoleSessionId = randomInt(1, 0xffffffff)
    let chosen: { suite: CipherSuite; bmcSessionId: number } | null = null
    const refused: string[] = []
    for (const id of opts.suites) {
      const proposed = CIPHER_SUITES[id]
      const tag = randomInt(0, 256)
      const reply = await channel.exchange({
        what: `Open Session (cipher suite ${id})`,
        build: () => encodeV20({ payloadType: PayloadType.OPEN_SESSION_REQUEST, sessionId: 0, sequence: 0,
          encrypted: false, payload: openSessionRequest(tag, privilege, consoleSessionId, proposed) }),
        accept: (dgram) => {
          const p = decodePacket(dgram)
          if (p?.format !== 'v20' || p.payloadType !== PayloadType.OPEN_SESSION_RESPONSE || p.payload.length < 2) return undefined
          if (p.payload[0] !== tag) return undefined
          return p.payload
        },
      })
      const code = reply[1] ?? 0xff
      if (code !== 0) {
        if (SUITE_REFUSED.has(code)) {
          refused.push(`${id}: ${status(code)}`)
          continue
        }
        if (code === 0x01 || code === 0x0b) {
          throw new PowerError('session-limit', `BMC ${bmc} has no free session: ${status(code)}`)
        }
        if (code === 0x09 || code === 0x0a) throw new PowerError('auth', `BMC ${bmc} refused the session: ${status(code)}`)
        throw new PowerError('rejected', `BMC ${bmc} refused Open Session: ${status(code)}`)
      }
      if (reply.length < 36 || reply.readUInt32LE(4) !== consoleSessionId) {
        throw new PowerError('protocol', `BMC ${bmc} sent a malformed Open Session response`)
      }
      // The BMC may answer with other algorithms than proposed (pyghmi always answers suite 3): use them only when
      // they form a suite rackboot is allowed to use, never silently something weaker.
      const answered = suiteByAlgorithms(reply[16] ?? -1, reply[24] ?? -1, reply[32] ?? -1)
      if (!answered || !opts.suites.includes(answered.id as SuiteId)) {
        throw new PowerError('unsupported', `BMC ${bmc} answered Open Session with algorithms ` +
          `${reply[16]}/${reply[24]}/${reply[32]} (auth/integrity/confidentiality), not an allowed cipher suite`)
      }
      chosen = { suite: answered, bmcSessionId: reply.readUInt32LE(8) }
      break
    }
    if (!chosen) {
      throw new PowerError('unsupported', `BMC ${bmc} refused every cipher suite offered (${refused.join('; ')})`)
    }
    const { suite, bmcSessionId } = chosen

    // 3. RAKP1 -> RAKP2: the BMC proves it knows the password (the HMAC is checked here: a wrong password ends it).
    const role = privilege | NAME_ONLY_LOOKUP
    const consoleRandom = randomBytes(16)
    const rakp1Tag = randomInt(0, 256)
    let rakp1Copies = 0
    const hashLength = suite.hash === 'sha1' ? 20 : 32
    const rakp2 = await channel.exchange({
      what: 'RAKP message 1 (no answer: the BMC may not know this user)',
      build: (attempt) => {
        rakp1Copies = attempt + 1
        return encodeV20({ payloadType: PayloadType.RAKP1, sessionId: 0, sequence: 0, encrypted: false,
          payload: Buffer.concat([
            Buffer.from([rakp1Tag, 0, 0, 0]), u32le(bmcSessionId), consoleRandom,
            Buffer.from([role, 0, 0, username.length]), username,
          ]) })
      },
      accept: (dgram) => {
        const p = decodePacket(dgram)
        if (p?.format !== 'v20' || p.payloadType !== PayloadType.RAKP2 || p.payload.length < 2) return undefined
        return p.payload[0] === rakp1Tag ? p.payload : undefined
      },
    })
    const rakp2Status = rakp2[1] ?? 0xff
    if (rakp2Status !== 0) {
      const kind = rakp2Status === 0x01 || rakp2Status === 0x0b ? 'session-limit' : rakp2Status === 0x02 ? 'protocol' : 'auth'
      throw new PowerError(kind, `BMC ${bmc} refused the login at RAKP2: ${status(rakp2Status)}`)
    }
    if (rakp2.length < 40 + hashLength || rakp2.readUInt32LE(4) !== consoleSessionId) {
      throw new PowerError('protocol', `BMC ${bmc} sent a malformed RAKP message 2`)
    }
    const ctx: RakpContext = {
      consoleSessionId, bmcSessionId, consoleRandom,
      bmcRandom: Buffer.from(rakp2.subarray(8, 24)), bmcGuid: Buffer.from(rakp2.subarray(24, 40)),
      role, username,
    }
    if (!equalCodes(Buffer.from(rakp2.subarray(40, 40 + hashLength)), rakp2AuthCode(suite, kuid, ctx))) {
      // Tell the BMC so it frees the half-open session, then stop: this is a wrong password, not a loss.
      channel.sendOnly(encodeV20({ payloadType: PayloadType.RAKP3, sessionId: 0, sequence: 0, encrypted: false,
        payload: Buffer.concat([Buffer.from([rakp1Tag, 0x0f, 0, 0]), u32le(bmcSessionId)]) }))
      throw new PowerError('auth', `BMC ${bmc} rejected the credentials (RAKP2 auth code mismatch: wrong password)`)
    }

    // 4. RAKP3 -> RAKP4: we prove the password; both sides derive SIK, K1, K2.
    const keys = deriveKeys(suite, kuid, opts.kg ?? null, ctx)
    const rakp3Tag = randomInt(0, 256)
    const rakp3Code = rakp3AuthCode(suite, kuid, ctx)
    const rakp4 = await channel.exchange({
      what: 'RAKP message 3',
      build: () => encodeV20({ payloadType: PayloadType.RAKP3, sessionId: 0, sequence: 0, encrypted: false,
        payload: Buffer.concat([Buffer.from([rakp3Tag, 0, 0, 0]), u32le(bmcSessionId), rakp3Code]) }),
      accept: (dgram) => {
        const p = decodePacket(dgram)
        if (p?.format !== 'v20' || p.payloadType !== PayloadType.RAKP4 || p.payload.length < 2) return undefined
        return p.payload[0] === rakp3Tag ? p.payload : undefined
      },
    })
    const rakp4Status = rakp4[1] ?? 0xff
    if (rakp4Status !== 0) {
      // After a retransmitted RAKP1 the BMC may have answered twice with different randoms and we used the stale
      // one: that is a loss to retry, not a credentials problem (RAKP2 already proved the password).
      const kind = rakp4Status === 0x01 ? 'session-limit' : rakp1Copies > 1 ? 'protocol' : 'auth'
      throw new PowerError(kind, `BMC ${bmc} refused the login at RAKP4: ${status(rakp4Status)}`)
    }
    if (rakp4.length < 8 + suite.rakp4IcvLength ||
      !equalCodes(Buffer.from(rakp4.subarray(8, 8 + suite.rakp4IcvLength)), rakp4Icv(suite, keys.sik, ctx))) {
      throw new PowerError('auth', `BMC ${bmc} failed the RAKP4 integrity check (wrong BMC key K_G?)`)
    }

    const session = new ActiveSession(channel, suite, keys, consoleSessionId, bmcSessionId, capsSeq)
    // 5. Raise the session to the privilege asked for (sessions start at USER).
    const priv = await session.command(NetFn.APP, Cmd.SET_SESSION_PRIVILEGE_LEVEL, [privilege])
    if (priv.completionCode !== 0) {
      await session.close()
      throw new PowerError('auth', `BMC ${bmc} refused privilege level ${privilege} for this user: ` +
        describeCompletionCode(priv.completionCode))
    }
    return session
  } catch (err) {
    channel.close()
    throw asNotRun(err, `opening an IPMI session to BMC ${bmc}`)
  }
}

function u32le(n: number): Buffer {
  const b = Buffer.alloc(4)
  b.writeUInt32LE(n >>> 0)
  return b
}

function openSessionRequest(tag: number, privilege: number, consoleSessionId: number, suite: CipherSuite): Buffer {
  const algo = (type: number, value: number): Buffer => Buffer.from([type, 0, 0, 0x08, value, 0, 0, 0])
  return Buffer.concat([
    Buffer.from([tag, privilege, 0, 0]), u32le(consoleSessionId),
    algo(0x00, suite.auth), algo(0x01, suite.integrity), algo(0x02, suite.confidentiality),
  ])
}

class ActiveSession implements IpmiSession {
  private outSeq = 0
  private readonly seenIn = new Set<number>()
  private closed = false
  private rqSeq: number

  constructor(
    private readonly channel: UdpChannel,
    readonly suite: CipherSuite,
    private readonly keys: SessionKeys,
    private readonly consoleSessionId: number,
    private readonly bmcSessionId: number,
    firstRqSeq: number,
  ) {
    this.rqSeq = firstRqSeq
  }

  get label(): string {
    return this.channel.label
  }

  get stats(): IpmiStats {
    return { sent: this.channel.sent, retransmitted: this.channel.retransmitted, dropped: this.channel.dropped }
  }

  async command(netFn: number, cmd: number, data: Buffer | number[] = [], options: CommandOptions = {}): Promise<IpmiResponse> {
    const what = options.what ?? commandName(netFn, cmd)
    if (this.closed) {
      throw new PowerError('protocol', `IPMI session to BMC ${this.label} is closed (${what} not sent)`, { notRun: true })
    }
    this.rqSeq = (this.rqSeq % 63) + 1
    const rqSeq = this.rqSeq
    const message = encodeRequest({ netFn, cmd, rqSeq, data: Buffer.from(data) })
    return this.channel.exchange({
      what,
      deadline: options.deadline,
      retransmit: !options.once,
      onSend: options.onSend,
      // A retransmit keeps rqSeq (so a BMC can spot the duplicate) but needs a new session sequence number,
      // or the BMC drops it as a replay.
      build: () => this.seal(message),
      accept: (dgram) => {
        const r = this.open(dgram)
        return r && r.rqSeq === rqSeq && r.cmd === cmd && r.netFn === netFn + 1 ? r : undefined
      },
    })
  }

  async close(): Promise<void> {
    if (this.closed) return
    try {
      // Up to 1 s for the answer, never past the call's deadline: a BMC gone silent must not stretch the call.
      const deadline = Math.min(Date.now() + 1000, this.channel.deadline)
      if (this.channel.aborted || deadline - Date.now() < 50) {
        // The caller gave up or the time is spent: still tell the BMC, without waiting, so the session does not
        // linger there.
        this.rqSeq = (this.rqSeq % 63) + 1
        this.channel.sendOnly(this.seal(encodeRequest({ netFn: NetFn.APP, cmd: Cmd.CLOSE_SESSION, rqSeq: this.rqSeq,
          data: u32le(this.bmcSessionId) })))
      } else {
        await this.command(NetFn.APP, Cmd.CLOSE_SESSION, u32le(this.bmcSessionId), { deadline })
      }
    } catch {
      // Best effort: an unclosed session times out on the BMC.
    } finally {
      this.closed = true
      this.channel.close()
    }
  }

  private seal(message: Buffer): Buffer {
    this.outSeq = (this.outSeq + 1) >>> 0 || 1
    return encodeV20({
      payloadType: PayloadType.IPMI, sessionId: this.bmcSessionId, sequence: this.outSeq,
      encrypted: true, payload: encryptPayload(this.keys.aesKey, message),
      sign: (covered) => packetAuthCode(this.suite, this.keys.k1, covered),
    })
  }

  /** Verifies and decrypts one datagram of this session; undefined for anything else (dropped and counted). */
  private open(dgram: Buffer): IpmiResponse | undefined {
    const p = decodePacket(dgram, this.suite.authCodeLength)
    if (p?.format !== 'v20' || p.payloadType !== PayloadType.IPMI || p.sessionId !== this.consoleSessionId) return undefined
    if (!p.authenticated || !p.covered || !p.authCode) return undefined
    if (!equalCodes(p.authCode, packetAuthCode(this.suite, this.keys.k1, p.covered))) return undefined
    // Replay protection: each inbound sequence number is accepted once.
    if (p.sequence === 0 || this.seenIn.has(p.sequence)) return undefined
    this.seenIn.add(p.sequence)
    if (this.seenIn.size > 64) this.seenIn.delete(this.seenIn.values().next().value as number)
    const message = p.encrypted ? decryptPayload(this.keys.aesKey, p.payload) : p.payload
    if (!message) return undefined
    return decodeResponse(message) ?? undefined
  }
}

const NAMES: Record<string, string> = {
  [`${NetFn.APP}:${Cmd.SET_SESSION_PRIVILEGE_LEVEL}`]: 'Set Session Privilege Level',
  [`${NetFn.APP}:${Cmd.CLOSE_SESSION}`]: 'Close Session',
  [`${NetFn.APP}:${Cmd.GET_DEVICE_ID}`]: 'Get Device ID',
  [`${NetFn.CHASSIS}:${Cmd.GET_CHASSIS_STATUS}`]: 'Get Chassis Status',
  [`${NetFn.CHASSIS}:${Cmd.CHASSIS_CONTROL}`]: 'Chassis Control',
  [`${NetFn.CHASSIS}:${Cmd.CHASSIS_IDENTIFY}`]: 'Chassis Identify',
  [`${NetFn.CHASSIS}:${Cmd.SET_SYSTEM_BOOT_OPTIONS}`]: 'Set System Boot Options',
  [`${NetFn.CHASSIS}:${Cmd.GET_SYSTEM_BOOT_OPTIONS}`]: 'Get System Boot Options',
}

export function commandName(netFn: number, cmd: number): string {
  return NAMES[`${netFn}:${cmd}`] ?? `command 0x${netFn.toString(16)}/0x${cmd.toString(16)}`
}

