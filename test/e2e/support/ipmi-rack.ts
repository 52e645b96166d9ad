// A machine in a virtual rack: an IPMI BMC (ipmi_sim, shared/harness/ipmi_sim) beside rackboot in the lab's server
// namespace, whose chassis control starts and stops a QEMU guest, as a real BMC powers its host. Power on starts a
// guest (it PXE-boots: bios mode boots the NIC first), power off stops it, a power cycle does both (ipmi_sim sends
// "set power 0", then "set power 1" about a second later), and a guest that powers itself off leaves the BMC
// reading "off", as a real host would. Every chassis-control call is in ipmi_sim's log (chassisCalls).
//
//   const rack = await startIpmiRack(rb, { mac, smbios, disks, hardTimeoutMs })
//   // register rack.bmc in rackboot's inventory, then drive it with `rackboot power pxe` or the lifecycle
//   await rack.nextVm(60_000)
//   rack.powerSets()    // { on: 3, off: 1 }: what the BMC was told to do
import { chmodSync, copyFileSync, existsSync, readFileSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import type { Rackboot } from './rackboot.js'
import type { Vm, VmOptions } from './vm.js'

export const SHARED_IPMI = resolve(import.meta.dirname, '../../../../shared/harness/ipmi_sim')

/** Why a virtual rack cannot run here, or null (the programs themselves are checked by skipUnlessVm). */
export function ipmiRackSkipReason(): string | null {
  for (const f of ['lan.conf', 'pxesim.emu', 'chassiscontrol.sh']) if (!existsSync(join(SHARED_IPMI, f))) return `needs ${join(SHARED_IPMI, f)}`
  return null
}

export interface ChassisCall {
  /** Epoch ms. */
  at: number
  /** "set power 0", "get power", "set boot pxe"... */
  op: string
}

export interface IpmiRack {
  /** For the inventory: { type: 'ipmi', address: '127.0.0.1', port, username: 'admin', password: 'password' }. */
  readonly bmc: { type: 'ipmi'; address: string; port: number; username: string; password: string }
  /** Where chassiscontrol.sh keeps power, boot and its log. */
  readonly stateDir: string
  /** Every guest started so far, in order. */
  readonly vms: readonly Vm[]
  /** The guest running now, or null (powered off). */
  current(): Vm | null
  /** Waits for the guest after the `count`-th (default: the next one not seen by an earlier call). */
  nextVm(timeoutMs: number): Promise<Vm>
  /** ipmi_sim's chassis-control calls, from its log. */
  chassisCalls(): ChassisCall[]
  /** How often the BMC was told to power on and off. */
  powerSets(): { on: number; off: number }
  /** What the BMC reads as its power state. */
  power(): 'on' | 'off'
  /** Stops polling and the guest. */
  stop(): Promise<void>
}

export async function startIpmiRack(
  rb: Rackboot,
  t: { after(fn: () => unknown): void },
  vmOptions: Omit<VmOptions, 'noReboot'>,
): Promise<IpmiRack> {
  const dir = rb.lab.tmpDir
  const state = join(dir, 'bmc')
  // Chassis control: the harness script keeps state and its log; ours also leaves a request the test turns into a VM.
  const harness = join(dir, 'chassiscontrol.sh')
  const script = join(dir, 'chassis.sh')
  copyFileSync(join(SHARED_IPMI, 'chassiscontrol.sh'), harness)
  chmodSync(harness, 0o755)
  writeFileSync(script, `#!/bin/sh\nS=${state}; mkdir -p "$S"\ncase "$2 $3 $4" in\n  "set power 1") echo on >> "$S/requests";;\n  "set power 0") echo off >> "$S/requests";;\nesac\nexec ${harness} "$@"\n`)
  chmodSync(script, 0o755)
  copyFileSync(join(SHARED_IPMI, 'pxesim.emu'), join(dir, 'pxesim.emu'))
  const port = 19000 + Math.floor(Math.random() * 1000)
  writeFileSync(join(dir, 'lan.conf'), readFileSync(join(SHARED_IPMI, 'lan.conf'), 'utf8')
    .replace(/addr\s+127\.0\.0\.1\s+\d+/, `addr 127.0.0.1 ${port}`)
    .replace(/chassis_control\s+"[^"]*"/, `chassis_control "${script} 0x20"`))
  // The BMC lives in the server's namespace, beside rackboot (its own loopback).
  await rb.lab.exec(['ip', 'link', 'set', 'lo', 'up'], { check: false })
  const sim = rb.lab.spawn(['timeout', '3600', 'ipmi_sim', '-c', join(dir, 'lan.conf'), '-f', join(dir, 'pxesim.emu'), '-s', join(dir, 'sdir'), '-n'], {
    cwd: dir, env: { ...process.env, IPMISIM_STATE: state },
  })
  let simErr = ''
  sim.stderr?.on('data', (d) => (simErr += d))
  await new Promise((r) => setTimeout(r, 300))
  if (sim.exitCode !== null) throw new Error(`ipmi_sim exited at once (code ${sim.exitCode}): ${simErr}`)

  const vms: Vm[] = []
  let current: Vm | null = null
  let handled = 0
  let stopped = false
  let chain: Promise<void> = Promise.resolve()
  const waiters: (() => void)[] = []
  const handle = async (request: string): Promise<void> => {
    if (stopped) return
    if (request === 'on' && !current) {
      const vm = await rb.lab.startVm({ ...vmOptions, name: `${vmOptions.name ?? 'rack'}-${vms.length + 1}` })
      vms.push(vm)
      current = vm
      for (const w of waiters.splice(0)) w()
      // A guest that ends by itself (power-off, -no-reboot) is a host that is off: the BMC reads it so.
      void vm.exited.then((e) => {
        if (current !== vm) return
        current = null
        if (e.reason === 'exit') writeFileSync(join(state, 'power'), '0\n')
      })
    } else if (request === 'off' && current) {
      const vm = current
      current = null
      await vm.stop()
    }
  }
  const poller = setInterval(() => {
    const file = join(state, 'requests')
    const requests = existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : []
    for (; handled < requests.length; handled++) {
      const r = requests[handled]!
      chain = chain.then(() => handle(r)).catch(() => undefined)
    }
  }, 100)
  let seen = 0
  const rack: IpmiRack = {
    bmc: { type: 'ipmi', address: '127.0.0.1', port, username: 'admin', password: 'password' },
    stateDir: state,
    get vms() {
      return vms
    },
    current: () => current,
    async nextVm(timeoutMs) {
      const want = ++seen
      if (vms.length >= want) return vms[want - 1]!
      let timer: NodeJS.Timeout | undefined
      await Promise.race([
        new Promise<void>((resolve) => {
          const check = () => (vms.length >= want ? resolve() : waiters.push(check))
          check()
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no guest number ${want} within ${timeoutMs} ms; chassis calls:\n${rack.chassisCalls().map((c) => c.op).join('\n')}`)), timeoutMs)
        }),
      ]).finally(() => clearTimeout(timer))
      return vms[want - 1]!
    },
    chassisCalls() {
      const log = join(state, 'log')
      if (!existsSync(log)) return []
      // "<epoch.ns> 0x20 set power 0"
      return readFileSync(log, 'utf8').split('\n').filter(Boolean).map((l) => {
        const [ts, , ...op] = l.split(' ')
        return { at: Math.round(Number(ts) * 1000), op: op.join(' ') }
      })
    },
    powerSets() {
      const calls = rack.chassisCalls()
      return { on: calls.filter((c) => c.op === 'set power 1').length, off: calls.filter((c) => c.op === 'set power 0').length }
    },
    power() {
      const f = join(state, 'power')
      return existsSync(f) && readFileSync(f, 'utf8').trim() === '1' ? 'on' : 'off'
    },
    async stop() {
      stopped = true
      clearInterval(poller)
      await chain
      await current?.stop()
    },
  }
  t.after(() => rack.stop())
  return rack
}
