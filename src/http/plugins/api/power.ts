import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { RackbootError } from '../../../errors.js'
import { confirmedFields, isPowerError, type BootReadback, type PowerManager } from '../../../power/index.js'
import { actor, machineOf, type ApiDeps } from './context.js'
import { errors, MachineParams, Named, Nullable, StringEnum, StringEnumOrNull } from './schemas.js'

const ACTIONS = ['on', 'off', 'soft-off', 'cycle', 'reset', 'pxe', 'netboot', 'media-boot', 'disk', 'clear-override'] as const

const PowerBody = Type.Object({
  action: StringEnum(ACTIONS, {
    description: 'on/off/soft-off/cycle/reset: sent once, then verified by reading the BMC back. pxe: next boot from the ' +
      'network (read back and verified), then power cycle when on or power on when off; netboot: the same by the ' +
      "machine's boot method (pxe, uefi-http, virtual-media); media-boot: rackboot's boot ISO as virtual media; disk: " +
      'next boot from disk; clear-override: the firmware\'s own boot order',
  }),
  mode: Type.Optional(StringEnum(['uefi', 'bios'], { description: 'pxe/netboot/disk: firmware mode of the override; default from the machine' })),
  persistent: Type.Optional(Type.Boolean({ description: 'pxe/netboot/disk: on every boot, not only the next', default: false })),
  ifTooSoon: Type.Optional(StringEnum(['error', 'defer'], { description: 'A reboot within the minimum interval: refuse (409) or wait', default: 'error' })),
}, { additionalProperties: false })

const BootOverrideView = Named('BootOverride', Type.Object({
  device: Type.String(),
  mode: Type.Union([Type.String(), Type.Null()]),
  persistent: Type.Union([Type.Boolean(), Type.Null()]),
  enabled: Type.Boolean(),
  raw: Type.String({ description: 'As the BMC reported it (IPMI boot-flag bytes, Redfish target/enabled/mode)' }),
  verified: Type.Union([Type.Object({ device: Type.Boolean(), mode: Type.Boolean(), persistent: Type.Boolean() }), Type.Null()], {
    description: 'Which fields the read-back confirmed; null for a plain read',
  }),
  fallback: StringEnumOrNull(['continuous'], { description: 'continuous: the BMC keeps the override for every boot; rackboot clears it after the boot' }),
}, { description: 'The next-boot override as the BMC reports it' }))

const PowerView = Named('PowerState', Type.Object({
  machineId: Type.String(),
  state: StringEnumOrNull(['on', 'off']),
  checkedAt: Type.Union([Type.String(), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
  bootOverride: Type.Optional(Nullable(BootOverrideView)),
}, { description: 'Power state asked from the BMC, and its next-boot override' }))

const PowerActionResult = Named('PowerActionResult', Type.Object({
  machineId: Type.String(),
  action: Type.String(),
  /** One line for a person. */
  result: Type.String(),
  /** The state the BMC reported last, and whether it is the one the action leads to. */
  state: StringEnumOrNull(['on', 'off']),
  verified: Type.Boolean(),
  note: Type.Union([Type.String(), Type.Null()]),
  bootOverride: Nullable(BootOverrideView),
}, { description: 'What a power action did, as the BMC showed it' }))

const IdentifyBody = Type.Object({
  on: Type.Optional(Type.Boolean({ default: true, description: 'true: light on; false: off' })),
  seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 3600, description: 'IPMI: how long it stays on (IPMI caps it at 255 s); left out: on until turned off. Redfish has no timer: on until turned off' })),
}, { additionalProperties: false })

const IdentifyResult = Named('IdentifyResult', Type.Object({
  machineId: Type.String(),
  on: Type.Boolean(),
  seconds: Nullable(Type.Integer({ description: 'How long the BMC was asked to keep it on; null: until turned off (or off)' })),
  result: Type.String({ description: 'One line for a person' }),
  note: Nullable(Type.String({ description: 'Something a person should know (a capped or ignored interval)' })),
}, { description: 'What a chassis identify request did' }))

function overrideView(r: BootReadback, checked: boolean) {
  return {
    device: r.device, mode: r.mode, persistent: r.persistent, enabled: r.enabled, raw: r.raw,
    verified: checked ? confirmedFields(r) : null,
    fallback: r.fallback ?? null,
  }
}

/** `GET|POST /api/v1/machines/{id}/power`: power state and actions through the machine's BMC (IPMI or Redfish). */
export const powerRoutes: FastifyPluginAsync<ApiDeps & { power: PowerManager }> = async (base, deps) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()
  const { inventory, power } = deps

  const noBmc = async (id: string) => {
    if (!(await inventory.bmcs.get(id))) throw new RackbootError('RB_ERR_VALIDATION', `machine ${id} has no BMC in the inventory`, { statusCode: 422 })
  }

  app.get('/machines/:id/power', {
    config: { scope: 'read' },
    schema: {
      tags: ['power'], operationId: 'getPower', summary: 'Power state asked from the BMC now, and the next-boot override',
      description: 'A BMC that fails answers 502 (it refused or answered wrongly) or 504 (no answer in time), with its address and message; details.lastKnown is the last state read.',
      params: MachineParams, response: { 200: PowerView, ...errors(404, 409, 422, 502, 504) },
    },
  }, async (request) => {
    const m = machineOf(request)
    await noBmc(m.id)
    try {
      const state = await power.status(m.id)
      const boot = await power.getBootDevice(m.id).catch(() => null)
      return { machineId: m.id, state, checkedAt: new Date().toISOString(), error: null, bootOverride: boot ? overrideView(boot, false) : null }
    } catch (err) {
      if (!isPowerError(err)) throw err
      const known = power.lastKnown(m.id)
      throw new RackbootError('RB_ERR_BMC', err.message, {
        statusCode: err.statusCode, cause: err,
        details: { kind: err.kind, lastKnown: known ? { state: known.state, at: new Date(known.at).toISOString() } : null },
      })
    }
  })

  app.post('/machines/:id/power', {
    config: { scope: 'provision' },
    schema: {
      tags: ['power'], operationId: 'powerAction', summary: 'Power actions, sent once and verified; PXE/network/virtual media boot now; next boot disk',
      description: 'The answer comes once the BMC reports the result (settings power.verifyTimeoutMs). 504 with details.kind ' +
        '"unknown-outcome": the request left without an answer and the read-back could not settle it; it was not re-sent. ' +
        '504 "not-verified": the BMC accepted it and never showed the result. 502: the BMC refused (its message is quoted).',
      params: MachineParams, body: PowerBody,
      response: { 200: PowerActionResult, ...errors(404, 409, 422, 501, 502, 503, 504) },
    },
  }, async (request) => {
    const m = machineOf(request)
    await noBmc(m.id)
    const b = request.body
    const ifTooSoon = b.ifTooSoon ?? 'error'
    const mode = b.mode ?? (m.firmware === 'bios' ? 'bios' : 'uefi')
    const persistent = b.persistent ?? false
    deps.lifecycle.record(m.id, 'power', `power ${b.action} requested by ${actor(request)}`, { action: b.action, requested: true })
    try {
      switch (b.action) {
        case 'pxe': case 'netboot': case 'media-boot': {
          const options = { mode, persistent, ifTooSoon }
          const r = b.action === 'pxe' ? await power.pxeBootNow(m.id, options)
            : await power.netbootNow(m.id, b.action === 'media-boot' ? { ...options, method: 'virtual-media' } : options)
          return {
            machineId: m.id, action: b.action, state: 'on' as const, verified: r.verified, note: r.note, bootOverride: overrideView(r.readback, true),
            result: `next boot ${r.readback.device}${r.readback.mode && confirmedFields(r.readback).mode ? ` ${r.readback.mode}` : ''} verified (${r.method}); was ${r.previous}, ${r.action === 'cycle' ? 'power cycled' : 'powered on'}`,
          }
        }
        case 'disk': case 'clear-override': {
          const r = await power.setBootDevice(m.id, b.action === 'disk' ? { device: 'disk', mode, persistent } : { device: 'none' })
          return {
            machineId: m.id, action: b.action, state: null, verified: true, note: null, bootOverride: overrideView(r, true),
            result: b.action === 'disk' ? `next boot disk${r.mode && confirmedFields(r).mode ? ` ${r.mode}` : ''} verified` : 'boot override cleared (verified)',
          }
        }
        default: {
          const o = await power.power(m.id, b.action, { ifTooSoon })
          return {
            machineId: m.id, action: b.action, state: o.state, verified: o.verified, note: o.note, bootOverride: null,
            result: `${o.sent === b.action ? b.action : `${o.sent} (instead of ${b.action})`}: done, ${o.state ?? 'state unknown'}${o.verified ? ' (verified)' : ''}`,
          }
        }
      }
    } catch (err) {
      if (isPowerError(err, 'too-soon')) throw new RackbootError('RB_ERR_CONFLICT', err.message, { details: err.details })
      if (isPowerError(err)) {
        // The BMC's own failure, named and quoted: 502 refused or answered wrongly, 504 no answer or no result in time.
        throw new RackbootError('RB_ERR_BMC', `power ${b.action} on ${m.name ?? m.id}: ${err.message}`, {
          statusCode: err.statusCode, cause: err, details: { kind: err.kind, ...(err.details as Record<string, unknown> ?? {}) },
        })
      }
      throw err
    }
  })

  app.post('/machines/:id/identify', {
    config: { scope: 'provision' },
    // No body means on, until turned off.
    preValidation: async (request) => {
      if (request.body === undefined || request.body === null) request.body = {}
    },
    schema: {
      tags: ['power'], operationId: 'identifyMachine', summary: 'Chassis identify light on (for a while) or off, through the BMC',
      description: 'IPMI: Chassis Identify with the interval (at most 255 s; left out, on until turned off). Redfish: LocationIndicatorActive '
        + '(or IndicatorLED Blinking), which has no timer. 409 when the machine has no BMC. A BMC that fails answers 502 (refused or '
        + 'answered wrongly), 504 (no answer in time) or 501 (it has no identify light), with its address and message.',
      params: MachineParams, body: IdentifyBody,
      response: { 200: IdentifyResult, ...errors(400, 404, 409, 501, 502, 503, 504) },
    },
  }, async (request) => {
    const m = machineOf(request)
    const bmc = await inventory.bmcs.get(m.id)
    const label = m.name ?? m.id
    if (!bmc) {
      throw new RackbootError('RB_ERR_CONFLICT', `machine ${label} has no BMC in the inventory: nothing to blink (set one with PUT /api/v1/machines/${m.id}/bmc)`, {
        details: { id: m.id, reason: 'no-bmc' },
      })
    }
    const on = request.body.on ?? true
    const asked = on ? request.body.seconds ?? null : null
    let seconds = asked
    let note: string | null = null
    if (asked !== null && bmc.type === 'ipmi' && asked > 255) {
      seconds = 255
      note = `IPMI identify lasts at most 255 s: asked for ${asked} s, on for 255 s`
    } else if (asked !== null && bmc.type === 'redfish') {
      seconds = null
      note = `Redfish has no identify timer: on until turned off (asked for ${asked} s)`
    }
    deps.lifecycle.record(m.id, 'power', `identify ${on ? 'on' : 'off'} requested by ${actor(request)}`, { action: 'identify', on, seconds, requested: true })
    try {
      await power.identify(m.id, on, seconds ?? undefined)
    } catch (err) {
      if (isPowerError(err, 'no-bmc')) {
        throw new RackbootError('RB_ERR_CONFLICT', `machine ${label}: ${err.message}`, { cause: err, details: { id: m.id, reason: 'no-bmc' } })
      }
      if (isPowerError(err)) {
        throw new RackbootError('RB_ERR_BMC', `identify ${on ? 'on' : 'off'} on ${label}: ${err.message}`, {
          statusCode: err.statusCode, cause: err, details: { kind: err.kind, ...(err.details as Record<string, unknown> ?? {}) },
        })
      }
      throw err
    }
    return {
      machineId: m.id, on, seconds, note,
      result: on ? `identify light on${seconds !== null ? ` for ${seconds} s` : ' until turned off'} (${bmc.type} ${bmc.address})` : `identify light off (${bmc.type} ${bmc.address})`,
    }
  })
}
