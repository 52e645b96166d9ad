import { test } from 'node:test'
import assert from 'node:assert/strict'
import { kernelLogHintFor, lifecycleHintFor, type LifecycleHint } from '../../../src/talos/receivers/index.js'

const status = (stage: string, ready: boolean, unmet: Array<{ name: string; reason: string }> = []) => ({
  type: 'machine.MachineStatusEvent',
  data: { stage, status: { ready, unmetConditions: unmet } },
})
const seq = (sequence: string, action: string, error?: { code: string; message: string }) => ({
  type: 'machine.SequenceEvent',
  data: error ? { sequence, action, error } : { sequence, action },
})

test('lifecycleHintFor: one row per Talos stage and event kind', () => {
  const rows: Array<[string, { type: string; data: Record<string, unknown> }, LifecycleHint | null]> = [
    ['UNKNOWN', status('UNKNOWN', true), null],
    ['BOOTING, not ready', status('BOOTING', false, [{ name: 'services', reason: 'waiting for etcd' }]), null],
    // BOOTING + ready happens on the PXE-booted system before an install too: never "installed" alone
    ['BOOTING, ready', status('BOOTING', true), null],
    ['INSTALLING (ready is meaningless here)', status('INSTALLING', true), 'installing'],
    ['INSTALLING, not ready', status('INSTALLING', false), 'installing'],
    ['MAINTENANCE', status('MAINTENANCE', true), null],
    ['RUNNING, not ready', status('RUNNING', false, [{ name: 'nodeReady', reason: 'node not ready' }]), null],
    ['RUNNING, ready', status('RUNNING', true), 'installed'],
    ['REBOOTING', status('REBOOTING', true), null],
    ['SHUTTING_DOWN', status('SHUTTING_DOWN', true), null],
    ['RESETTING', status('RESETTING', true), null],
    ['UPGRADING', status('UPGRADING', true), null],
    ['a stage newer than the table', status('9', true), null],
    ['config load error', { type: 'machine.ConfigLoadErrorEvent', data: { error: 'failed to fetch' } }, 'failed'],
    ['config validation error', { type: 'machine.ConfigValidationErrorEvent', data: { error: 'bad' } }, 'failed'],
    ['install sequence FATAL', seq('install', 'NOOP', { code: 'FATAL', message: 'sequence failed: error running phase 2 in install sequence: task 1/1: failed, no disk' }), 'failed'],
    ['reboot surfacing as a FATAL sequence error', seq('install', 'NOOP', { code: 'FATAL', message: 'sequence failed: unix.Reboot(45584c28)' }), null],
    ['sequence CANCELED', seq('boot', 'NOOP', { code: 'CANCELED', message: 'sequence failed: context canceled' }), null],
    ['sequence LOCKED', seq('reboot', 'NOOP', { code: 'LOCKED', message: 'sequence not started: locked' }), null],
    ['sequence START', seq('install', 'START'), null],
    ['sequence STOP', seq('boot', 'STOP'), null],
    ['phase install START (the stage event says it)', { type: 'machine.PhaseEvent', data: { phase: 'install', action: 'START' } }, null],
    ['service failed', { type: 'machine.ServiceStateEvent', data: { service: 'etcd', action: 'FAILED', message: 'x' } }, null],
    ['address', { type: 'machine.AddressEvent', data: { hostname: 'n1', addresses: [] } }, null],
    ['unknown type', { type: 'unknown', data: { typeUrl: 'type.googleapis.com/x.Y', bytes: 3 } }, null],
    ['status event with no data', { type: 'machine.MachineStatusEvent', data: {} }, null],
  ]
  for (const [name, event, want] of rows) assert.equal(lifecycleHintFor(event), want, name)
})

test('kernelLogHintFor: unattended install lines and the kernel command line', () => {
  const rows: Array<[string, ReturnType<typeof kernelLogHintFor>]> = [
    ['[talos] installing Talos {"component": "controller-runtime", "controller": "runtime.UnattendedInstallController", "disk": "/dev/sda"}', { kind: 'install', hint: 'installing' }],
    ['[talos] install successful {"component": "controller-runtime", "controller": "runtime.UnattendedInstallController"}', { kind: 'install', hint: 'installed' }],
    ['[talos] controller failed {"controller": "runtime.UnattendedInstallController", "error": "failed to run installer: exit status 1"}', { kind: 'install', hint: 'failed' }],
    ['[talos] requesting reboot after successful install {"component": "controller-runtime"}', null],
    ['[talos] installing Talos\t{"component": "controller-runtime"}', { kind: 'install', hint: 'installing' }],
    ['[talos] task install (1/1): installing Talos to disk /dev/sda', { kind: 'install', hint: 'installing' }],
    ['[talos] task install (1/1): install successful', { kind: 'install', hint: 'installed' }],
    ['[talos] task install (1/1): done, 43.1s', null],
    ['[talos] task saveConfig (1/1): install successful', null],
    ['[talos] install successfully skipped', null],
    ['Kernel command line: talos.platform=metal console=ttyS0 talos.config=http://198.18.0.1:8080/talos/config?mac=${mac} talos.events.sink=198.18.0.1:4002', { kind: 'boot-source', source: 'network' }],
    ['Command line: BOOT_IMAGE=/A/vmlinuz talos.platform=metal talos.events.sink=198.18.0.1:4002 talos.logging.kernel=tcp://198.18.0.1:4001/', { kind: 'boot-source', source: 'disk' }],
    ['Kernel command line: talos.platform=metal mytalos.config=x', { kind: 'boot-source', source: 'disk' }],
    ['e1000e 0000:00:19.0 eth0: NIC Link is Up 1000 Mbps Full Duplex', null],
    ['', null],
  ]
  for (const [msg, want] of rows) assert.deepEqual(kernelLogHintFor({ msg }), want, msg)
})
