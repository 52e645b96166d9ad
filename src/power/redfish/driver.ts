// BmcDriver over Redfish: service root discovery, one session per driver (reused, logged out at close),
// ComputerSystem.Reset with a ResetType the BMC advertises, boot override PATCH (If-Match when the BMC wants it)
// read back and verified, task monitors followed.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../../log.js'
import { PowerError, isPowerError } from '../errors.js'
import type { BmcDriver, BootOverride, BootReadback, CallOptions, Capability, PowerAction } from '../types.js'
import { RedfishClient, redfishMessages, type Json, type RedfishResponse } from './client.js'
import { bootOf, checkBoot, powerStateOf, readBoot, resetCandidates, stringList, TARGETS } from './mapping.js'
import { createBmcAgent, type TlsPolicy } from './tls.js'
import type { Dispatcher } from 'undici'

export interface RedfishDriverOptions extends TlsPolicy {
  /** Host or IP (https), or a full base URL (`https://host:port`; `http://` only when written out). */
  address: string
  port?: number | null
  username: string
  password: string
  /** Which member of /redfish/v1/Systems, when there are several (its Id or @odata.id). */
  systemId?: string
  /** session (X-Auth-Token), basic, or auto (session where the BMC has a SessionService, else Basic). */
  auth?: 'auto' | 'session' | 'basic'
  /** Wall-clock budget of one driver call (task monitors included). */
  timeoutMs?: number
  /** Task monitor poll interval when the BMC sends no Retry-After. */
  taskPollMs?: number
  /** Boot readback: how many reads (BMCs that apply a PATCH a moment later) and how far apart. */
  verifyReads?: number
  verifyIntervalMs?: number
  log?: Logger
  /** An Agent to use instead of building one from the TLS policy (tests). */
  agent?: Dispatcher
}

export function baseUrlOf(address: string, port: number | null | undefined): URL {
  if (/^https?:\/\//i.test(address)) {
    const u = new URL(address)
    if (port && !u.port) u.port = String(port)
    return new URL(u.origin)
  }
  const host = address.includes(':') && !address.startsWith('[') ? `[${address}]` : address
  return new URL(`https://${host}${port ? `:${port}` : ''}`)
}

function settingsObjectOf(resource: Json): string | null {
  const settings = resource['@Redfish.Settings'] as Json | undefined
  const ref = (settings?.SettingsObject as Json | undefined)?.['@odata.id']
  return typeof ref === 'string' ? ref : null
}

interface SystemDoc {
  body: Json
  etag: string | null
}

export function createRedfishDriver(options: RedfishDriverOptions): BmcDriver {
  const baseUrl = baseUrlOf(options.address, options.port)
  const timeoutMs = options.timeoutMs ?? 30_000
  const taskPollMs = options.taskPollMs ?? 1000
  const verifyReads = Math.max(1, options.verifyReads ?? 3)
  const verifyIntervalMs = options.verifyIntervalMs ?? 1000
  const ownAgent = options.agent ? null : createBmcAgent(options)
  const agent = options.agent ?? ownAgent!
  const client = new RedfishClient({ baseUrl, username: options.username, password: options.password, agent })
  const label = client.label
  let systemPath: string | null = null
  let closed = false

  function callSignal(call?: CallOptions): AbortSignal {
    const timeout = AbortSignal.timeout(timeoutMs)
    return call?.signal ? AbortSignal.any([call.signal, timeout]) : timeout
  }

  async function findSystem(signal: AbortSignal): Promise<string> {
    if (systemPath) return systemPath
    const root = await client.root(signal)
    const systemsRef = ((root.Systems ?? {}) as Json)['@odata.id']
    if (typeof systemsRef !== 'string') throw new PowerError('unsupported', `BMC ${label} lists no Systems collection`)
    const systems = await client.request('GET', systemsRef, { signal })
    const members = (Array.isArray(systems.body?.Members) ? systems.body.Members : []) as Json[]
    const ids = members.map((m) => m['@odata.id']).filter((x): x is string => typeof x === 'string')
    let chosen: string | undefined
    if (options.systemId) {
      chosen = ids.find((id) => id === options.systemId || id.replace(/\/$/, '').split('/').pop() === options.systemId)
      if (!chosen) throw new PowerError('invalid', `BMC ${label} has no system ${options.systemId} (it has ${ids.join(', ')})`)
    } else if (ids.length === 1) {
      chosen = ids[0]
    } else {
      throw new PowerError('invalid', `BMC ${label} manages ${ids.length} systems; say which one (systemId)`)
    }
    systemPath = chosen!
    return systemPath
  }

  async function getSystem(signal: AbortSignal): Promise<SystemDoc> {
    const path = await findSystem(signal)
    const res = await client.request('GET', path, { signal })
    if (!res.body) throw new PowerError('protocol', `BMC ${label} sent no ComputerSystem document`)
    return { body: res.body, etag: res.etag }
  }

  async function resetInfo(system: Json, signal: AbortSignal): Promise<{ target: string; allowable: string[] | null }> {
    const actions = (system.Actions ?? {}) as Json
    const reset = actions['#ComputerSystem.Reset'] as Json | undefined
    if (!reset || typeof reset.target !== 'string') {
      throw new PowerError('unsupported', `BMC ${label} offers no ComputerSystem.Reset action`)
    }
    let allowable = stringList(reset['ResetType@Redfish.AllowableValues'])
    const infoRef = reset['@Redfish.ActionInfo']
    if (!allowable && typeof infoRef === 'string') {
      // The allowed values can live in an ActionInfo resource instead.
      const info = await client.send('GET', infoRef, { signal })
      const params = (Array.isArray(info.body?.Parameters) ? info.body.Parameters : []) as Json[]
      allowable = stringList(params.find((p) => p.Name === 'ResetType')?.AllowableValues)
    }
    return { target: reset.target, allowable }
  }

  /** Follows a task monitor (202 + Location) until the task ends; throws when it ends badly. */
  async function waitTask(res: RedfishResponse, what: string, signal: AbortSignal): Promise<void> {
    let location = res.location
    if (!location) return // 202 without a monitor: accepted, nothing to follow
    for (;;) {
      const retryAfter = Number(res.headers.get('retry-after'))
      const wait = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 10_000) : taskPollMs
      try {
        await sleep(wait, undefined, { signal })
      } catch {
        throw new PowerError('timeout', `BMC ${label} task for ${what} did not finish in time`)
      }
      res = await client.send('GET', location, { signal })
      if (res.status === 202) {
        location = res.location ?? location
        continue
      }
      if (res.status === 404 || res.status === 410) return // monitors may vanish once done
      if (res.status >= 400) throw client.httpError(res, `${what} (task)`)
      const state = typeof res.body?.TaskState === 'string' ? res.body.TaskState : null
      if (state === null || state === 'Completed') {
        if (res.body?.TaskStatus === 'Critical') {
          throw new PowerError('rejected', `BMC ${label} task for ${what} completed with status Critical`)
        }
        return
      }
      if (['Exception', 'Killed', 'Cancelled', 'Interrupted'].includes(state)) {
        const messages = (Array.isArray(res.body?.Messages) ? res.body.Messages : []) as Json[]
        const text = messages.map((m) => String(m.Message ?? m.MessageId ?? '')).join('; ')
        throw new PowerError('rejected', `BMC ${label} task for ${what} ended ${state}${text ? `: ${text}` : ''}`)
      }
      // New, Starting, Running, Pending, Suspended, Stopping, Service: poll on.
    }
  }

  async function postReset(target: string, resetType: string, signal: AbortSignal): Promise<RedfishResponse> {
    return client.send('POST', target, { signal, body: { ResetType: resetType } })
  }

  async function doReset(action: PowerAction, signal: AbortSignal): Promise<void> {
    const system = await getSystem(signal)
    const { target, allowable } = await resetInfo(system.body, signal)
    const candidates = resetCandidates(action, allowable)
    if (candidates.length === 0) {
      if (action === 'cycle' && allowable?.includes('ForceOff') && (allowable.includes('On') || allowable.includes('ForceOn'))) {
        // No cycle type at all: off, then on.
        await doReset('off', signal)
        await doReset('on', signal)
        return
      }
      throw new PowerError('unsupported', `BMC ${label} offers no reset type for ${action} ` +
        `(it allows ${allowable?.join(', ') || 'nothing'})`)
    }
    const refused: string[] = []
    for (const resetType of candidates) {
      const res = await postReset(target, resetType, signal)
      if (res.status === 202) return waitTask(res, `reset ${resetType}`, signal)
      if (res.status >= 200 && res.status < 300) return
      // Some BMCs advertise a value and then refuse it (400 ActionParameterNotSupported, 501): try the next one.
      if (res.status === 400 || res.status === 501 || res.status === 405) {
        refused.push(`${resetType}: HTTP ${res.status} ${redfishMessages(res.body).text}`.trim())
        continue
      }
      throw client.httpError(res, `reset ${resetType}`)
    }
    throw new PowerError('unsupported', `BMC ${label} refused every reset type for ${action} (${refused.join('; ')})`)
  }

  async function getResource(path: string, signal: AbortSignal): Promise<SystemDoc> {
    const res = await client.request('GET', path, { signal })
    if (!res.body) throw new PowerError('protocol', `BMC ${label} sent an empty document for ${path}`)
    return { body: res.body, etag: res.etag }
  }

  /** PATCH a resource; on 412/428 (the BMC wants If-Match, or the ETag moved) read it again and retry once. */
  async function patchResource(path: string, body: Json, signal: AbortSignal, what: string): Promise<RedfishResponse> {
    let res = await client.send('PATCH', path, { signal, body })
    if (res.status === 412 || res.status === 428) {
      const tag = (await getResource(path, signal)).etag
      if (!tag) throw new PowerError('rejected', `BMC ${label} wants If-Match for ${what} but sends no ETag`)
      res = await client.send('PATCH', path, { signal, body, headers: { 'If-Match': tag } })
    }
    if (res.status === 202) {
      await waitTask(res, what, signal)
      return res
    }
    if (res.status >= 200 && res.status < 300) return res
    throw client.httpError(res, what)
  }

  async function patchSystem(body: Json, signal: AbortSignal, what: string): Promise<RedfishResponse> {
    return patchResource(await findSystem(signal), body, signal, what)
  }

  async function setBoot(o: BootOverride, signal: AbortSignal): Promise<BootReadback> {
    const system = await getSystem(signal)
    const boot = bootOf(system.body)
    const allowedTargets = stringList(boot['BootSourceOverrideTarget@Redfish.AllowableValues'])
    const target = TARGETS[o.device]
    if (o.device !== 'none' && allowedTargets && !allowedTargets.includes(target)) {
      throw new PowerError('unsupported', `BMC ${label} cannot boot-override to ${target} (it allows ${allowedTargets.join(', ')})`)
    }
    const what = `set boot override ${target}`
    // 'none' sends only Enabled=Disabled: some BMCs (iLO) refuse Disabled together with target None.
    const patch: Json = o.device === 'none'
      ? { BootSourceOverrideEnabled: 'Disabled' }
      : { BootSourceOverrideTarget: target, BootSourceOverrideEnabled: o.persistent ? 'Continuous' : 'Once' }
    if (o.mode && o.device !== 'none') patch.BootSourceOverrideMode = o.mode === 'uefi' ? 'UEFI' : 'Legacy'
    // Mode goes in the same PATCH (some BMCs reset it otherwise); a BMC that refuses the whole payload gets one
    // more try without it, and the readback then decides.
    const patchBoot = async (path: string): Promise<void> => {
      try {
        await patchResource(path, { Boot: patch }, signal, what)
      } catch (err) {
        if (!(isPowerError(err, 'rejected') && patch.BootSourceOverrideMode)) throw err
        options.log?.debug({ bmc: label }, 'redfish boot override refused with mode; retrying without it')
        const { BootSourceOverrideMode: _mode, ...rest } = patch
        await patchResource(path, { Boot: rest }, signal, what)
      }
    }
    // Where Boot is read-only on the system (iDRAC10), the change goes to its @Redfish.Settings object and applies
    // at the next reset; it is then read back from there.
    let where = await findSystem(signal)
    try {
      await patchBoot(where)
    } catch (err) {
      const settings = settingsObjectOf(system.body)
      if (!settings || !(isPowerError(err, 'rejected') || isPowerError(err, 'unsupported'))) throw err
      options.log?.debug({ bmc: label }, 'redfish boot override goes to the settings object')
      where = client.url(settings).pathname
      await patchBoot(where)
    }
    let last: BootReadback | null = null
    for (let read = 0; read < verifyReads; read++) {
      if (read > 0) await sleep(verifyIntervalMs, undefined, { signal }).catch(() => undefined)
      last = readBoot((await getResource(where, signal)).body)
      const check = checkBoot(o, last)
      if (!check.mismatch) {
        if (check.warnings.length) options.log?.warn({ bmc: label, warnings: check.warnings }, 'redfish boot override readback differs')
        return last
      }
    }
    const check = checkBoot(o, last!)
    throw new PowerError('not-applied', `BMC ${label} accepted ${what} but it did not stick: ${check.mismatch}`, {
      details: { asked: o, readback: last },
    })
  }

  /** Runs one driver call with its own deadline, turning aborts and stray errors into PowerErrors. */
  async function run<T>(call: CallOptions | undefined, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (closed) throw new PowerError('invalid', `Redfish driver for ${label} is closed`)
    const signal = callSignal(call)
    try {
      return await fn(signal)
    } catch (err) {
      if (isPowerError(err)) throw err
      if (signal.aborted) throw new PowerError('timeout', `BMC ${label} did not finish ${what} in time`, { cause: err })
      throw new PowerError('protocol', `BMC ${label}: ${what} failed: ${(err as Error)?.message ?? String(err)}`, { cause: err })
    }
  }

  return {
    type: 'redfish',

    capabilities(call) {
      return run(call, 'capabilities', async (signal) => {
        const system = (await getSystem(signal)).body
        const caps: Capability[] = ['power.status']
        const info = await resetInfo(system, signal).catch(() => null)
        if (info) {
          for (const action of ['on', 'off', 'soft-off', 'cycle', 'reset'] as const) {
            if (resetCandidates(action, info.allowable).length > 0) caps.push(`power.${action}`)
          }
          if (!caps.includes('power.cycle') && info.allowable?.includes('ForceOff') && caps.includes('power.on')) {
            caps.push('power.cycle')
          }
        }
        const boot = bootOf(system)
        if (boot.BootSourceOverrideTarget !== undefined) {
          const targets = stringList(boot['BootSourceOverrideTarget@Redfish.AllowableValues'])
          if (!targets || targets.includes('Pxe')) caps.push('boot.pxe')
          if (!targets || targets.includes('Hdd')) caps.push('boot.disk')
          if (boot.BootSourceOverrideMode !== undefined) {
            const modes = stringList(boot['BootSourceOverrideMode@Redfish.AllowableValues'])
            if (!modes || modes.includes('UEFI')) caps.push('boot.uefi')
            if (!modes || modes.includes('Legacy')) caps.push('boot.bios')
          }
          const enabled = stringList(boot['BootSourceOverrideEnabled@Redfish.AllowableValues'])
          if (!enabled || enabled.includes('Continuous')) caps.push('boot.persistent')
          caps.push('boot.readback')
        }
        if (system.LocationIndicatorActive !== undefined || system.IndicatorLED !== undefined) caps.push('identify')
        return caps
      })
    },

    powerStatus(call) {
      return run(call, 'power status', async (signal) => {
        const system = (await getSystem(signal)).body
        const state = powerStateOf(system)
        if (!state) throw new PowerError('protocol', `BMC ${label} reports power state ${String(system.PowerState)}`)
        return state
      })
    },

    power(action, call) {
      if (!['on', 'off', 'soft-off', 'cycle', 'reset'].includes(action)) {
        return Promise.reject(new PowerError('invalid', `unknown power action ${String(action)}`))
      }
      return run(call, `power ${action}`, (signal) => doReset(action, signal))
    },

    setBootDevice(override, call) {
      return run(call, 'set boot device', (signal) => setBoot(override, signal))
    },

    getBootDevice(call) {
      return run(call, 'get boot device', async (signal) => readBoot((await getSystem(signal)).body))
    },

    identify(on, call) {
      return run(call, 'identify', async (signal) => {
        const system = await getSystem(signal)
        if (system.body.LocationIndicatorActive !== undefined) {
          await patchSystem({ LocationIndicatorActive: on }, signal, 'identify')
        } else if (system.body.IndicatorLED !== undefined) {
          await patchSystem({ IndicatorLED: on ? 'Blinking' : 'Off' }, signal, 'identify')
        } else {
          throw new PowerError('unsupported', `BMC ${label} has no indicator LED`)
        }
      })
    },

    insertMedia() {
      return Promise.reject(new PowerError('unsupported', `virtual media on BMC ${label}: not implemented yet`))
    },

    ejectMedia() {
      return Promise.reject(new PowerError('unsupported', `virtual media on BMC ${label}: not implemented yet`))
    },

    async close() {
      if (closed) return
      closed = true
      await client.logout(AbortSignal.timeout(Math.min(timeoutMs, 5000)))
      await ownAgent?.close().catch(() => undefined)
    },
  }
}
