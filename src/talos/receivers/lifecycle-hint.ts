// What a Talos event or kernel log line says about a machine's install, as a hint for the lifecycle (which alone
// decides). Pure functions, no history: the lifecycle combines them with the machine's state.
//
// How Talos derives its stage (internal/app/machined/pkg/controllers/runtime/machine_status.go, same in 1.13 and
// 1.14): SequenceEvent initialize/boot START → BOOTING; PhaseEvent "install" START inside the install sequence
// → INSTALLING (that phase exists only when the disk holds no installation); PhaseEvent "kexec" → REBOOTING;
// SequenceEvent boot STOP → RUNNING; TaskEvent runningMaintenance START → MAINTENANCE; a FATAL sequence error →
// REBOOTING. Readiness (time, network, services, static pods, node) is checked in BOOTING and RUNNING only; in
// any other stage Talos reports ready=true with no conditions, so `ready` means nothing there.
//
// Installs driven by machine.install (Talos ≤ 1.13, and 1.14 configs that still use it): the PXE-booted Talos
// reports INSTALLING, then REBOOTING (kexec), and the installed system reports BOOTING then RUNNING. The boot
// sequence runs only on an installed system there, so RUNNING + ready means installed.
//
// Installs driven by an UnattendedInstallConfig document (1.14+, what rackboot renders for 1.14): a controller
// installs in the background while the PXE-booted system boots fully from RAM; no INSTALLING stage is ever
// reported, and RUNNING (even ready) can come before the install ends. Its progress reaches us only as kernel log
// lines ("[talos] installing Talos", "[talos] install successful"), hence kernelLogHintFor. The kernel command
// line also tells a disk boot from a network boot: the installer keeps talos.events.sink and
// talos.logging.kernel in the installed boot entry but not talos.config.
import type { MachineStatusEventData, SequenceEventData, TalosEvent } from './talos-events.js'

export type LifecycleHint = 'installing' | 'installed' | 'failed'

/** The lifecycle hint one event carries, or null. */
export function lifecycleHintFor(event: Pick<TalosEvent, 'type' | 'data'>): LifecycleHint | null {
  switch (event.type) {
    case 'machine.MachineStatusEvent': {
      const data = event.data as Partial<MachineStatusEventData>
      if (data.stage === 'INSTALLING') return 'installing'
      if (data.stage === 'RUNNING' && data.status?.ready === true) return 'installed'
      return null
    }
    case 'machine.ConfigLoadErrorEvent':
    case 'machine.ConfigValidationErrorEvent':
      // Published when the config could not be fetched (after all of Talos's retries) or did not validate.
      return 'failed'
    case 'machine.SequenceEvent': {
      const data = event.data as Partial<SequenceEventData>
      // A failed sequence is a NOOP carrying a FATAL error; Talos then reboots. The reboot itself surfaces as a
      // "failure" whose message is the reboot syscall (RebootError: "unix.Reboot(...)"): not a failure.
      if (data.action !== 'NOOP' || data.error?.code !== 'FATAL') return null
      return data.error.message.includes('unix.Reboot(') ? null : 'failed'
    }
    default:
      return null
  }
}

/** What a kernel log line says: an install step, or where the kernel was booted from. */
export type KernelLogHint =
  | { kind: 'install'; hint: LifecycleHint }
  | { kind: 'boot-source'; source: 'network' | 'disk' }

// The UnattendedInstallController logs through machined's console logger, which writes to /dev/kmsg with the
// "[talos] " prefix (internal/app/machined/pkg/controllers/runtime/unattended_install.go); the install sequence's
// task logs the same words as "[talos] task install (1/1): ..." (v1alpha1_sequencer_tasks.go, Install).
const INSTALLING = /^\[talos\] (?:task install \(\d+\/\d+\): )?installing Talos\b/
const INSTALLED = /^\[talos\] (?:task install \(\d+\/\d+\): )?install successful\b/
const INSTALL_FAILED = /^\[talos\] .*failed to run installer/
// Linux prints the command line as "Command line: ..." (x86 setup) and "Kernel command line: ..." (init/main.c).
const CMDLINE = /^(?:Kernel )?[Cc]ommand line: (.*)$/
const TALOS_CONFIG_ARG = /(?:^|\s)talos\.config=/

/** The hint one kernel log message carries, or null. */
export function kernelLogHintFor(line: { msg: string }): KernelLogHint | null {
  const msg = line.msg
  if (msg.startsWith('[talos] ')) {
    if (INSTALLING.test(msg)) return { kind: 'install', hint: 'installing' }
    if (INSTALLED.test(msg)) return { kind: 'install', hint: 'installed' }
    if (INSTALL_FAILED.test(msg)) return { kind: 'install', hint: 'failed' }
    return null
  }
  const cmdline = CMDLINE.exec(msg)
  if (!cmdline) return null
  // rackboot's PXE command line always carries talos.config=; the installed boot entry never does.
  return { kind: 'boot-source', source: TALOS_CONFIG_ARG.test(cmdline[1] ?? '') ? 'network' : 'disk' }
}
