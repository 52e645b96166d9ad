// A virtual rack: an IPMI BMC (ipmi_sim) whose chassis control starts and stops a QEMU machine. `rackboot power pxe`
// sets the next boot to PXE over RMCP+ and powers the machine on; it PXE-boots from rackboot and is discovered.
import assert from 'node:assert/strict'
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { test } from 'node:test'
import { stringify } from 'yaml'
import { BIN } from '../support/cli.js'
import { skipUnlessVm, type Vm } from './support/index.js'
import { startRackboot } from './support/rackboot.js'

const SHARED_IPMI = resolve(import.meta.dirname, '../../../shared/harness/ipmi_sim')
const HARD_TIMEOUT = 240_000

test('virtual rack: rackboot power pxe through ipmi_sim starts a VM that PXE-boots from rackboot and is discovered', { timeout: 2 * HARD_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { mode: 'bios', agent: true, programs: ['ipmi_sim', 'radvd'] })) return
  if (!existsSync(join(SHARED_IPMI, 'lan.conf'))) return t.skip(`needs ${SHARED_IPMI}`)
  const rb = await startRackboot(t, { settings: { power: { ipmiBootVerify: 'device', timeoutMs: 10_000, attempts: 2 } } })
  const dir = rb.lab.tmpDir
  const state = join(dir, 'bmc')
  // Chassis control: the harness script keeps state; ours also leaves a request the test turns into a VM.
  const script = join(dir, 'chassis.sh')
  copyFileSync(join(SHARED_IPMI, 'chassiscontrol.sh'), join(dir, 'chassiscontrol.sh'))
  chmodSync(join(dir, 'chassiscontrol.sh'), 0o755)
  writeFileSync(script, `#!/bin/sh\nS=${state}; mkdir -p "$S"\ncase "$2 $3 $4" in\n  "set power 1") echo on >> "$S/requests";;\n  "set power 0") echo off >> "$S/requests";;\nesac\nexec ${join(dir, 'chassiscontrol.sh')} "$@"\n`)
  chmodSync(script, 0o755)
  copyFileSync(join(SHARED_IPMI, 'pxesim.emu'), join(dir, 'pxesim.emu'))
  const port = 19000 + Math.floor(Math.random() * 1000)
  writeFileSync(join(dir, 'lan.conf'), readFileSync(join(SHARED_IPMI, 'lan.conf'), 'utf8')
    .replace(/addr\s+127\.0\.0\.1\s+\d+/, `addr 127.0.0.1 ${port}`)
    .replace(/chassis_control\s+"[^"]*"/, `chassis_control "${script} 0x20"`))
  // The BMC lives in the server's namespace, beside rackboot (its own loopback).
  rb.lab.spawn(['timeout', '3600', 'ipmi_sim', '-c', join(dir, 'lan.conf'), '-f', join(dir, 'pxesim.emu'), '-s', join(dir, 'sdir'), '-n'], {
    cwd: dir, env: { ...process.env, IPMISIM_STATE: state },
  })
  await rb.lab.exec(['ip', 'link', 'set', 'lo', 'up'], { check: false })

  const mac = '52:54:00:1a:b0:07'
  const uuid = '8c3f5a7e-1b2d-4c6e-9f01-23456789ab07'
  writeFileSync(join(dir, 'rack.yaml'), stringify({ machines: [{ name: 'rack-u07', nics: [{ mac, boot: true }], bmc: { type: 'ipmi', address: '127.0.0.1', port, username: 'admin', passwordFrom: 'env:BMC_PW' } }] }))
  const imp = await rb.lab.exec(['node', BIN, 'inventory', 'import', join(dir, 'rack.yaml'), '--config', rb.config], { env: { ...process.env, BMC_PW: 'password' }, timeoutMs: 60_000, check: false })
  assert.equal(imp.code, 0, imp.stderr)

  // Turn power requests from the BMC into a VM: on -> boot (PXE first, as the BMC was told), off -> stop.
  let vm: Vm | null = null
  let handled = 0
  const poller = setInterval(() => {
    const requests = existsSync(join(state, 'requests')) ? readFileSync(join(state, 'requests'), 'utf8').split('\n').filter(Boolean) : []
    for (; handled < requests.length; handled++) {
      if (requests[handled] === 'on' && !vm) {
        void rb.lab.startVm({ mode: 'bios', mac, smbios: { uuid, serial: 'RACK-U07' }, disks: [{ sizeMiB: 32 }], hardTimeoutMs: HARD_TIMEOUT }).then((v) => { vm = v })
      } else if (requests[handled] === 'off' && vm) {
        void vm.stop()
        vm = null
      }
    }
  }, 200)
  t.after(() => clearInterval(poller))

  for (let i = 0; i < 40; i++) {
    const st = await rb.lab.exec(['node', BIN, 'power', 'status', 'rack-u07', '--config', rb.config], { timeoutMs: 60_000, check: false })
    if (st.code === 0) break
    await new Promise((r) => setTimeout(r, 250))
  }
  const pxe = await rb.lab.exec(['node', BIN, 'power', 'pxe', 'rack-u07', '--bios', '--config', rb.config], { timeoutMs: 90_000, check: false })
  assert.equal(pxe.code, 0, pxe.stdout + pxe.stderr)
  assert.match(pxe.stdout, /next boot pxe .*verified; was off, powered on/)
  assert.equal(readFileSync(join(state, 'boot'), 'utf8').trim(), 'pxe', 'ipmi_sim was told to boot from the network')

  for (let i = 0; i < 100 && !vm; i++) await new Promise((r) => setTimeout(r, 100))
  assert.ok(vm, 'powering on through the BMC started the machine')
  await (vm as Vm).waitFor(/rackboot-agent: report sent/, HARD_TIMEOUT)
  const m = await rb.machine(mac)
  assert.equal(m?.state, 'discovered')
  assert.equal(m?.uuid, uuid)
  const events = await rb.events(m!.id)
  assert.ok(events.some((e) => e.type === 'power' && /pxe-boot \(CLI\): done/.test(e.message)), 'the power action is on the timeline')
  assert.ok(events.some((e) => e.type === 'boot.agent'))
})
