// What Talos reports back moves its machine along: MachineStatusEvents and install lines in the kernel log say
// installing / installed / failed (see talos/receivers/lifecycle-hint.ts for which signal means what per version).
// `installed` comes from Talos, never from a guess.
import type { Logger } from '../log.js'
import { kernelLogHintFor, lifecycleHintFor, type KernelLogLine, type LifecycleHint, type TalosEvent, type TalosEventObserver } from '../talos/receivers/index.js'
import type { Inventory } from '../inventory/index.js'
import type { PeerDirectory } from './peers.js'
import type { Lifecycle } from './service.js'

// Events worth a line on the timeline; Talos sends hundreds of task events per boot.
const RECORDED = new Set(['machine.MachineStatusEvent', 'machine.ConfigLoadErrorEvent', 'machine.ConfigValidationErrorEvent', 'machine.AddressEvent'])

export interface TalosFeedback {
  observer: TalosEventObserver
  kernelLine(peer: string, line: KernelLogLine): void
}

export function createTalosFeedback(deps: { inventory: Inventory; lifecycle: Lifecycle; peers: PeerDirectory; log: Logger }): TalosFeedback {
  const { inventory, lifecycle, log } = deps
  const seen = new Set<string>()

  async function apply(machineId: string, hint: LifecycleHint, source: string): Promise<void> {
    const m = await inventory.machines.get(machineId)
    if (!m) return
    if (hint === 'installed' && m.state === 'provisioning') {
      await lifecycle.transition(m.id, 'installed', `Talos reported: ${source}`, { from: 'provisioning' })
    } else if (hint === 'installing') {
      lifecycle.record(m.id, 'boot.talos', `Talos is installing (${source})`, { hint })
    } else if (hint === 'failed') {
      lifecycle.record(m.id, 'boot.talos', `Talos reported a failure: ${source}`, { hint })
    }
  }

  return {
    observer: {
      async event(e: TalosEvent) {
        if (seen.has(e.id)) return // Talos replays from the start of the boot when it reconnects
        seen.add(e.id)
        if (seen.size > 200_000) seen.clear()
        const machineId = await deps.peers.resolve(e.peer)
        const hint = lifecycleHintFor(e)
        if (RECORDED.has(e.type) || hint) {
          const summary = e.type === 'machine.MachineStatusEvent'
            ? `stage ${String(e.data.stage ?? '?')}${e.data.status && typeof e.data.status === 'object' ? ((e.data.status as { ready?: boolean }).ready ? ', ready' : ', not ready') : ''}`
            : JSON.stringify(e.data).slice(0, 200)
          lifecycle.record(machineId, 'boot.talos', `Talos ${e.type.replace('machine.', '')}: ${summary}${machineId ? '' : ` (from ${e.peer})`}`, { type: e.type, peer: e.peer, hint, data: e.data })
        }
        if (hint && machineId) await apply(machineId, hint, `${e.type.replace('machine.', '')} ${String(e.data.stage ?? '')}`.trim())
      },
    },
    kernelLine(peer, line) {
      const hint = kernelLogHintFor(line)
      if (!hint) return
      // A machine that booted Talos from its own disk (no talos.config= on its command line) is installed.
      const lifecycleHint: LifecycleHint | null = hint.kind === 'install' ? hint.hint : hint.source === 'disk' ? 'installed' : null
      if (!lifecycleHint) return
      void (async () => {
        const machineId = await deps.peers.resolve(peer)
        if (machineId) await apply(machineId, lifecycleHint, hint.kind === 'install' ? `kernel log: ${line.msg.slice(0, 120)}` : 'booted Talos from its disk')
      })().catch((err) => log.warn({ err, peer }, 'cannot apply a Talos kernel log hint'))
    },
  }
}
