import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type, { type Static } from 'typebox'
import { RackbootError } from '../../../errors.js'
import {
  adoptedBmcAddress, applyBmcChanges, BMC_DRAFT_DEFAULTS, bmcChangedFields, bmcDraftOf, bmcHost, bmcInputOf,
  refuseBmcProblems, reportedBmcAddressProblem, type Bmc, type BmcDraft, type IpmiCipherSuite, type Machine,
} from '../../../inventory/index.js'
import { actor, machineOf, type ApiDeps } from './context.js'
import { BmcStateSchema, bmcStateView, errors, MachineParams, Named, Nullable, StringEnum, StringEnumOrNull } from './schemas.js'

// A machine's BMC through the API (issue 18): read without secrets, set whole (PUT, or POST as the issue names
// it), change some fields (PATCH, null clears), remove, and adopt the address the discovery agent reported. The
// checks are the inventory files' (inventory/files/bmc-settings.ts): the same value is refused with the same words.

const Suite = Type.Unsafe<IpmiCipherSuite>({ type: 'integer', enum: [17, 3] })

/** The settable fields besides type and address, each optional; secrets are write-only (never answered or recorded). */
const Fields = {
  port: Type.Optional(Nullable(Type.Integer({ minimum: 1, maximum: 65535, description: 'null: 623 (IPMI), or the URL\'s port or 443 (Redfish)' }))),
  username: Type.Optional(Nullable(Type.String({ maxLength: 64 }))),
  password: Type.Optional(Nullable(Type.String({ maxLength: 1024, writeOnly: true, description: 'Write-only. Left out: the stored one is kept; null removes it' }))),
  kg: Type.Optional(Nullable(Type.String({ maxLength: 64, writeOnly: true, description: 'IPMI K_G in hex, up to 20 bytes. Write-only. Left out: kept; null removes it' }))),
  insecure: Type.Optional(Nullable(Type.Boolean({ description: 'Redfish TLS: do not verify the certificate (explicit, per BMC)' }))),
  fingerprint: Type.Optional(Nullable(Type.String({ maxLength: 128, description: 'Redfish TLS: sha256 of the certificate to pin, 64 hex digits (colons allowed)' }))),
  systemId: Type.Optional(Nullable(Type.String({ minLength: 1, maxLength: 512, description: 'Redfish: the system to drive, its Id or /redfish/v1/Systems/<id>' }))),
  ca: Type.Optional(Nullable(Type.String({ maxLength: 65536, description: 'Redfish TLS: CA certificate(s), PEM' }))),
  auth: Type.Optional(StringEnumOrNull(['auto', 'session', 'basic'], { description: 'Redfish authentication; null: auto' })),
  cipherSuites: Type.Optional(Nullable(Type.Array(Suite, { minItems: 1, maxItems: 2, uniqueItems: true, description: 'IPMI: cipher suites in the order tried (17, 3)' }))),
  privilege: Type.Optional(StringEnumOrNull(['user', 'operator', 'administrator'], { description: 'IPMI: session privilege; null: administrator' })),
  bootVerify: Type.Optional(StringEnumOrNull(['strict', 'device'], { description: 'IPMI: boot override read-back; null: the settings\' default' })),
  bootMethod: Type.Optional(StringEnumOrNull(['pxe', 'uefi-http', 'virtual-media'], { description: 'How the lifecycle network-boots the machine; null: pxe' })),
}
const TypeField = StringEnum(['ipmi', 'redfish'])
const AddressField = Type.String({ minLength: 1, maxLength: 512, description: 'Host or IP; Redfish also https://host[:port], with /redfish/v1/Systems/<id> to name the system' })

const BmcPutBody = Type.Object({ type: TypeField, address: AddressField, ...Fields }, {
  additionalProperties: false, description: 'A BMC, whole: settings left out take their defaults (secrets left out are kept)',
})

const BmcPatchBody = Type.Object({ type: Type.Optional(TypeField), address: Type.Optional(AddressField), ...Fields }, {
  additionalProperties: false, minProperties: 1, description: 'The fields to change; null clears one (back to its default)',
})

const BmcAdoptBody = Type.Object({
  type: Type.Optional(TypeField),
  port: Fields.port,
  username: Fields.username,
  password: Fields.password,
}, { additionalProperties: false, description: 'Needed when the machine has no BMC record yet (type, credentials); otherwise optional' })

const AdoptResponse = Named('BmcAdoptResult', Type.Object({
  changed: Type.Boolean({ description: 'false when the BMC already had the reported address' }),
  previous: Nullable(Type.String({ description: 'The address before, null when there was no BMC record' })),
  reported: Type.String({ description: 'The address the discovery agent reported' }),
  bmc: BmcStateSchema,
}, { description: 'The BMC after adopting the reported address' }))

type PutBody = Static<typeof BmcPutBody>

export const bmcRoutes: FastifyPluginAsync<ApiDeps> = async (base, deps) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()
  const { inventory, lifecycle } = deps

  const bmcOf = async (m: Machine): Promise<Bmc> => {
    const b = await inventory.bmcs.get(m.id)
    if (!b) throw new RackbootError('RB_ERR_NOT_FOUND', `machine ${m.name ?? m.id} has no BMC: PUT one first`, { details: { entity: 'bmc', key: m.id } })
    return b
  }

  /** Stores the draft and puts one line on the machine's timeline (field names, never a secret). */
  const save = async (m: Machine, before: Bmc | null, d: BmcDraft, how: string, who: string): Promise<Bmc> => {
    const after = await inventory.bmcs.put(m.id, bmcInputOf(d))
    const changed = bmcChangedFields(before, after, d)
    if (!before || changed.length > 0) {
      lifecycle.record(m.id, 'machine.updated', `BMC ${before ? how : 'added'} by ${who}: ${after.type} ${after.address}${before ? ` (${changed.join(', ')})` : ''}`, {
        bmc: { type: after.type, address: after.address }, fields: changed,
      })
    }
    return after
  }

  app.get('/machines/:id/bmc', {
    config: { scope: 'read' },
    schema: {
      tags: ['bmc'], operationId: 'getBmc', summary: 'The machine\'s BMC: access, settings and last power state (no secrets)',
      params: MachineParams, response: { 200: BmcStateSchema, ...errors(400, 404, 409) },
    },
  }, async (request) => {
    const m = machineOf(request)
    return bmcStateView(await bmcOf(m))
  })

  const put = async (request: FastifyRequest<{ Params: { id: string }; Body: PutBody }>, reply: FastifyReply) => {
    const m = machineOf(request)
    const before = await inventory.bmcs.get(m.id)
    // Replaced whole; the stored secrets and where they came from stay unless given (they cannot be read back).
    const kept: BmcDraft = {
      type: request.body.type, address: request.body.address, ...BMC_DRAFT_DEFAULTS,
      passwordFrom: before?.credentialsRef ?? null,
      kgFrom: before && request.body.type === 'ipmi' ? before.kgRef : null,
      ...(before?.hasKg && request.body.type !== 'ipmi' ? { kg: null } : {}),
    }
    const { draft, problems } = applyBmcChanges(kept, request.body, before && before.type === request.body.type ? before : null)
    refuseBmcProblems(problems)
    const after = await save(m, before, draft, 'replaced', actor(request))
    reply.status(before ? 200 : 201)
    return bmcStateView(after)
  }

  const putSchema = (operationId: string, summary: string) => ({
    config: { scope: 'admin' as const },
    schema: {
      tags: ['bmc'], operationId, summary,
      description: 'Settings of the other BMC type are refused. Secrets are write-only: left out, the stored ones stay; null removes them.',
      params: MachineParams, body: BmcPutBody, response: { 200: BmcStateSchema, 201: BmcStateSchema, ...errors(400, 404, 409) },
    },
  })
  app.put('/machines/:id/bmc', putSchema('putBmc', 'Set the machine\'s BMC, whole (created or replaced)'), put)
  app.post('/machines/:id/bmc', putSchema('postBmc', 'Same as PUT /machines/{id}/bmc'), put)

  app.patch('/machines/:id/bmc', {
    config: { scope: 'admin' },
    schema: {
      tags: ['bmc'], operationId: 'patchBmc', summary: 'Change some of the BMC\'s fields (null clears one)',
      description: 'A type change drops the stored settings of the other type.',
      params: MachineParams, body: BmcPatchBody, response: { 200: BmcStateSchema, ...errors(400, 404, 409) },
    },
  }, async (request) => {
    const m = machineOf(request)
    const before = await bmcOf(m)
    const { draft, problems } = applyBmcChanges(bmcDraftOf(before), request.body, before)
    refuseBmcProblems(problems)
    return bmcStateView(await save(m, before, draft, 'changed', actor(request)))
  })

  app.delete('/machines/:id/bmc', {
    config: { scope: 'admin' },
    schema: {
      tags: ['bmc'], operationId: 'deleteBmc', summary: 'Remove the machine\'s BMC (and its stored secrets)',
      params: MachineParams, response: { 204: Type.Null({ description: 'Removed' }), ...errors(400, 404, 409) },
    },
  }, async (request, reply) => {
    const m = machineOf(request)
    const before = await bmcOf(m)
    await inventory.bmcs.remove(m.id)
    lifecycle.record(m.id, 'machine.updated', `BMC removed by ${actor(request)}: ${before.type} ${before.address}`, { bmc: null })
    return reply.status(204).send(null)
  })

  app.post('/machines/:id/bmc/adopt', {
    config: { scope: 'admin' },
    // Adopting into an existing record needs no body.
    preValidation: async (request) => {
      if (request.body === undefined || request.body === null) request.body = {}
    },
    schema: {
      tags: ['bmc'], operationId: 'adoptBmc', summary: 'Set the BMC address to the one the discovery agent reported',
      description: 'The reported address comes from the machine and is sent the BMC credentials from then on: adopt what you expect. '
        + 'A machine without a BMC record needs type (and username, password). 409 when the agent reported no usable address.',
      params: MachineParams, body: BmcAdoptBody, response: { 200: AdoptResponse, ...errors(400, 404, 409, 422) },
    },
  }, async (request) => {
    const m = machineOf(request)
    const reported = m.hardware?.bmc?.address
    const why = reportedBmcAddressProblem(reported)
    if (why) throw new RackbootError('RB_ERR_CONFLICT', `machine ${m.name ?? m.id}: ${why}; nothing to adopt`, { details: { reported: reported ?? null } })
    const before = await inventory.bmcs.get(m.id)
    const body = request.body ?? {}
    const type = body.type ?? before?.type
    if (!type) {
      throw new RackbootError('RB_ERR_VALIDATION', `machine ${m.name ?? m.id} has no BMC record yet: give type (ipmi or redfish), and username and password, to adopt ${reported}`, {
        statusCode: 422, details: { reported },
      })
    }
    const address = adoptedBmcAddress(type === before?.type ? before.address : null, reported!)
    const baseDraft: BmcDraft = before ? bmcDraftOf(before) : { type, address, ...BMC_DRAFT_DEFAULTS }
    const { draft, problems } = applyBmcChanges(baseDraft, { ...body, type, address }, before)
    refuseBmcProblems(problems)
    const unchanged = before && bmcHost(before.address) === bmcHost(draft.address) && Object.keys(body).length === 0
    if (unchanged) return { changed: false, previous: before.address, reported: reported!, bmc: bmcStateView(before) }
    const after = await save(m, before, draft, `address adopted from the agent's report${before ? ` (was ${before.address})` : ''}`, actor(request))
    return { changed: !before || before.address !== after.address, previous: before?.address ?? null, reported: reported!, bmc: bmcStateView(after) }
  })
}
