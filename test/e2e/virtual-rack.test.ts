// A virtual rack: an IPMI BMC (ipmi_sim) whose chassis control starts and stops a QEMU machine. `rackboot power pxe`
// sets the next boot to PXE (UEFI) over RMCP+ and powers the machine on; it PXE-boots from rackboot (OVMF) and is
// discovered. ipmi_sim keeps only the boot device, so the CLI must not claim it verified the mode.
import assert from 'node:assert/strict'
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { stringify } from 'yaml'
import { BIN } from '../support/cli.js'
import { skipUnlessVm } from './support/index.js'
import { ipmiRackSkipReason, startIpmiRack } from './support/ipmi-rack.js'
import { startRackboot } from './support/rackboot.js'

const HARD_TIMEOUT = 240_000

test('virtual rack: rackboot power pxe --uefi through ipmi_sim starts a UEFI VM that PXE-boots from rackboot and is discovered', { timeout: 2 * HARD_TIMEOUT }, async (t) => {
  if (await skipUnlessVm(t, { mode: 'uefi', agent: true, programs: ['ipmi_sim', 'radvd'] })) return
  const noRack = ipmiRackSkipReason()
  if (noRack) return t.skip(noRack)
  const rb = await startRackboot(t, { settings: { power: { ipmiBootVerify: 'device', timeoutMs: 10_000, attempts: 2 } } })
  const dir = rb.lab.tmpDir
  const mac = '52:54:00:1a:b0:07'
  const uuid = '8c3f5a7e-1b2d-4c6e-9f01-23456789ab07'
  // Power requests from the BMC become a VM: on -> boot (PXE first, as the BMC was told), off -> stop.
  const rack = await startIpmiRack(rb, t, { mode: 'uefi', mac, smbios: { uuid, serial: 'RACK-U07' }, disks: [{ sizeMiB: 32 }], hardTimeoutMs: HARD_TIMEOUT })
  const port = rack.bmc.port
  writeFileSync(join(dir, 'rack.yaml'), stringify({ machines: [{ name: 'rack-u07', nics: [{ mac, boot: true }], bmc: { type: 'ipmi', address: '127.0.0.1', port, username: 'admin', passwordFrom: 'env:BMC_PW' } }] }))
  const imp = await rb.lab.exec(['node', BIN, 'inventory', 'import', join(dir, 'rack.yaml'), '--config', rb.config], { env: { ...process.env, ...(await rb.cliEnv()), BMC_PW: 'password' }, timeoutMs: 60_000, check: false })
  assert.equal(imp.code, 0, imp.stderr)

  for (let i = 0; i < 40; i++) {
    const st = await rb.lab.exec(['node', BIN, 'power', 'status', 'rack-u07', '--config', rb.config], { env: { ...process.env, ...(await rb.cliEnv()) }, timeoutMs: 60_000, check: false })
    if (st.code === 0) break
    await new Promise((r) => setTimeout(r, 250))
  }
  const pxe = await rb.lab.exec(['node', BIN, 'power', 'pxe', 'rack-u07', '--uefi', '--config', rb.config], { env: { ...process.env, ...(await rb.cliEnv()) }, timeoutMs: 90_000, check: false })
  assert.equal(pxe.code, 0, pxe.stdout + pxe.stderr)
  // Through the API: the device is confirmed; ipmi_sim keeps no mode, so none is claimed.
  assert.match(pxe.stdout, /next boot pxe verified \(pxe\); was off, powered on/)
  assert.doesNotMatch(pxe.stdout, /pxe (bios|uefi) verified/)
  // Exactly one power on reached the BMC for one command.
  assert.equal(rack.powerSets().on, 1, JSON.stringify(rack.chassisCalls()))
  assert.equal(readFileSync(join(rack.stateDir, 'boot'), 'utf8').trim(), 'pxe', 'ipmi_sim was told to boot from the network')

  const vm = await rack.nextVm(90_000).catch(() => null) // a VM slot may be busy with another test's guest
  assert.ok(vm, 'powering on through the BMC started the machine')
  await vm.waitFor(/rackboot-agent: report sent/, HARD_TIMEOUT)
  const m = await rb.machine(mac)
  assert.equal(m?.state, 'discovered')
  assert.equal(m?.uuid, uuid)
  const events = await rb.events(m!.id)
  assert.ok(events.some((e) => e.type === 'power' && /power on( \([^)]*\))?: done/.test(e.message)), 'the power action is on the timeline')
  assert.equal(m?.firmware, 'uefi')
  assert.ok(events.some((e) => e.type === 'boot.agent'))
})
