// Failure as routine, end to end (issue 14): a machine behind a virtual rack (ipmi_sim whose chassis control starts
// and stops a QEMU guest) is provisioned with a Talos stand-in that fetches its config, then fails its install the
// way Talos does (a "[talos] ... failed to run installer" line in its kernel log, over TCP). rackboot records the
// failure, power-cycles the machine into PXE through the BMC after a backoff, the machine fails again, and after
// repair.maxPhaseFailures it is quarantined in state `failed`: every step on its timeline, and the BMC saw exactly
// one power cycle per repair. A second machine (no BMC) whose profile's initramfs is missing on the server shows the
// failed download as a red step naming the file, and a download failure.
import assert from 'node:assert/strict'
import { rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import { stringify } from 'yaml'
import { generateConfig, generateSecretsBundle } from '../../src/talos/index.js'
import { BIN } from '../support/cli.js'
import { skipUnlessVm } from './support/index.js'
import { ipmiRackSkipReason, startIpmiRack } from './support/ipmi-rack.js'
import { startRackboot, TALOS, type Rackboot } from './support/rackboot.js'

const HARD_TIMEOUT = 180_000
/** Install failures before quarantine (repair.maxPhaseFailures): FAILURES - 1 repairs, FAILURES boots. */
const FAILURES = 3
const INSTALL_FAILURE = 'failed to run installer: disk /dev/vda is in use'

type TimelineEvent = Awaited<ReturnType<Rackboot['events']>>[number]

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | null | undefined | false>): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(500)
  }
}

/** A real Talos config as the profile's base (the stand-in checks it has the v1alpha1 document). */
async function createProfile(rb: Rackboot, name: string, kernelArgs: string[]): Promise<string> {
  const token = JSON.parse((await rb.cli(['tokens', 'create', `e2e-${name}`, '--scope', 'admin', '--scope', 'provision', '--scope', 'read', '--json'])).stdout).secret as string
  const secrets = await generateSecretsBundle({ talosVersion: TALOS, rsaBits: 2048 })
  const base = generateConfig({ secrets, clusterName: 'lab', endpoint: 'https://198.18.0.10:6443', talosVersion: TALOS, role: 'worker' }).yaml
  const profile = await rb.api('POST', '/profiles', token, { name, talosVersion: TALOS, arch: 'amd64', kernelArgs, baseConfig: base })
  assert.ok(profile.status === 201 || profile.status === 200, JSON.stringify(profile))
  return token
}

const describeEvents = (events: TimelineEvent[]) => events.map((e) => `${e.type}: ${e.message}`).join('\n')

describe('failure as routine, end to end', { concurrency: 2 }, () => {
  test('virtual rack: Talos fails its install every boot; rackboot power-cycles it into PXE through ipmi_sim, then quarantines it', { timeout: 420_000 }, async (t) => {
    if (await skipUnlessVm(t, { mode: 'bios', agent: true, fakeTalos: true, programs: ['ipmi_sim', 'radvd', 'curl'] })) return
    const why = ipmiRackSkipReason()
    if (why) {
      console.error(`# SKIP: ${why}`)
      return t.skip(why)
    }
    const started = Date.now()
    const rb = await startRackboot(t, {
      settings: {
        // ipmi_sim drops the EFI and persistence bits of a boot override; reboots may follow each other at once here.
        power: { ipmiBootVerify: 'device', timeoutMs: 10_000, attempts: 2, minRebootIntervalMs: 0 },
        repair: { backoffSeconds: 1, backoffMaxSeconds: 4, maxPhaseFailures: FAILURES, maxFailures: FAILURES },
      },
    })
    const mac = '52:54:00:1a:b0:21'
    const rack = await startIpmiRack(rb, t, {
      mode: 'bios', name: 'u21', mac, smbios: { uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789ab21', serial: 'RACK-U21' },
      disks: [{ sizeMiB: 64, serial: 'DISK-U21' }], hardTimeoutMs: HARD_TIMEOUT,
    })
    const dir = rb.lab.tmpDir
    writeFileSync(join(dir, 'rack.yaml'), stringify({ machines: [{ name: 'rack-u21', nics: [{ mac, boot: true }], bmc: { type: 'ipmi', address: rack.bmc.address, port: rack.bmc.port, username: rack.bmc.username, passwordFrom: 'env:BMC_PW' } }] }))
    const imp = await rb.lab.exec(['node', BIN, 'inventory', 'import', join(dir, 'rack.yaml'), '--config', rb.config], { env: { ...process.env, ...(await rb.cliEnv()), BMC_PW: rack.bmc.password }, timeoutMs: 60_000, check: false })
    assert.equal(imp.code, 0, imp.stderr)
    await until('the BMC to answer', 20_000, async () => (await rb.lab.exec(['node', BIN, 'power', 'status', 'rack-u21', '--config', rb.config], { env: { ...process.env, ...(await rb.cliEnv()) }, timeoutMs: 60_000, check: false })).code === 0)

    // 1. Discovered through the BMC: `rackboot power pxe` powers it on, it boots the agent, reports and powers off.
    const pxe = await rb.lab.exec(['node', BIN, 'power', 'pxe', 'rack-u21', '--bios', '--config', rb.config], { env: { ...process.env, ...(await rb.cliEnv()) }, timeoutMs: 90_000, check: false })
    assert.equal(pxe.code, 0, pxe.stdout + pxe.stderr)
    const agentVm = await rack.nextVm(90_000) // a VM slot may be busy with another test's guest
    await agentVm.waitFor(/rackboot-agent: report sent/, HARD_TIMEOUT)
    await agentVm.waitForExit(60_000)
    await until('the BMC to read the powered-off machine as off', 10_000, async () => rack.power() === 'off')
    const m = await rb.machine(mac)
    assert.equal(m?.state, 'discovered')
    assert.equal(m?.firmware, 'bios')
    assert.equal((await rb.cli(['machines', 'accept', mac])).code, 0)
    t.diagnostic(`discovered ${Math.round((Date.now() - started) / 1000)} s after the start`)

    // 2. Allocated with a profile whose Talos fails its install, powered on through the BMC by the allocation.
    const token = await createProfile(rb, 'failing-install', ['console=ttyS0,115200', 'fake-talos.fail=install', 'fake-talos.after=wait'])
    const allocatedAt = Date.now()
    const alloc = await rb.api('POST', '/allocations', token, { count: 1, selector: 'serial == "RACK-U21"', profile: 'failing-install', idempotencyKey: 'ladder-1', powerOn: true })
    assert.equal(alloc.status, 201, JSON.stringify(alloc.json))
    assert.ok(['requested', 'done'].includes(alloc.json.machines[0].power.status), JSON.stringify(alloc.json.machines[0]))

    // 3. Every boot fetches its config and fails the install; the ladder cycles it (the guest waits, as a hung
    // machine does: only a power cycle through the BMC gets it out).
    const boots = []
    for (let i = 1; i <= FAILURES; i++) {
      const vm = await rack.nextVm(90_000)
      const fetched = await vm.waitFor(/fake-talos: config fetched/, HARD_TIMEOUT)
      const failed = await vm.waitFor(/fake-talos: install failed .* reported to tcp:\/\//, 60_000)
      boots.push({ vm: vm.name, configFetchedS: fetched.atMs / 1000, failureReportedS: failed.atMs / 1000, kernel: vm.serial.find(/Kernel command line: .*talos\.logging\.kernel=tcp:/) !== null })
    }
    t.diagnostic(`boots (s after each QEMU start): ${JSON.stringify(boots)}`)
    assert.ok(boots.every((b) => b.kernel), `talos.logging.kernel=tcp://... on every command line: ${JSON.stringify(boots)}`)
    const failedM = await until('the machine to be quarantined', 30_000, async () => {
      const x = await rb.machine(mac)
      return x?.state === 'failed' ? x : null
    })
    assert.equal(failedM.id, m!.id)
    // Past the longest backoff: nothing more may happen to the BMC once the machine is quarantined.
    await sleep(6_000)
    assert.equal(rack.vms.length, 1 + FAILURES, `one guest per power on: ${rack.vms.map((v) => v.name).join(', ')}`)
    assert.ok(rack.current() === rack.vms.at(-1), 'the last boot was left as it is (quarantined, not power-cycled)')

    // The timeline holds every step, in order.
    const events = (await rb.events(m!.id)).filter((e) => e.at >= allocatedAt)
    const failures = events.filter((e) => e.type === 'boot.failure')
    const repairs = events.filter((e) => e.type === 'boot.repair')
    const scheduled = repairs.filter((e) => e.data.action === 'scheduled')
    const cycled = repairs.filter((e) => e.data.action === 'pxe-cycle')
    const quarantined = repairs.filter((e) => e.data.action === 'quarantine')
    const timeline = describeEvents(events.filter((e) => /^(boot\.(failure|repair|talos|config)|machine\.state|power)$/.test(e.type)))
    t.diagnostic(`timeline:\n${timeline}`)
    assert.equal(failures.length, FAILURES, timeline)
    for (const f of failures) {
      assert.ok(['installing', 'installed'].includes(String(f.data.phase)), `phase of ${f.message}`)
      assert.equal(f.data.kind, 'talos')
      assert.ok(String(f.data.reason).includes(INSTALL_FAILURE), `the reason names Talos's message: ${f.message}`)
    }
    assert.equal(scheduled.length, FAILURES - 1, timeline)
    assert.equal(cycled.length, FAILURES - 1, timeline)
    assert.ok(cycled.every((e) => e.data.ok === true && /next boot PXE \(bios\) and power cycle: done/.test(e.message)), timeline)
    scheduled.forEach((e, i) => assert.ok(Number(e.data.inMs) <= 1000 * 2 ** i, `backoff ${i + 1}: ${e.message}`))
    assert.equal(quarantined.length, 1, timeline)
    assert.match(quarantined[0]!.message, new RegExp(`^quarantined: ${FAILURES} failures in phase (installing|installed) \\(last in phase \\w+: .*${INSTALL_FAILURE}`))
    const toFailed = events.filter((e) => e.type === 'machine.state' && e.data.to === 'failed')
    assert.equal(toFailed.length, 1, timeline)
    assert.equal(toFailed[0]!.data.from, 'provisioning')
    // failure → scheduled → cycled → (next boot's config) → failure ... → quarantined.
    const order = events.filter((e) => e.type === 'boot.failure' || (e.type === 'boot.repair') || (e.type === 'boot.config' && e.data.status === 200))
    const expected: string[] = []
    for (let i = 1; i <= FAILURES; i++) {
      expected.push('config', 'failure')
      expected.push(...(i < FAILURES ? ['scheduled', 'pxe-cycle'] : ['quarantine']))
    }
    assert.deepEqual(order.map((e) => (e.type === 'boot.config' ? 'config' : e.type === 'boot.failure' ? 'failure' : String(e.data.action))), expected, timeline)
    assert.equal(events.filter((e) => e.type === 'boot.talos' && e.data.hint === 'failed').length, FAILURES, timeline)

    // The BMC saw one power on from the allocation, then exactly one power cycle (off, on) per repair, each after
    // the next boot was set to PXE; nothing after the quarantine.
    const calls = rack.chassisCalls().filter((c) => c.at >= allocatedAt && c.op.startsWith('set '))
    t.diagnostic(`ipmi_sim chassis control since the allocation: ${calls.map((c) => `+${((c.at - allocatedAt) / 1000).toFixed(1)}s ${c.op}`).join(', ')}`)
    const offs = calls.filter((c) => c.op === 'set power 0')
    const ons = calls.filter((c) => c.op === 'set power 1')
    assert.equal(offs.length, cycled.length, `power cycles seen by the BMC = repairs: ${JSON.stringify(calls)}`)
    assert.equal(ons.length, 1 + cycled.length, JSON.stringify(calls))
    // ipmi_sim's own cycle powers on only if still off: a second command mid-cycle shows as one more boot override.
    assert.equal(calls.filter((c) => c.op.startsWith('set boot')).length, 1 + cycled.length, `one boot override per power action: ${JSON.stringify(calls)}`)
    assert.deepEqual(rack.powerSets(), { on: 1 + 1 + cycled.length, off: cycled.length }, 'in all: the discovery power on, the allocation, the repairs')
    assert.ok(calls.at(-1)!.at < quarantined[0]!.at, 'no power action after the quarantine')
    for (const off of offs) {
      const before = calls.filter((c) => c.at <= off.at && c.op.startsWith('set boot'))
      assert.equal(before.at(-1)?.op, 'set boot pxe', `next boot PXE before the cycle at ${off.at}`)
    }
    // The power attempts that booted the machine (the allocation's power on, each repair's cycle), each done once.
    const powerDone = events.filter((e) => e.type === 'power' && e.data.reboot === true && e.data.ok === true)
    assert.deepEqual(powerDone.map((e) => e.data.action), ['on', ...cycled.map(() => 'cycle')], timeline)
    assert.equal(powerDone.length, 1 + cycled.length, timeline)

    const metrics = await rb.lab.exec(['curl', '-sS', `${rb.url}/metrics`], { timeoutMs: 20_000 })
    assert.match(metrics.stdout, new RegExp(`rackboot_boot_failures_total\\{phase="(installing|installed)",kind="talos"\\} ${FAILURES}\\b`))
    assert.match(metrics.stdout, new RegExp(`rackboot_boot_repairs_total\\{result="ok"\\} ${FAILURES - 1}\\b`))
    assert.match(metrics.stdout, /rackboot_machines_failed_total \d/)
    t.diagnostic(`whole test ${Math.round((Date.now() - started) / 1000)} s`)
  })

  test('a missing initramfs: the failed download is a red step naming the file, and a boot failure', { timeout: 300_000 }, async (t) => {
    if (await skipUnlessVm(t, { mode: 'bios', agent: true, fakeTalos: true, programs: ['radvd', 'curl'] })) return
    const started = Date.now()
    const rb = await startRackboot(t, { settings: { repair: { backoffSeconds: 1, maxPhaseFailures: 2 } } })
    const mac = '52:54:00:1a:b0:22'
    const smbios = { uuid: '8c3f5a7e-1b2d-4c6e-9f01-23456789ab22', serial: 'LAB-SERIAL-U22' }
    const disks = [{ sizeMiB: 64, serial: 'DISK-U22' }]
    const vm1 = await rb.lab.startVm({ mode: 'bios', name: 'u22-agent', mac, smbios, disks, hardTimeoutMs: HARD_TIMEOUT })
    await vm1.waitFor(/rackboot-agent: report sent/, HARD_TIMEOUT)
    await vm1.waitForExit(60_000)
    const m = await rb.machine(mac)
    assert.equal(m?.state, 'discovered')
    assert.equal((await rb.cli(['machines', 'accept', mac])).code, 0)
    const token = await createProfile(rb, 'lab-worker', ['console=ttyS0,115200'])
    const alloc = await rb.api('POST', '/allocations', token, { count: 1, selector: `serial == "${smbios.serial}"`, profile: 'lab-worker', idempotencyKey: 'missing-1' })
    assert.equal(alloc.status, 201, JSON.stringify(alloc.json))
    // The file goes away after the allocation (which refuses a profile whose boot files are missing).
    const rel = `talos/${TALOS}/amd64/initramfs.xz`
    rmSync(join(rb.lab.tmpDir, 'assets', rel))
    const allocatedAt = Date.now()

    const vm2 = await rb.lab.startVm({ mode: 'bios', name: 'u22-install', mac, smbios, disks, hardTimeoutMs: 150_000 })
    // iPXE retries the script 15 s after a failed download: the second 404 in the download phase quarantines it.
    // (A failure of another kind, e.g. a boot loop when the 404s go unrecorded, ends the wait early.)
    await until('the machine to be quarantined after two failed downloads', 150_000, async () =>
      (await rb.machine(mac))?.state === 'failed' || (await rb.events(m!.id)).some((e) => e.type === 'boot.failure' && e.data.kind !== 'download'),
    ).catch(async (err) => {
      throw new Error(`${(err as Error).message}\n${describeEvents((await rb.events(m!.id)).filter((e) => e.at >= allocatedAt))}\n--- serial ---\n${vm2.serial.tail()}`)
    })
    await vm2.stop()
    const events = (await rb.events(m!.id)).filter((e) => e.at >= allocatedAt)
    const timeline = describeEvents(events.filter((e) => /^boot\.(script|asset|failure|repair)$|^machine\.state$/.test(e.type)))
    t.diagnostic(`timeline:\n${timeline}`)

    const missing = events.filter((e) => e.type === 'boot.asset' && e.data.path === rel)
    assert.ok(missing.length >= 2, `every failed download of ${rel} is on the timeline:\n${timeline}`)
    for (const e of missing) {
      assert.equal(e.data.status, 404)
      assert.ok(e.message.startsWith(`download of ${rel} failed: HTTP 404`), e.message)
    }
    assert.ok(events.some((e) => e.type === 'boot.asset' && e.data.path === `talos/${TALOS}/amd64/vmlinuz` && e.data.status === 200 && e.at < missing[0]!.at), 'the kernel itself came')
    // The web UI's reading of the timeline (src/http/ui/static/js/phases.js): the initramfs step failed, and the
    // boot stopped there.
    const phases = await import(new URL('../../src/http/ui/static/js/phases.js', import.meta.url).href)
    const step = phases.classify(missing[0])
    assert.deepEqual({ phase: step.phase, status: step.status }, { phase: 'initramfs', status: 'fail' }, JSON.stringify(step))
    const firstBoot = events.slice(0, events.indexOf(missing[0]!) + 1)
    const progress = phases.bootProgress(firstBoot)
    assert.equal(progress.failed, missing[0], JSON.stringify(progress))
    assert.equal(progress.steps.kernel?.status, 'ok', JSON.stringify(progress.steps))

    const failures = events.filter((e) => e.type === 'boot.failure')
    assert.equal(failures.length, 2, timeline)
    for (const f of failures) {
      assert.equal(f.data.phase, 'download')
      assert.equal(f.data.kind, 'download')
      assert.equal(f.data.reason, `${rel}: HTTP 404 (the file is missing on the server)`)
      assert.equal(f.message, `boot failed in phase download: ${rel}: HTTP 404 (the file is missing on the server)`)
    }
    const repairs = events.filter((e) => e.type === 'boot.repair')
    assert.deepEqual(repairs.map((e) => e.data.action), ['wait', 'quarantine'], timeline)
    assert.match(repairs[0]!.message, /^no BMC to power-cycle it/)
    assert.match(repairs[1]!.message, new RegExp(`^quarantined: 2 failures in phase download \\(last in phase download: ${rel.replace(/\./g, '\\.')}: HTTP 404`))
    t.diagnostic(`whole test ${Math.round((Date.now() - started) / 1000)} s`)
  })
})
