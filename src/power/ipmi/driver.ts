// BmcDriver over IPMI v2.0 RMCP+: one session per driver call (opened, used, closed), the working cipher suite
// remembered for the next call so a BMC without suite 17 costs one refused Open Session only once.
import type { Logger } from '../../log.js'
import { PowerError } from '../errors.js'
import type { BmcDriver, BootOverride, BootReadback, CallOptions, Capability, PowerAction, PowerState } from '../types.js'
import { bootMatches, decodeBootFlags, encodeBootFlags, verifiedFields } from './boot-flags.js'
import { asNotRun, completionError } from './completion.js'
import { BootParam, ChassisControl, Cmd, NetFn, Privilege } from './constants.js'
import { commandName, openSession, type IpmiSession, type IpmiStats, type SuiteId } from './session.js'
import type { IpmiResponse } from './packet.js'

export interface IpmiDriverOptions {
  host: string
  /** UDP port; 623 when not given. */
  port?: number
  username: string
  password: string
  /** BMC key K_G (two-key login), when the BMC has one set. */
  kg?: Buffer | null
  /** Cipher suites in the order to try; 17 (SHA256) then 3 (SHA1) by default. */
  suites?: SuiteId[]
  /** Wall-clock budget of one driver call, session set-up included. */
  timeoutMs?: number
  /**
   * First UDP retransmission interval (reads, boot options and session set-up). Chassis Control is never
   * retransmitted: it waits max(2 s, 4 x retransmitMs) for its answer (transport.ts answerWaitFor), within timeoutMs.
   */
  retransmitMs?: number
  /** Session privilege to ask for; ADMINISTRATOR by default (OPERATOR suffices for chassis control). */
  privilege?: 'user' | 'operator' | 'administrator'
  /** How strictly a boot override is checked on readback (see bootMatches); the readback's `verified` says which. */
  bootVerify?: 'strict' | 'device'
  log?: Logger
  /** Called after each session with its datagram counts (the manager turns them into counters). */
  onStats?: (stats: IpmiStats) => void
}

const ACTION_CONTROL: Record<PowerAction, number> = {
  on: ChassisControl.POWER_UP,
  off: ChassisControl.POWER_DOWN,
  'soft-off': ChassisControl.SOFT_SHUTDOWN,
  cycle: ChassisControl.POWER_CYCLE,
  reset: ChassisControl.HARD_RESET,
}

// No 'boot.http' (IPMI has no UEFI HTTP boot selector) and no 'media.virtual' (no standard IPMI virtual media).
const CAPABILITIES: Capability[] = [
  'power.status', 'power.on', 'power.off', 'power.soft-off', 'power.cycle', 'power.reset',
  'boot.pxe', 'boot.disk', 'boot.cd', 'boot.uefi', 'boot.bios', 'boot.persistent', 'boot.readback', 'identify',
]

export function createIpmiDriver(options: IpmiDriverOptions): BmcDriver {
  const port = options.port ?? 623
  const timeoutMs = options.timeoutMs ?? 10_000
  const retransmitMs = options.retransmitMs ?? 1000
  const verify = options.bootVerify ?? 'strict'
  const label = `${options.host}:${port}`
  const privilege = options.privilege === 'user' ? Privilege.USER : options.privilege === 'operator' ? Privilege.OPERATOR
    : Privilege.ADMINISTRATOR
  let suites: SuiteId[] = options.suites ?? [17, 3]

  async function withSession<T>(call: CallOptions | undefined, fn: (s: IpmiSession) => Promise<T>): Promise<T> {
    const session = await openSession({
      host: options.host, port, username: options.username, password: options.password, kg: options.kg ?? null,
      suites, deadline: Date.now() + timeoutMs, retransmitMs, signal: call?.signal, privilege,
    })
    if (session.suite.id !== suites[0]) {
      options.log?.debug({ bmc: label, suite: session.suite.id }, 'ipmi cipher suite fallback')
      suites = [session.suite.id as SuiteId, ...suites.filter((s) => s !== session.suite.id)]
    }
    try {
      return await fn(session)
    } finally {
      await session.close()
      options.onStats?.(session.stats)
    }
  }

  function check(r: IpmiResponse, what = commandName(r.netFn - 1, r.cmd)): IpmiResponse {
    if (r.completionCode === 0) return r
    throw completionError(label, what, r.completionCode)
  }

  async function readBoot(s: IpmiSession): Promise<BootReadback> {
    const step = 'Get System Boot Options (boot flags)'
    const r = check(await s.command(NetFn.CHASSIS, Cmd.GET_SYSTEM_BOOT_OPTIONS, [BootParam.BOOT_FLAGS, 0, 0],
      { what: step }), step)
    // Answer: parameter version, parameter selector (bit 7: invalid/locked), then the 5 boot-flag bytes.
    const flags = decodeBootFlags(r.data.subarray(2))
    if (!flags) {
      throw new PowerError('protocol', `BMC ${label} sent a short boot-flags parameter (${r.data.length} bytes) to ${step}`)
    }
    return flags
  }

  return {
    type: 'ipmi',

    async capabilities() {
      return [...CAPABILITIES]
    },

    async powerStatus(call) {
      return withSession(call, async (s) => {
        const r = check(await s.command(NetFn.CHASSIS, Cmd.GET_CHASSIS_STATUS))
        if (r.data.length < 1) throw new PowerError('protocol', `BMC ${label} sent an empty answer to Get Chassis Status`)
        return ((r.data[0] ?? 0) & 0x01 ? 'on' : 'off') satisfies PowerState
      })
    },

    async power(action, call) {
      const control = ACTION_CONTROL[action]
      if (control === undefined) {
        throw new PowerError('invalid', `unknown power action ${String(action)} for BMC ${label}`, { notRun: true })
      }
      const step = `Chassis Control (power ${action})`
      let sent = false
      try {
        await withSession(call, async (s) => {
          // At most one copy on the wire: a BMC that does not de-duplicate by rqSeq (ipmi_sim, many others) would
          // carry out a retransmitted copy again, i.e. a second power cycle.
          const r = await s.command(NetFn.CHASSIS, Cmd.CHASSIS_CONTROL, [control], {
            what: step, once: true,
            onSend: () => {
              call?.onSend?.()
              sent = true
            },
          })
          check(r, step)
        })
      } catch (err) {
        // Whatever failed before the request left (session set-up, an abort, a spent budget), the BMC cannot have
        // acted on it; after, only a completion code that proves it (completion.ts) says so.
        throw sent ? err : asNotRun(err, `${step} on BMC ${label}`)
      }
    },

    async setBootDevice(override, call) {
      if (override.device === 'http') {
        throw new PowerError('unsupported', `BMC ${label}: IPMI has no UEFI HTTP boot device; use Redfish or PXE`,
          { notRun: true })
      }
      const flags = encodeBootFlags(override)
      return withSession(call, async (s) => {
        // Set System Boot Options is idempotent (the same bytes each time): it keeps retransmitting on loss.
        const setParam = (param: number, data: number[] | Buffer): Promise<IpmiResponse> =>
          s.command(NetFn.CHASSIS, Cmd.SET_SYSTEM_BOOT_OPTIONS, Buffer.concat([Buffer.from([param]), Buffer.from(data)]),
            { what: `Set System Boot Options (parameter ${param})` })
        // The sequence ipmitool uses: set in progress, boot info ack, the flags, commit, set complete. Parameters
        // 0 and 4 are optional (ipmi_sim answers 0xCC): their errors are not the caller's problem.
        await setParam(BootParam.SET_IN_PROGRESS, [0x01])
        let result: IpmiResponse
        try {
          await setParam(BootParam.BOOT_INFO_ACK, [0x01, 0x01])
          result = await setParam(BootParam.BOOT_FLAGS, flags)
        } finally {
          await setParam(BootParam.SET_IN_PROGRESS, [0x02]).catch(() => undefined)
          await setParam(BootParam.SET_IN_PROGRESS, [0x00]).catch(() => undefined)
        }
        check(result, `Set System Boot Options (boot flags ${describe(override)})`)
        const readback = await readBoot(s)
        const mismatch = bootMatches(override, readback, verify)
        if (mismatch) {
          throw new PowerError('not-applied', `BMC ${label} accepted boot override ${describe(override)} but ${mismatch}`,
            { details: { bmc: label, asked: override, readback, bootVerify: verify } })
        }
        return { ...readback, verified: verifiedFields(override, verify) }
      })
    },

    async getBootDevice(call) {
      return withSession(call, readBoot)
    },

    async identify(on, call) {
      // Chassis Identify: interval in seconds (0 = off); byte 2 bit 0 forces it on until turned off.
      const seconds = call?.seconds
      const data = !on ? [0] : seconds === undefined ? [0, 1] : [Math.max(1, Math.min(255, Math.round(seconds)))]
      await withSession(call, async (s) => {
        check(await s.command(NetFn.CHASSIS, Cmd.CHASSIS_IDENTIFY, data), 'Chassis Identify')
      })
    },

    async insertMedia() {
      throw new PowerError('unsupported', `IPMI BMC ${label} has no virtual media rackboot can drive (use Redfish)`,
        { notRun: true })
    },

    async ejectMedia() {
      throw new PowerError('unsupported', `IPMI BMC ${label} has no virtual media rackboot can drive (use Redfish)`,
        { notRun: true })
    },

    async close() {
      // Sessions live only as long as one call.
    },
  }
}

function describe(o: BootOverride): string {
  return `${o.device}/${o.mode ?? 'bios'}/${o.persistent ? 'persistent' : 'once'}`
}
