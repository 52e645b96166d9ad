import { chooseClass } from '../matching/index.js'
import { resolveProfile } from '../lifecycle/index.js'
import { describeDiskSelector } from './install-disk.js'
import { printable, renderTable } from './table.js'
import { parse, printJson, UsageError, withContext } from './context.js'
import { resolveMachine } from './resolve.js'

export const CLASSES_USAGE = `rackboot classes <command>

  list [--json]            classes with their selectors and profiles
  test MACHINE [--json]    which classes match this machine, selector by selector, and which one wins`

export async function classesCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  const { values, positionals } = parse(rest, {})
  if (!sub || values.help) {
    console.log(CLASSES_USAGE)
    return sub ? 0 : 2
  }
  return withContext(values, async ({ inventory }) => {
    switch (sub) {
      case 'list': {
        const classes = await inventory.classes.list()
        if (values.json) printJson(classes)
        else console.log(renderTable(classes, [
          { header: 'name', value: (c) => c.name },
          { header: 'profile', value: (c) => c.profile },
          { header: 'selectors', value: (c) => c.selectors.join(' AND ') },
          { header: 'patches', value: (c) => c.patches.length || '' },
        ]))
        return 0
      }
      case 'test': {
        const [ref] = positionals
        if (!ref) throw new UsageError('classes test needs a MACHINE')
        const machine = await resolveMachine(inventory, ref)
        const choice = chooseClass(machine, await inventory.classes.list())
        const resolved = await resolveProfile(inventory, machine)
        if (values.json) {
          printJson({ machine: machine.id, chosen: choice.chosen?.name ?? null, tiedWith: choice.tiedWith, profile: resolved.profile?.name ?? null, installDisk: resolved.profile?.installDisk ?? null, reason: resolved.reason, classes: choice.all })
          return 0
        }
        console.log(`machine ${printable(machine.name ?? machine.id)} (${machine.state})\n`)
        const rows = choice.all.flatMap((c) => c.selectors.length === 0
          ? [{ cls: c.name, result: 'no selectors: never matches', selector: '' }]
          : c.selectors.map((s, i) => ({ cls: i === 0 ? c.name : '', result: s.error ? `error: ${s.error}` : s.ok ? 'yes' : 'no', selector: s.source })))
        console.log(renderTable(rows, [
          { header: 'class', value: (r) => r.cls },
          { header: 'selector', value: (r) => r.selector },
          { header: 'holds', value: (r) => r.result },
        ]))
        const matched = choice.all.filter((c) => c.matched).map((c) => `${c.name} (${c.specificity})`)
        console.log(`\nmatching classes (specificity): ${matched.join(', ') || 'none'}`)
        console.log(`chosen: ${choice.chosen ? choice.chosen.name : 'none'}${choice.tiedWith.length ? ` (tied with ${choice.tiedWith.join(', ')}; the first by name wins)` : ''}`)
        console.log(`profile: ${resolved.profile?.name ?? 'none'} (${resolved.reason})`)
        if (resolved.profile) console.log(`install disk: ${describeDiskSelector(resolved.profile.installDisk)}`)
        return 0
      }
      default:
        throw new UsageError(`unknown classes command '${sub}'\n\n${CLASSES_USAGE}`)
    }
  })
}
