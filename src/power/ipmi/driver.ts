// BmcDriver over IPMI v2.0 RMCP+: one session per driver call (opened, used, closed), the working cipher suite
// remembered for the next call so a BMC without suite 17 costs one refused Open Session only once.
import type { Logger } from '../../log.js'
import { PowerError } from '../errors.js'
import type { BmcDriver, BootOverride, BootReadback, CallOptions, Capability, PowerAction, PowerState } from '../types.js'
import { bootMatches, decodeBootFlags, encodeBootFlags } from './boot-flags.js'
import { BootParam, ChassisControl, Cmd, NetFn, Privilege } from './constants.js'
import { commandName, describeCompletionCode, openSession, type IpmiSession, type IpmiStats, type SuiteId } from './session.js'
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
  /** First UDP retransmission interval. */
  retransmitMs?: number
  /** Session privilege to ask for; ADMINISTRATOR by default (OPERATOR suffices for chassis control on most BMCs). */
  privilege?: 'user' | 'operator' | 'administrator'
  /** How strictly a boot override is checked on readback (see bootMatches). */
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

const CAPABILITIES: Capability[] = [
  'power.status', 'power.on', 'power.off', 'power.soft-off', 'power.cycle', 'power.reset',
  'boot.pxe', 'boot.disk', 'boot.uefi', 'boot.bios', 'boot.persistent', 'boot.readback', 'identify',
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
    const cc = r.completionCode
    const kind = cc === 0xc0 || cc === 0xc3 || cc === 0xd2 ? 'busy' : cc === 0xc1 || cc === 0xd6 ? 'unsupported'
      : cc === 0xd4 ? 'auth' : 'rejected'
    throw new PowerError(kind, `BMC ${label} refused ${what}: ${describeCompletionCode(cc)}`, {
      details: { completionCode: cc },
    })
  }

  async function readBoot(s: IpmiSession): Promise<BootReadback> {
    const r = check(await s.command(NetFn.CHASSIS, Cmd.GET_SYSTEM_BOOT_OPTIONS, [BootParam.BOOT_FLAGS, 0, 0]),
      'Get System Boot Options (boot flags)')
    // Answer: parameter version, parameter selector (bit 7: invalid/locked), then the 5 boot-flag bytes.
    const flags = decodeBootFlags(r.data.subarray(2))
    if (!flags) throw new PowerError('protocol', `BMC ${label} sent a short boot-flags parameter (${r.data.length} bytes)`)
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
        if (r.data.length < 1) throw new PowerError('protocol', `BMC ${label} sent an empty chassis status`)
        return ((r.data[0] ?? 0) & 0x01 ? 'on' : 'off') satisfies PowerState
      })
    },

    async power(action, call) {
      const control = ACTION_CONTROL[action]
      if (control === undefined) throw new PowerError('invalid', `unknown power action ${String(action)}`)
      await withSession(call, async (s) => {
        const r = await s.command(NetFn.CHASSIS, Cmd.CHASSIS_CONTROL, [control])
        if (r.completionCode === 0xd5) {
          throw new PowerError('rejected', `BMC ${label} cannot ${action} in the chassis' present state ` +
            `(${describeCompletionCode(0xd5)})`, { details: { completionCode: 0xd5 } })
        }
        check(r, `Chassis Control (${action})`)
      })
    },

    async setBootDevice(override, call) {
      const flags = encodeBootFlags(override)
      return withSession(call, async (s) => {
        const setParam = (param: number, data: number[] | Buffer): Promise<IpmiResponse> =>
          s.command(NetFn.CHASSIS, Cmd.SET_SYSTEM_BOOT_OPTIONS, Buffer.concat([Buffer.from([param]), Buffer.from(data)]))
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
            { details: { asked: override, readback } })
        }
        return readback
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
      throw new PowerError('unsupported', `IPMI BMC ${label} has no virtual media rackboot can drive (use Redfish)`)
    },

    async ejectMedia() {
      throw new PowerError('unsupported', `IPMI BMC ${label} has no virtual media rackboot can drive (use Redfish)`)
    },

    async close() {
      // Sessions live only as long as one call.
    },
  }
}

function describe(o: BootOverride): string {
  return `${o.device}/${o.mode ?? 'bios'}/${o.persistent ? 'persistent' : 'once'}`
}
