// What Talos reports back moves its machine along: MachineStatusEvents and install lines in the kernel log say
// installing / installed / failed (see talos/receivers/lifecycle-hint.ts for which signal means what per version).
// `installed` comes from Talos, never from a guess, and only from the address that fetched the machine's config in
// its current boot: anyone else on the segment can send the same bytes.
import type { Logger } from '../log.js'
import { kernelLogHintFor, lifecycleHintFor, type KernelLogLine, type LifecycleHint, type TalosEvent, type TalosEventObserver } from '../talos/receivers/index.js'
import type { Inventory } from '../inventory/index.js'
import type { PeerDirectory } from './peers.js'
import type { Lifecycle } from './service.js'
import { createSecurityEvents, type SecurityEvents } from './security-events.js'
import type { Clock } from './service.js'
import { systemClock } from './service.js'

// Events worth a line on the timeline; Talos sends hundreds of task events per boot.
const RECORDED = new Set(['machine.MachineStatusEvent', 'machine.ConfigLoadErrorEvent', 'machine.ConfigValidationErrorEvent', 'machine.AddressEvent'])

export interface TalosFeedback {
  observer: TalosEventObserver
  /** A kernel log line; only lines over TCP (a handshake, not a spoofable datagram) may move a machine's state. */
  kernelLine(peer: string, line: KernelLogLine): void
}

export interface TalosFeedbackDeps {
  inventory: Inventory
  lifecycle: Lifecycle
  peers: PeerDirectory
  log: Logger
  security?: SecurityEvents
  clock?: Clock
}

export function createTalosFeedback(deps: TalosFeedbackDeps): TalosFeedback {
  const { inventory, lifecycle, log } = deps
  const clock = deps.clock ?? systemClock
  const security = deps.security ?? createSecurityEvents({ lifecycle, log })
  const seen = new Set<string>()

  /** The machine whose config this address fetched in the machine's current boot: the only one it may move. */
  async function boundTo(peer: string): Promise<string | null> {
    return (await inventory.bootTokens.fetchedFrom(peer, clock.now()))?.machineId ?? null
  }

  async function apply(peer: string, machineId: string, hint: LifecycleHint, source: string): Promise<void> {
    const m = await inventory.machines.get(machineId)
    if (!m) return
    if (hint === 'installed' && m.state === 'provisioning') {
      if ((await boundTo(peer)) !== m.id) {
        security.record('feedback-unbound', m.id, 'boot.talos', `"installed" from ${peer} ignored: not the address that fetched this machine's config in its current boot`, { clientIp: peer, hint })
        return
      }
      await lifecycle.transition(m.id, 'installed', `Talos reported: ${source}`, { from: 'provisioning' })
    } else if (hint === 'installing') {
      lifecycle.record(m.id, 'boot.talos', `Talos is installing (${source})`, { hint })
    } else if (hint === 'failed') {
      lifecycle.record(m.id, 'boot.talos', `Talos reported a failure: ${source}`, { hint })
    }
  }

  /** Which machine a peer is: its current boot's config address first, else what the network says (lease, neighbour). */
  async function machineOf(peer: string): Promise<string | null> {
    return (await boundTo(peer)) ?? (await deps.peers.resolve(peer))
  }

  return {
    observer: {
      async event(e: TalosEvent) {
        // Talos replays from the start of the boot when it reconnects. Keyed by peer too: one peer cannot mark
        // another machine's event ids as seen.
        const key = `${e.peer} ${e.id}`
        if (seen.has(key)) return
        seen.add(key)
        if (seen.size > 200_000) seen.clear()
        const hint = lifecycleHintFor(e)
        if (!RECORDED.has(e.type) && !hint) return
        const machineId = await machineOf(e.peer)
        // A peer that is no machine's gets no timeline line (rows an attacker could fill); it is counted.
        if (!machineId) {
          security.record('feedback-unbound', null, 'boot.talos', `Talos event from ${e.peer} ignored: the address belongs to no machine`, { clientIp: e.peer, type: e.type })
          return
        }
        const summary = e.type === 'machine.MachineStatusEvent'
          ? `stage ${String(e.data.stage ?? '?')}${e.data.status && typeof e.data.status === 'object' ? ((e.data.status as { ready?: boolean }).ready ? ', ready' : ', not ready') : ''}`
          : JSON.stringify(e.data).slice(0, 200)
        // The event's own data goes on the timeline only when small: a peer may send up to 1 MiB a message.
        const data = JSON.stringify(e.data).length <= 4096 ? e.data : { truncated: true }
        lifecycle.record(machineId, 'boot.talos', `Talos ${e.type.replace('machine.', '')}: ${summary}`, { type: e.type, peer: e.peer, hint, data })
        if (hint) await apply(e.peer, machineId, hint, `${e.type.replace('machine.', '')} ${String(e.data.stage ?? '')}`.trim())
      },
    },
    kernelLine(peer, line) {
      const hint = kernelLogHintFor(line)
      if (!hint) return
      // A machine that booted Talos from its own disk (no talos.config= on its command line) is installed.
      const lifecycleHint: LifecycleHint | null = hint.kind === 'install' ? hint.hint : hint.source === 'disk' ? 'installed' : null
      if (!lifecycleHint) return
      if (line.transport !== 'tcp') {
        security.record('feedback-unbound', null, 'boot.talos', `kernel log "${lifecycleHint}" over UDP from ${peer} ignored: only TCP lines move a machine`, { clientIp: peer, hint: lifecycleHint })
        return
      }
      void (async () => {
        const machineId = await machineOf(peer)
        if (machineId) await apply(peer, machineId, lifecycleHint, hint.kind === 'install' ? `kernel log: ${line.msg.slice(0, 120)}` : 'booted Talos from its disk')
      })().catch((err) => log.warn({ err, peer }, 'cannot apply a Talos kernel log hint'))
    },
  }
}
