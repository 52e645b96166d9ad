// BmcDriver over Redfish: service root discovery (vendor and quirks, quirks.ts), one session per driver (reused,
// logged out at close), ComputerSystem.Reset with a ResetType the BMC advertises, boot override PATCH (If-Match with
// the ETag just read) read back and verified field by field, task monitors followed.
//
// Exactly once: the caller's onSend runs just before each Reset POST leaves. An error after that carries
// notRun only when the BMC's answer proves it did not act (4xx, 501, 503/429, a vendor "try again"); timeouts,
// dropped connections, 5xx and anything while following an accepted reset's task leave the outcome open.
import { setTimeout as sleep } from 'node:timers/promises'
import type { Logger } from '../../log.js'
import { PowerError, isPowerError } from '../errors.js'
import type {
  BmcDescription, BmcDriver, BootOverride, BootReadback, CallOptions, Capability, PowerAction,
} from '../types.js'
import { ejectVirtualMedia, insertVirtualMedia, type VirtualMediaContext } from './virtual-media.js'
import { RedfishClient, redfishMessages, type AuthMode, type Json, type RedfishResponse } from './client.js'
import { bootFields, bootOf, bootPatches, checkBoot, powerStateOf, readBoot, resetCandidates, stringList, TARGETS } from './mapping.js'
import { quirksFor, vendorFromManager, vendorFromRoot } from './quirks.js'
import { createBmcAgent, type TlsPolicy } from './tls.js'
import type { Dispatcher } from 'undici'

export interface RedfishDriverOptions extends TlsPolicy {
  /**
   * Host or IP (https), or a full base URL (`https://host:port`; `http://` only when written out). A URL may end in
   * the system's path (`https://bmc:8443/redfish/v1/Systems/2`): that system is driven.
   */
  address: string
  port?: number | null
  username: string
  password: string
  /** Which member of /redfish/v1/Systems, when there are several: its Id or its path (`/redfish/v1/Systems/2`). */
  systemId?: string
  /** session (X-Auth-Token, fails without a SessionService), basic (never logs in), or auto (the default). */
  auth?: AuthMode
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

const SYSTEM_PATH = /^\/redfish\/v1\/Systems\/([^/]+)\/?$/

function addressUrl(address: string, port: number | null | undefined): URL {
  const bareIpv6 = !/^https?:\/\//i.test(address) && !address.includes('/') && address.includes(':') && !address.startsWith('[')
  const u = new URL(/^https?:\/\//i.test(address) ? address : `https://${bareIpv6 ? `[${address}]` : address}`)
  if (port && !u.port) u.port = String(port)
  return u
}

export function baseUrlOf(address: string, port: number | null | undefined): URL {
  return new URL(addressUrl(address, port).origin)
}

/** The system path an address names (`.../redfish/v1/Systems/<id>`), null for none; any other path is refused. */
export function systemOfAddress(address: string, port?: number | null): string | null {
  const path = addressUrl(address, port).pathname
  if (/^\/(redfish(\/v1)?\/?)?$/.test(path)) return null
  if (SYSTEM_PATH.test(path)) return path.replace(/\/$/, '')
  throw new PowerError('invalid', `Redfish BMC address ${address} has path ${path}; only a /redfish/v1/Systems/<id> path ` +
    'may follow the host (or give the system as systemId)')
}

const lastSegment = (idOrPath: string): string => idOrPath.replace(/\/$/, '').split('/').pop() ?? idOrPath

/** The system asked for: the explicit systemId, or the one in the address; both, differing, is an error. */
function wantedSystem(options: RedfishDriverOptions): string | null {
  const fromAddress = systemOfAddress(options.address, options.port)
  const explicit = options.systemId?.trim() || null
  if (explicit && fromAddress && lastSegment(explicit) !== lastSegment(fromAddress)) {
    throw new PowerError('invalid', `Redfish BMC ${options.address} names system ${lastSegment(fromAddress)} in its address ` +
      `but its systemId is ${explicit}; give one of them`)
  }
  return explicit ?? fromAddress
}

function matchesSystem(member: string, wanted: string): boolean {
  const m = member.replace(/\/$/, '')
  return wanted.includes('/') ? m === new URL(wanted, 'http://x').pathname.replace(/\/$/, '') : lastSegment(m) === wanted
}

function settingsObjectOf(resource: Json): string | null {
  const settings = resource['@Redfish.Settings'] as Json | undefined
  const ref = (settings?.SettingsObject as Json | undefined)?.['@odata.id']
  return typeof ref === 'string' ? ref : null
}

function linkOf(value: unknown): string | null {
  const ref = (value as Json | null | undefined)?.['@odata.id']
  return typeof ref === 'string' ? ref : null
}

const isWeakEtag = (tag: string): boolean => /^W\//i.test(tag)

/** W/"abc" → "abc" (quoted, as If-Match wants a strong entity tag). */
export function strongEtag(tag: string): string {
  const bare = tag.replace(/^W\//i, '')
  return bare.startsWith('"') ? bare : `"${bare}"`
}

/** The same error, with the outcome left open: the request it follows was carried out, or may have been. */
function leftOpen(err: PowerError, prefix = ''): PowerError {
  if (!err.notRun && !prefix) return err
  return new PowerError(err.kind, `${prefix}${err.message}`, {
    cause: err, details: err.details as Record<string, unknown> | undefined, retryable: err.retryable, notRun: false,
    ...(err.retryAfterMs !== null ? { retryAfterMs: err.retryAfterMs } : {}),
  })
}

interface SystemDoc {
  body: Json
  etag: string | null
}

const MAX_LISTED = 8

export function createRedfishDriver(options: RedfishDriverOptions): BmcDriver {
  const baseUrl = baseUrlOf(options.address, options.port)
  const wanted = wantedSystem(options)
  const timeoutMs = options.timeoutMs ?? 30_000
  const taskPollMs = options.taskPollMs ?? 1000
  const verifyReads = Math.max(1, options.verifyReads ?? 3)
  const verifyIntervalMs = options.verifyIntervalMs ?? 1000
  const ownAgent = options.agent ? null : createBmcAgent(options)
  const agent = options.agent ?? ownAgent!
  const client = new RedfishClient({ baseUrl, username: options.username, password: options.password, agent, auth: options.auth })
  const label = client.label
  let systemPath: string | null = null
  let description: BmcDescription | null = null
  let closed = false

  /**
   * The call's own deadline joined with the caller's signal. Not AbortSignal.any(): on Node 20 a composite of a
   * timeout signal can lose that timeout to garbage collection and never fire (the call then ran to the caller's
   * deadline, with a message that could not say which request got no answer).
   */
  function callSignal(call?: CallOptions): { signal: AbortSignal; release: () => void } {
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
    const outer = call?.signal
    const onAbort = (): void => controller.abort(outer?.reason)
    if (outer?.aborted) onAbort()
    else outer?.addEventListener('abort', onAbort, { once: true })
    return { signal: controller.signal, release: () => { clearTimeout(timer); outer?.removeEventListener('abort', onAbort) } }
  }

  /** Vendor and model from the root, from the first Manager only when the root does not say; never fails a call. */
  async function detect(root: Json, signal: AbortSignal): Promise<void> {
    if (description) return
    let vendor = vendorFromRoot(root)
    let model = typeof root.Product === 'string' ? root.Product : null
    const managers = linkOf(root.Managers)
    if (!vendor && managers) {
      try {
        const manager = await firstMember(managers, signal)
        if (manager) {
          vendor = vendorFromManager(manager)
          const firmware = typeof manager.FirmwareVersion === 'string' ? ` (firmware ${manager.FirmwareVersion})` : ''
          model = typeof manager.Model === 'string' ? `${manager.Model}${firmware}` : model
        }
      } catch (err) {
        if (signal.aborted) throw err
      }
    }
    client.vendor = vendor
    description = { vendor, model, quirks: quirksFor(vendor) }
    options.log?.debug({ bmc: label, ...description }, 'redfish service identified')
  }

  async function firstMember(collection: string, signal: AbortSignal): Promise<Json | null> {
    const list = await client.request('GET', collection, { signal })
    const first = linkOf((Array.isArray(list.body?.Members) ? list.body.Members : [])[0])
    return first ? (await client.request('GET', first, { signal })).body : null
  }

  async function findSystem(signal: AbortSignal): Promise<string> {
    if (systemPath) return systemPath
    const root = await client.root(signal)
    await detect(root, signal)
    const systemsRef = linkOf(root.Systems)
    if (!systemsRef) throw new PowerError('unsupported', `BMC ${label} lists no Systems collection`)
    const systems = await client.request('GET', systemsRef, { signal })
    const members = (Array.isArray(systems.body?.Members) ? systems.body.Members : []).map(linkOf)
      .filter((x): x is string => x !== null)
    systemPath = chooseSystem(members)
    return systemPath
  }

  function chooseSystem(members: string[]): string {
    const ids = members.map(lastSegment)
    const listed = ids.length > MAX_LISTED ? `${ids.slice(0, MAX_LISTED).join(', ')}, …` : ids.join(', ')
    if (wanted) {
      const chosen = members.find((m) => matchesSystem(m, wanted))
      if (!chosen) throw new PowerError('invalid', `BMC ${label} has no system ${wanted} (it has ${listed || 'none'})`)
      return chosen
    }
    if (members.length === 1) return members[0]!
    if (members.length === 0) throw new PowerError('unsupported', `BMC ${label} lists no systems`)
    throw new PowerError('invalid', `BMC ${label} manages ${members.length} systems (${listed}); choose one with bmc.systemId ` +
      'in the inventory file or `rackboot machines bmc set MACHINE --system-id ID`')
  }

  async function getResource(path: string, signal: AbortSignal): Promise<SystemDoc> {
    const res = await client.request('GET', path, { signal })
    if (!res.body) throw new PowerError('protocol', `BMC ${label} sent an empty document for ${path}`)
    return { body: res.body, etag: res.etag }
  }

  async function getSystem(signal: AbortSignal): Promise<SystemDoc> {
    return getResource(await findSystem(signal), signal)
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

  /**
   * Follows a task monitor (202 + Location) until the task ends; throws when it ends badly. The request was
   * accepted, so no error here proves it did not run (notRun is always false).
   */
  async function waitTask(res: RedfishResponse, what: string, signal: AbortSignal): Promise<void> {
    try {
      await followTask(res, what, signal)
    } catch (err) {
      throw isPowerError(err) ? leftOpen(err) : err
    }
  }

  async function followTask(first: RedfishResponse, what: string, signal: AbortSignal): Promise<void> {
    let res = first
    let location = res.location
    if (!location) return // 202 without a monitor: accepted, nothing to follow
    for (;;) {
      const retryAfter = Number(res.headers.get('retry-after'))
      const wait = Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter * 1000, 10_000) : taskPollMs
      try {
        await sleep(wait, undefined, { signal })
      } catch {
        throw new PowerError('timeout', `BMC ${label} task for ${what} did not finish within ${timeoutMs} ms`)
      }
      res = await client.send('GET', location, { signal })
      if (res.status === 202) {
        location = res.location ?? location
        continue
      }
      if (res.status === 404 || res.status === 410) return // monitors may vanish once done
      if (res.status >= 400) throw client.httpError(res, `${what} (task)`)
      if (taskEnded(res.body, what)) return
    }
  }

  /** True when the task completed; throws when it ended badly; false while it runs. */
  function taskEnded(body: Json | null, what: string): boolean {
    const state = typeof body?.TaskState === 'string' ? body.TaskState : null
    if (state === null || state === 'Completed') {
      if (body?.TaskStatus === 'Critical') throw new PowerError('rejected', `BMC ${label} task for ${what} completed with status Critical`)
      return true
    }
    if (['Exception', 'Killed', 'Cancelled', 'Interrupted'].includes(state)) {
      const messages = (Array.isArray(body?.Messages) ? body.Messages : []) as Json[]
      const text = messages.map((m) => String(m.Message ?? m.MessageId ?? '')).join('; ').slice(0, 200)
      throw new PowerError('rejected', `BMC ${label} task for ${what} ended ${state}${text ? `: ${text}` : ''}`)
    }
    return false // New, Starting, Running, Pending, Suspended, Stopping, Service: poll on.
  }

  async function doReset(action: PowerAction, signal: AbortSignal, call?: CallOptions): Promise<void> {
    const system = await getSystem(signal)
    const { target, allowable } = await resetInfo(system.body, signal)
    const candidates = resetCandidates(action, allowable)
    if (candidates.length === 0) {
      if (action === 'cycle' && allowable?.includes('ForceOff') && (allowable.includes('On') || allowable.includes('ForceOn'))) {
        return offThenOn(signal, call)
      }
      throw new PowerError('unsupported', `BMC ${label} offers no reset type for ${action} ` +
        `(it allows ${allowable?.join(', ') || 'nothing'})`, { notRun: true })
    }
    const refused: string[] = []
    for (const resetType of candidates) {
      const res = await client.send('POST', target, { signal, body: { ResetType: resetType }, onSend: call?.onSend })
      if (res.status === 202) return waitTask(res, `reset ${resetType}`, signal)
      if (res.status >= 200 && res.status < 300) return
      const err = client.httpError(res, `reset ${resetType}`, { resetType, changes: true })
      // Some BMCs advertise a value and then refuse it (400 ActionParameterNotSupported, 405, 501): nothing ran, so
      // the next one is tried. A vendor's "busy" 400 is no refusal of the type: it ends here, to be retried.
      if (err.kind !== 'busy' && (res.status === 400 || res.status === 501 || res.status === 405)) {
        refused.push(`${resetType}: HTTP ${res.status} ${redfishMessages(res.body).text}`.trim())
        continue
      }
      throw err
    }
    throw new PowerError('unsupported', `BMC ${label} refused every reset type for ${action} (${refused.join('; ')})`.slice(0, 400),
      { notRun: true })
  }

  /** A cycle on a BMC without any cycle type. Once the off went out, a failed on leaves the outcome open. */
  async function offThenOn(signal: AbortSignal, call?: CallOptions): Promise<void> {
    await doReset('off', signal, call)
    try {
      await doReset('on', signal, call)
    } catch (err) {
      throw isPowerError(err) ? leftOpen(err, `cycle as off then on: the off was done, then `) : err
    }
  }

  /**
   * PATCH with If-Match (the ETag just read, as the BMC gave it), at most twice: a weak ETag answered 412 goes again
   * in its strong form (as sushy does); otherwise 412/428 reads the ETag again and retries once with it.
   */
  async function patchResource(path: string, body: Json, signal: AbortSignal, what: string, etag: string | null): Promise<RedfishResponse> {
    let res = await client.send('PATCH', path, { signal, body, headers: ifMatch(etag) })
    if (res.status === 412 || res.status === 428) {
      const tag = await etagForRetry(path, etag, res.status, signal, what)
      res = await client.send('PATCH', path, { signal, body, headers: ifMatch(tag) })
    }
    if (res.status === 202) {
      await waitTask(res, what, signal)
      return res
    }
    if (res.status >= 200 && res.status < 300) return res
    throw client.httpError(res, what)
  }

  function ifMatch(tag: string | null): Record<string, string> {
    return tag ? { 'If-Match': tag } : {}
  }

  async function etagForRetry(path: string, sent: string | null, status: number, signal: AbortSignal, what: string): Promise<string | null> {
    if (status === 412 && sent && isWeakEtag(sent)) {
      options.log?.debug({ bmc: label }, 'redfish PATCH with a weak ETag refused; retrying with its strong form')
      return strongEtag(sent)
    }
    const fresh = (await getResource(path, signal)).etag
    if (!fresh) throw new PowerError('rejected', `BMC ${label} wants If-Match for ${what} but sends no ETag`, { notRun: true })
    // The same tag refused twice: this BMC's If-Match is broken; the last try goes without it, as sushy's does.
    return status === 412 && fresh === sent ? null : fresh
  }

  async function patchSystem(body: Json, signal: AbortSignal, what: string, etag: string | null): Promise<RedfishResponse> {
    return patchResource(await findSystem(signal), body, signal, what, etag)
  }

  function checkTarget(o: BootOverride, boot: Json): void {
    const allowed = stringList(boot['BootSourceOverrideTarget@Redfish.AllowableValues'])
    const target = TARGETS[o.device]
    if (o.device !== 'none' && allowed && !allowed.includes(target)) {
      throw new PowerError('unsupported', `BMC ${label} cannot boot-override to ${target} (it allows ${allowed.join(', ')})`,
        { notRun: true })
    }
  }

  async function setBoot(o: BootOverride, signal: AbortSignal): Promise<BootReadback> {
    const system = await getSystem(signal)
    const boot = bootOf(system.body)
    checkTarget(o, boot)
    const { patches, fallback } = bootPatches(o, stringList(boot['BootSourceOverrideEnabled@Redfish.AllowableValues']))
    if (fallback) options.log?.info({ bmc: label }, 'redfish BMC allows no "Once" override; setting Continuous (cleared after the boot)')
    const what = `set boot override ${TARGETS[o.device]}`
    const where = await writeBoot(patches, system, signal, what)
    return verifyBoot(o, where, signal, what)
  }

  /** Sends the Boot PATCH; returns where to read it back (the system, or its settings object). */
  async function writeBoot(patches: Json[], system: SystemDoc, signal: AbortSignal, what: string): Promise<string> {
    // The next form of the PATCH only after a refusal (4xx): a refused PATCH changed nothing.
    const patchBoot = async (path: string, etag: string | null): Promise<void> => {
      for (const [i, patch] of patches.entries()) {
        try {
          await patchResource(path, { Boot: patch }, signal, what, etag)
          return
        } catch (err) {
          if (!isPowerError(err, 'rejected') || i === patches.length - 1) throw err
          options.log?.debug({ bmc: label, refused: Object.keys(patch) }, 'redfish boot override refused; trying its next form')
        }
      }
    }
    // Where Boot is read-only on the system (iDRAC10), the change goes to its @Redfish.Settings object and applies
    // at the next reset; it is then read back from there.
    const where = await findSystem(signal)
    try {
      await patchBoot(where, system.etag)
      return where
    } catch (err) {
      const settings = settingsObjectOf(system.body)
      if (!settings || !(isPowerError(err, 'rejected') || isPowerError(err, 'unsupported'))) throw err
      options.log?.debug({ bmc: label }, 'redfish boot override goes to the settings object')
      const path = client.url(settings).pathname
      await patchBoot(path, null)
      return path
    }
  }

  /**
   * Reads the override back (a few times: some BMCs apply a PATCH a moment later) until every field asked for is
   * there. The one tolerated difference: asked for the next boot only, the BMC keeps it for every boot (sushy-tools,
   * some BMCs). That is returned with `fallback: 'continuous'` and `verified.persistent = false`, and the caller
   * (the power manager) clears the override once the machine has booted from it.
   */
  async function verifyBoot(o: BootOverride, where: string, signal: AbortSignal, what: string): Promise<BootReadback> {
    let doc: Json | null = null
    let mismatches: string[] = []
    for (let read = 0; read < verifyReads; read++) {
      if (read > 0) await sleep(verifyIntervalMs, undefined, { signal }).catch(() => undefined)
      doc = (await getResource(where, signal)).body
      const check = checkBoot(o, bootFields(doc))
      if (check.mismatches.length === 0) {
        if (check.fallback) {
          options.log?.info({ bmc: label }, 'redfish BMC keeps a next-boot override for every boot; accepted as Continuous, to be cleared after the boot')
        }
        return { ...readBoot(doc), verified: check.verified, ...(check.fallback ? { fallback: check.fallback } : {}) }
      }
      mismatches = check.mismatches
    }
    const readback = readBoot(doc!)
    throw new PowerError('not-applied', `BMC ${label} accepted ${what} but it did not stick (read ${readback.raw}): ` +
      mismatches.join('; '), { details: { asked: o, readback, mismatches } })
  }

  async function capabilitiesOf(signal: AbortSignal): Promise<Capability[]> {
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
    caps.push(...bootCapabilities(bootOf(system)))
    if (system.LocationIndicatorActive !== undefined || system.IndicatorLED !== undefined) caps.push('identify')
    if (await hasVirtualMedia(system, signal)) caps.push('media.virtual')
    return caps
  }

  function bootCapabilities(boot: Json): Capability[] {
    if (boot.BootSourceOverrideTarget === undefined) return []
    const caps: Capability[] = []
    const targets = stringList(boot['BootSourceOverrideTarget@Redfish.AllowableValues'])
    if (!targets || targets.includes('Pxe')) caps.push('boot.pxe')
    if (!targets || targets.includes('Hdd')) caps.push('boot.disk')
    if (!targets || targets.includes('Cd')) caps.push('boot.cd')
    // UEFI HTTP boot only where the BMC lists it: it is too new to assume.
    if (targets?.includes('UefiHttp')) caps.push('boot.http')
    if (boot.BootSourceOverrideMode !== undefined) {
      const modes = stringList(boot['BootSourceOverrideMode@Redfish.AllowableValues'])
      if (!modes || modes.includes('UEFI')) caps.push('boot.uefi')
      if (!modes || modes.includes('Legacy')) caps.push('boot.bios')
    }
    const enabled = stringList(boot['BootSourceOverrideEnabled@Redfish.AllowableValues'])
    if (!enabled || enabled.includes('Continuous')) caps.push('boot.persistent')
    caps.push('boot.readback')
    return caps
  }

  /** A VirtualMedia collection on the system (newer schemas) or on the Manager that manages it. */
  async function hasVirtualMedia(system: Json, signal: AbortSignal): Promise<boolean> {
    if (linkOf(system.VirtualMedia)) return true
    const links = (system.Links ?? {}) as Json
    const manager = linkOf((Array.isArray(links.ManagedBy) ? links.ManagedBy : [])[0])
    if (!manager) return false
    const doc = await client.send('GET', manager, { signal }).catch(() => null)
    return doc?.status === 200 && linkOf(doc.body?.VirtualMedia) !== null
  }

  async function mediaContext(signal: AbortSignal): Promise<VirtualMediaContext> {
    return { client, systemPath: await findSystem(signal), label, verifyReads, verifyIntervalMs, taskPollMs, ...(options.log ? { log: options.log } : {}) }
  }

  /** Runs one driver call with its own deadline, turning aborts and stray errors into PowerErrors. */
  async function run<T>(call: CallOptions | undefined, what: string, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    if (closed) throw new PowerError('invalid', `Redfish driver for ${label} is closed`, { notRun: true })
    const { signal, release } = callSignal(call)
    try {
      return await fn(signal)
    } catch (err) {
      if (isPowerError(err)) throw err
      if (signal.aborted) throw new PowerError('timeout', `BMC ${label} did not finish ${what} within ${timeoutMs} ms`, { cause: err })
      throw new PowerError('protocol', `BMC ${label}: ${what} failed: ${(err as Error)?.message ?? String(err)}`.slice(0, 400), { cause: err })
    } finally {
      release()
    }
  }

  return {
    type: 'redfish',

    capabilities(call) {
      return run(call, 'capabilities', capabilitiesOf)
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
        return Promise.reject(new PowerError('invalid', `unknown power action ${String(action)}`, { notRun: true }))
      }
      return run(call, `power ${action}`, (signal) => doReset(action, signal, call))
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
          await patchSystem({ LocationIndicatorActive: on }, signal, 'identify', system.etag)
        } else if (system.body.IndicatorLED !== undefined) {
          await patchSystem({ IndicatorLED: on ? 'Blinking' : 'Off' }, signal, 'identify', system.etag)
        } else {
          throw new PowerError('unsupported', `BMC ${label} has no indicator LED`, { notRun: true })
        }
      })
    },

    insertMedia(url, call) {
      return run(call, 'insert virtual media', async (signal) => {
        await insertVirtualMedia(await mediaContext(signal), url, signal, call?.onSend)
      })
    },

    ejectMedia(call) {
      return run(call, 'eject virtual media', async (signal) => {
        await ejectVirtualMedia(await mediaContext(signal), signal)
      })
    },

    describe() {
      return description
    },

    async close() {
      if (closed) return
      closed = true
      await client.logout(AbortSignal.timeout(Math.min(timeoutMs, 5000)))
      await ownAgent?.close().catch(() => undefined)
    },
  }
}
