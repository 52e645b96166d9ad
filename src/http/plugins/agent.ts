import type { FastifyPluginAsync } from 'fastify'
import Type from 'typebox'
import { RackbootError } from '../../errors.js'
import type { AgentReport, BootService } from '../../lifecycle/index.js'

const Str = (max = 256) => Type.Optional(Type.String({ maxLength: max }))
const Num = Type.Optional(Type.Number({ minimum: 0 }))

// Loose where the hardware is messy (vendors put anything in SMBIOS), strict on sizes and shapes.
const ReportBody = Type.Object({
  agentVersion: Str(32),
  machineId: Str(64),
  smbios: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 256 }))),
  cpu: Type.Optional(Type.Object({ model: Str(), sockets: Num, cores: Num, threads: Num })),
  memory: Type.Optional(Type.Object({ totalBytes: Type.Number({ minimum: 0 }) })),
  disks: Type.Optional(Type.Array(Type.Object({
    name: Type.String({ maxLength: 64 }), model: Str(), serial: Str(), sizeBytes: Type.Number({ minimum: 0 }),
    rotational: Type.Optional(Type.Boolean()), type: Type.Optional(Type.String({ maxLength: 16 })), wwn: Str(),
  }), { maxItems: 512 })),
  nics: Type.Optional(Type.Array(Type.Object({
    mac: Type.String({ maxLength: 64 }), name: Str(64), driver: Str(64), link: Type.Optional(Type.Boolean()), speedMbps: Type.Optional(Type.Number()),
  }), { maxItems: 512 })),
  bmc: Type.Optional(Type.Object({ address: Str(64), mac: Str(64) })),
  wiped: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 512 })),
  wipeFailed: Type.Optional(Type.Array(Type.String({ maxLength: 64 }), { maxItems: 512 })),
})

/** `POST /api/v1/agent/report`: the discovery agent's hardware report, authorised by its per-boot token. */
export const agentRoutes: FastifyPluginAsync<{ boot: BootService }> = async (app, { boot }) => {
  app.post<{ Body: Type.Static<typeof ReportBody> }>('/api/v1/agent/report', { schema: { body: ReportBody } }, async (request) => {
    const auth = request.headers.authorization ?? ''
    const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : ''
    if (!token) throw new RackbootError('RB_ERR_UNAUTHORIZED', 'the agent report needs its boot token (Authorization: Bearer ...)')
    const machine = await boot.agentReport(token, request.ip, request.body as AgentReport)
    return { machineId: machine.id, state: machine.state }
  })
}
