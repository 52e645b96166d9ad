import type { FastifyPluginAsync } from 'fastify'
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import Type from 'typebox'
import { resolveProfile } from '../../../lifecycle/index.js'
import { chooseClass } from '../../../matching/index.js'
import { installDiskOf } from '../../../talos/index.js'
import { machineOf, type ApiDeps } from './context.js'
import { errors, MachineParams, MachineStateRef, Named, Nullable } from './schemas.js'

// `GET /machines/{id}/class-match`: which class and profile a machine gets and why (`rackboot classes test`).

const SelectorResultSchema = Named('SelectorResult', Type.Object({
  source: Type.String({ description: 'The selector expression' }),
  ok: Type.Boolean({ description: 'It holds for this machine' }),
  error: Nullable(Type.String({ description: 'Why it does not compile (it then never holds)' })),
}, { description: 'One selector of a class, evaluated against a machine' }))

const ClassEvaluationSchema = Named('ClassEvaluation', Type.Object({
  name: Type.String(),
  profile: Nullable(Type.String()),
  matched: Type.Boolean({ description: 'Every selector holds (a class with none never matches)' }),
  specificity: Type.Integer({ description: 'How many selectors it has: the most specific matching class wins' }),
  selectors: Type.Array(SelectorResultSchema),
}, { description: 'A class evaluated against a machine' }))

const ClassMatchSchema = Named('ClassMatch', Type.Object({
  machineId: Type.String(),
  machineName: Nullable(Type.String()),
  state: MachineStateRef,
  chosen: Nullable(Type.String({ description: 'The class the machine belongs to: of the matching classes, the one with the most selectors (a tie broken by name)' })),
  tiedWith: Type.Array(Type.String(), { description: 'Matching classes as specific as the chosen one (the name broke the tie)' }),
  matching: Type.Array(Type.String(), { description: 'Every matching class, most specific first' }),
  profile: Nullable(Type.String({ description: 'The profile the machine installs: its own, else the chosen class\'s' })),
  profileExists: Type.Boolean({ description: 'false when the profile named does not exist (the machine would not boot it)' }),
  reason: Type.String({ description: 'How the profile was chosen, in words' }),
  installDisk: Nullable(Type.Object({
    selector: Type.Unknown({ description: 'The profile\'s install-disk selector (null or {}: the smallest fixed disk)' }),
    disk: Nullable(Type.String({ description: 'The device the selector picks from the reported disks; null when none fits or none were reported' })),
    reason: Nullable(Type.String()),
  }, { description: 'The install disk the profile picks, when there is a profile' })),
  classes: Type.Array(ClassEvaluationSchema, { description: 'Every class, selector by selector' }),
}, { description: 'Which class and profile a machine gets, and why' }))

export const classMatchRoutes: FastifyPluginAsync<ApiDeps> = async (base, deps) => {
  const app = base.withTypeProvider<TypeBoxTypeProvider>()
  const { inventory } = deps

  app.get('/machines/:id/class-match', {
    config: { scope: 'read' },
    schema: {
      tags: ['classes'], operationId: 'machineClassMatch', summary: 'Which class and profile the machine gets, selector by selector, and why',
      params: MachineParams, response: { 200: ClassMatchSchema, ...errors(400, 404, 409) },
    },
  }, async (request) => {
    const m = machineOf(request)
    const choice = chooseClass(m, await inventory.classes.list())
    const resolved = await resolveProfile(inventory, m)
    const profileName = m.profile ?? resolved.machineClass?.profile ?? null
    let installDisk = null
    if (resolved.profile) {
      const pick = installDiskOf(m, resolved.profile)
      installDisk = {
        selector: resolved.profile.installDisk,
        disk: pick?.ok ? pick.path : null,
        reason: !pick ? 'chosen once the machine reports its disks' : pick.ok ? null : pick.reason,
      }
    }
    return {
      machineId: m.id, machineName: m.name, state: m.state,
      chosen: choice.chosen?.name ?? null,
      tiedWith: choice.tiedWith,
      matching: choice.all.filter((c) => c.matched).sort((a, b) => b.specificity - a.specificity || a.name.localeCompare(b.name)).map((c) => c.name),
      profile: profileName,
      profileExists: resolved.profile !== null,
      reason: profileName && !resolved.profile ? `${resolved.reason}, which does not exist` : resolved.reason,
      installDisk,
      classes: choice.all.map((c) => ({ ...c, selectors: c.selectors.map((s) => ({ source: s.source, ok: s.ok, error: s.error ?? null })) })),
    }
  })
}
