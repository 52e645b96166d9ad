import { chooseClass } from '../../matching/index.js'
import { resolveProfile } from '../../lifecycle/index.js'
import { withContext } from '../context.js'
import { printJson, type GlobalOptions } from '../common.js'
import { printClassTest, printClasses, type ClassTestView } from '../classes.js'
import { installDiskFor } from '../install-disk.js'
import { resolveMachine } from '../resolve.js'

// `rackboot classes ... --data-dir DIR`: on a data directory's database.

export async function list(o: GlobalOptions): Promise<number> {
  return withContext(o, async ({ inventory }) => {
    const classes = await inventory.classes.list()
    if (o.json) printJson(classes)
    else printClasses(classes)
    return 0
  }, { create: false })
}

export async function test(ref: string, o: GlobalOptions): Promise<number> {
  return withContext(o, async ({ inventory }) => {
    const machine = await resolveMachine(inventory, ref)
    const choice = chooseClass(machine, await inventory.classes.list())
    const resolved = await resolveProfile(inventory, machine)
    const disk = resolved.profile ? installDiskFor(machine, resolved.profile) : null
    const view: ClassTestView = {
      machineId: machine.id, machineName: machine.name, state: machine.state, chosen: choice.chosen?.name ?? null, tiedWith: choice.tiedWith,
      profile: resolved.profile?.name ?? machine.profile ?? null, reason: resolved.reason,
      installDisk: disk ? { selector: disk.selector, disk: disk.disk, reason: disk.reason } : null,
      classes: choice.all,
    }
    if (o.json) printJson(view)
    else printClassTest(view)
    return 0
  }, { create: false })
}
