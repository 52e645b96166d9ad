import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { RackbootError } from '../../../errors.js'
import type { PowerManager } from '../../../power/index.js'
import { actor, findMachine, type ApiDeps } from './context.js'
import { errors, MachineParams } from './schemas.js'

const PowerBody = Type.Object({
  action: Type.Union(['on', 'off', 'soft-off', 'cycle', 'reset', 'pxe'].map((a) => Type.Literal(a)), {
    description: 'pxe: next boot from the network (read back and verified), then power cycle when on or power on when off',
  }),
  mode: Type.Optional(Type.Union([Type.Literal('uefi'), Type.Literal('bios')], { description: 'pxe: firmware mode of the override; default from the machine' })),
  persistent: Type.Optional(Type.Boolean({ description: 'pxe: on every boot, not only the next', default: false })),
  ifTooSoon: Type.Optional(Type.Union([Type.Literal('error'), Type.Literal('defer')], { description: 'A reboot within the minimum interval: refuse (409) or wait', default: 'error' })),
}, { additionalProperties: false })

const PowerView = Type.Object({
  machineId: Type.String(),
  state: Type.Union([Type.Literal('on'), Type.Literal('off'), Type.Null()]),
  checkedAt: Type.Union([Type.String(), Type.Null()]),
  error: Type.Union([Type.String(), Type.Null()]),
  bootOverride: Type.Optional(Type.Union([Type.Object({ device: Type.String(), mode: Type.Union([Type.String(), Type.Null()]), persistent: Type.Union([Type.Boolean(), Type.Null()]), enabled: Type.Boolean() }), Type.Null()])),
})

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
      params: MachineParams, response: { 200: PowerView, ...errors(404, 422, 503) },
    },
  }, async (request) => {
    const m = await findMachine(inventory, request.params.id)
    await noBmc(m.id)
    try {
      const state = await power.status(m.id)
      const boot = await power.getBootDevice(m.id).catch(() => null)
      return {
        machineId: m.id, state, checkedAt: new Date().toISOString(), error: null,
        bootOverride: boot ? { device: boot.device, mode: boot.mode, persistent: boot.persistent, enabled: boot.enabled } : null,
      }
    } catch (err) {
      const known = power.lastKnown(m.id)
      throw new RackbootError('RB_ERR_INTERNAL', `BMC of ${m.id} did not answer: ${(err as Error).message}`, {
        statusCode: 503, details: { lastKnown: known ? { state: known.state, at: known.at === undefined ? null : new Date(known.at).toISOString() } : null },
      })
    }
  })

  app.post('/machines/:id/power', {
    config: { scope: 'provision' },
    schema: {
      tags: ['power'], operationId: 'powerAction', summary: 'Power on/off/cycle/reset, or PXE boot now (verified override + cycle/on)',
      params: MachineParams, body: PowerBody,
      response: { 200: Type.Object({ machineId: Type.String(), action: Type.String(), result: Type.String() }), ...errors(404, 409, 422, 503) },
    },
  }, async (request) => {
    const m = await findMachine(inventory, request.params.id)
    await noBmc(m.id)
    const b = request.body
    const ifTooSoon = b.ifTooSoon ?? 'error'
    deps.lifecycle.record(m.id, 'power', `power ${b.action} requested by ${actor(request)}`, { action: b.action })
    try {
      if (b.action === 'pxe') {
        const mode = b.mode ?? (m.firmware === 'bios' ? 'bios' : 'uefi')
        const r = await power.pxeBootNow(m.id, { mode, persistent: b.persistent ?? false, ifTooSoon })
        return { machineId: m.id, action: b.action, result: `next boot ${r.readback.device} ${r.readback.mode ?? ''} verified; was ${r.previous}, ${r.action === 'cycle' ? 'power cycled' : 'powered on'}`.replace('  ', ' ') }
      }
      await power.power(m.id, b.action as 'on' | 'off' | 'soft-off' | 'cycle' | 'reset', { ifTooSoon })
      return { machineId: m.id, action: b.action, result: 'done' }
    } catch (err) {
      const e = err as Error & { kind?: string; statusCode?: number }
      if (e.kind === 'too-soon') throw new RackbootError('RB_ERR_CONFLICT', e.message)
      throw new RackbootError('RB_ERR_INTERNAL', `power ${b.action} on ${m.id} failed: ${e.message}`, { statusCode: e.statusCode && e.statusCode >= 500 ? 503 : 503, details: { kind: e.kind ?? null } })
    }
  })
}
