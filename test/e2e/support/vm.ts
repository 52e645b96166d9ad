// QEMU guests for the end-to-end tests, with the command lines measured in shared/reference/lab.md: TCG only
// (KVM is broken on these machines), q35, a virtio NIC on a tap in the lab's namespace, the serial console captured
// with timestamps, and a hard timeout that kills QEMU (a failed boot never ends by itself).
//
//   bios       SeaBIOS; the NIC's option ROM (Debian ipxe-qemu efi-virtio.rom) is iPXE itself
//   uefi       OVMF with its own PXE (romfile= empty): OVMF DHCP -> TFTP ipxe.efi -> iPXE
//   uefi-http  OVMF UEFI HTTP boot (PXE off through fw_cfg)
//   uefi-pxe6  OVMF's own PXE over IPv6 only (PXEv4 off, PXEv6 on through fw_cfg): DHCPv6 -> TFTP/IPv6 ipxe.efi
//   direct     -kernel/-initrd/-append, no network boot
//
// arch 'arm64' (default 'x86_64'): qemu-system-aarch64 -M virt -cpu cortex-a57 with AAVMF (Debian qemu-efi-aarch64)
// instead of q35; 'uefi' is AAVMF's own PXE (option 93 = 11), 'uefi-http' its UEFI HTTP boot (93 = 19), 'direct' as
// above. There is no 'bios' on arm64, and no SATA (virt has no AHCI).
import type { ChildProcess } from 'node:child_process'
import { copyFileSync, existsSync, openSync, closeSync, ftruncateSync } from 'node:fs'
import { join } from 'node:path'
import { stopChild } from '../../../src/processes.js'
import type { Netns } from '../../support/netns.js'
import { SerialLog, type SerialMatch } from './serial-log.js'
import { acquireVmSlot, type VmSlot } from './slots.js'

export type BootMode = 'bios' | 'uefi' | 'uefi-http' | 'uefi-pxe6' | 'direct'

/** The modes that boot OVMF/AAVMF (a private VARS copy, no NIC ROM). */
export const isUefiMode = (mode: BootMode): boolean => mode === 'uefi' || mode === 'uefi-http' || mode === 'uefi-pxe6'
export type VmArch = 'x86_64' | 'arm64'

export const OVMF_CODE = '/usr/share/OVMF/OVMF_CODE_4M.fd'
export const OVMF_VARS = '/usr/share/OVMF/OVMF_VARS_4M.fd'
export const IPXE_ROM_DIR = '/usr/lib/ipxe/qemu'
/** arm64 UEFI (Debian qemu-efi-aarch64): 64 MiB images; VARS without Secure Boot keys (Debian's GRUB is not MS-signed). */
export const AAVMF_CODE = '/usr/share/AAVMF/AAVMF_CODE.fd'
export const AAVMF_VARS = '/usr/share/AAVMF/AAVMF_VARS.fd'

/** The QEMU program for a guest architecture. */
export function qemuBinary(arch: VmArch = 'x86_64'): string {
  return arch === 'arm64' ? 'qemu-system-aarch64' : 'qemu-system-x86_64'
}

export interface SmbiosOptions {
  uuid?: string
  serial?: string
  manufacturer?: string
  product?: string
  boardSerial?: string
  chassisSerial?: string
}

export interface DiskOptions {
  sizeMiB: number
  serial?: string
  /** virtio-blk (default), nvme, sata (q35's AHCI) or scsi (virtio-scsi). */
  bus?: 'virtio' | 'nvme' | 'sata' | 'scsi'
  /** An existing raw image to attach (kept after the VM); default: a new sparse file in the lab's temp dir. */
  path?: string
}

export interface VmOptions {
  mode: BootMode
  /** Guest architecture (default x86_64: q35 + SeaBIOS/OVMF; arm64: virt + cortex-a57 + AAVMF). */
  arch?: VmArch
  /** Default: a random locally administered 52:54:00:xx:xx:xx. */
  mac?: string
  nic?: 'virtio' | 'e1000'
  /** NIC option ROM; default: QEMU's (iPXE) in bios mode, none (firmware's own driver) in uefi modes. */
  nicRom?: string
  smbios?: SmbiosOptions
  disks?: DiskOptions[]
  memoryMiB?: number
  cpus?: number
  /** Direct kernel boot (mode 'direct'). `panic=-1` is added so a kernel panic ends QEMU. */
  direct?: { kernel: string; initrd: string; append: string }
  /** Kill QEMU after this long (default 300 s). */
  hardTimeoutMs?: number
  /** Guest reboots end QEMU (default true, as in lab.md). */
  noReboot?: boolean
  name?: string
  extraArgs?: string[]
}

export interface VmExit {
  code: number | null
  signal: NodeJS.Signals | null
  /** 'exit': QEMU ended by itself (power-off, panic with -no-reboot); 'timeout': the hard timeout; 'stopped'. */
  reason: 'exit' | 'timeout' | 'stopped'
}

export interface Vm {
  readonly name: string
  readonly mode: BootMode
  readonly arch: VmArch
  readonly mac: string
  readonly tap: string
  readonly logFile: string
  /** Epoch ms when QEMU was started (after a VM slot was free). */
  readonly startedAt: number
  readonly serial: SerialLog
  /** Resolves when QEMU is gone, whatever the reason. Never rejects. */
  readonly exited: Promise<VmExit>
  /**
   * The first complete serial line matching `re` (with `partial`, also a line still being written, for prompts);
   * rejects on timeout or when QEMU exits first (the message has the log tail).
   */
  waitFor(re: RegExp, timeoutMs: number, options?: { partial?: boolean }): Promise<SerialMatch>
  /** Waits for QEMU to end by itself; rejects after `timeoutMs`. */
  waitForExit(timeoutMs: number): Promise<VmExit>
  /** ms after start when a line first matched `re`, or null. */
  timeOf(re: RegExp): number | null
  /** ms after start for each named marker (null when not seen). */
  timeline(markers?: Record<string, RegExp>): Record<string, number | null>
  /** QEMU's own stderr (errors about taps, firmware files...). */
  stderr(): string
  /** Kills QEMU (SIGTERM, then SIGKILL). Never throws. */
  stop(): Promise<void>
}

/** Markers of the usual boot phases (firmware, iPXE, kernel, agent / Talos stand-in). */
export const DEFAULT_MARKERS: Record<string, RegExp> = {
  firstOutput: /\S/,
  ipxe: /iPXE (initialising|\d)/,
  kernel: /Linux version \d/,
  init: /rackboot-agent: start|fake-talos: start/,
  network: /rackboot-agent: network up|fake-talos: network up/,
  reportSent: /rackboot-agent: report sent/,
  configFetched: /fake-talos: config fetched/,
  powerOff: /rackboot-agent: powering off|fake-talos: powering off|reboot: Power down/,
}

export function randomMac(): string {
  const b = Array.from({ length: 3 }, () => Math.floor(Math.random() * 256).toString(16).padStart(2, '0'))
  return `52:54:00:${b.join(':')}`
}

/** QEMU option values escape ',' by doubling it. */
function qv(value: string): string {
  return value.replace(/,/g, ',,')
}

export interface VmContext {
  ns: Netns
  tmpDir: string
  tap: string
  name: string
}

/** The qemu-system-x86_64 (or -aarch64) arguments for a guest (exported so tests can check them without running QEMU). */
export function qemuArgs(options: VmOptions, ctx: VmContext & { varsFile?: string; diskFiles: string[]; mac: string }): string[] {
  const arm64 = options.arch === 'arm64'
  if (arm64 && options.mode === 'bios') throw new Error("arm64 has no 'bios' mode (use uefi, uefi-http or direct)")
  const args = [
    ...(arm64 ? ['-M', 'virt', '-cpu', 'cortex-a57'] : ['-M', 'q35']), '-accel', 'tcg',
    '-display', 'none', '-nodefaults',
    '-m', String(options.memoryMiB ?? 512), '-smp', String(options.cpus ?? 1),
    '-chardev', 'stdio,id=ser0,signal=off', '-serial', 'chardev:ser0',
    '-monitor', 'none',
    '-name', ctx.name,
  ]
  if (options.noReboot !== false) args.push('-no-reboot')
  const s = options.smbios ?? {}
  const t1 = [['manufacturer', s.manufacturer], ['product', s.product], ['serial', s.serial], ['uuid', s.uuid]]
    .filter((kv): kv is [string, string] => kv[1] !== undefined)
    .map(([k, v]) => `${k}=${qv(v)}`)
  if (t1.length > 0) args.push('-smbios', `type=1,${t1.join(',')}`)
  if (s.boardSerial !== undefined) args.push('-smbios', `type=2,serial=${qv(s.boardSerial)}`)
  if (s.chassisSerial !== undefined) args.push('-smbios', `type=3,serial=${qv(s.chassisSerial)}`)

  args.push('-netdev', `tap,id=n0,ifname=${ctx.tap},script=no,downscript=no`)
  const uefi = isUefiMode(options.mode)
  const nicModel = options.nic === 'e1000' ? 'e1000' : 'virtio-net-pci'
  let nic = `${nicModel},netdev=n0,mac=${ctx.mac},bootindex=1`
  const rom = options.nicRom ?? (uefi && nicModel === 'virtio-net-pci' ? '' : undefined)
  if (rom !== undefined) nic += `,romfile=${rom}`
  args.push('-device', nic)

  if (uefi) {
    if (!ctx.varsFile) throw new Error('uefi mode needs a VARS copy')
    args.push(
      '-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${arm64 ? AAVMF_CODE : OVMF_CODE}`,
      '-drive', `if=pflash,format=raw,unit=1,file=${ctx.varsFile}`,
    )
    // PXEv6 only: the firmware's first network entry is then "UEFI PXEv6", before any HTTP attempt.
    args.push('-fw_cfg', `name=opt/org.tianocore/IPv6PXESupport,string=${options.mode === 'uefi-pxe6' ? 'y' : 'n'}`)
    if (options.mode === 'uefi-http' || options.mode === 'uefi-pxe6') args.push('-fw_cfg', 'name=opt/org.tianocore/IPv4PXESupport,string=n')
  }

  let scsi = false
  ;(options.disks ?? []).forEach((d, i) => {
    const file = ctx.diskFiles[i]
    if (!file) throw new Error(`no image for disk ${i}`)
    const id = `d${i}`
    args.push('-drive', `file=${file},if=none,id=${id},format=raw`)
    const serial = d.serial !== undefined ? `,serial=${qv(d.serial)}` : ''
    const boot = options.mode === 'direct' ? '' : `,bootindex=${i + 2}`
    switch (d.bus ?? 'virtio') {
      case 'virtio':
        args.push('-device', `virtio-blk-pci,drive=${id}${serial}${boot}`)
        break
      case 'nvme':
        args.push('-device', `nvme,drive=${id},serial=${qv(d.serial ?? `NVME${i}`)}${boot}`)
        break
      case 'sata':
        if (arm64) throw new Error('arm64 (virt) has no SATA controller: use virtio, nvme or scsi')
        args.push('-device', `ide-hd,drive=${id},bus=ide.${i}${serial}${boot}`)
        break
      case 'scsi':
        if (!scsi) args.push('-device', 'virtio-scsi-pci,id=scsi0')
        scsi = true
        args.push('-device', `scsi-hd,drive=${id},bus=scsi0.0${serial}${boot}`)
        break
    }
  })

  if (options.mode === 'direct') {
    if (!options.direct) throw new Error("mode 'direct' needs the direct option (kernel, initrd, append)")
    const append = /(^|\s)panic=/.test(options.direct.append) ? options.direct.append : `${options.direct.append} panic=-1`
    args.push('-kernel', options.direct.kernel, '-initrd', options.direct.initrd, '-append', append)
  } else if (options.mode === 'bios') {
    args.push('-boot', 'order=n')
  }
  args.push(...(options.extraArgs ?? []))
  return args
}

function createSparse(path: string, sizeMiB: number): void {
  const fd = openSync(path, 'w')
  try {
    ftruncateSync(fd, sizeMiB * 1024 * 1024)
  } finally {
    closeSync(fd)
  }
}

/** SIGKILL to the process group `timeout` leads (timeout and QEMU), then to the child itself. */
function killGroup(child: ChildProcess): void {
  if (child.pid !== undefined) {
    try {
      process.kill(-child.pid, 'SIGKILL')
    } catch {
      // not a group leader, or gone
    }
  }
  try {
    child.kill('SIGKILL')
  } catch {
    // gone
  }
}

/** SIGTERM (coreutils timeout passes it on to QEMU), SIGKILL to the group after `graceMs`. */
const kill = (child: ChildProcess, graceMs: number): Promise<void> => stopChild(child, graceMs, () => killGroup(child))

/**
 * Starts a guest on a new tap in `ctx.ns` (already enslaved to the lab's bridge by the caller). Waits for one of
 * the machine-wide VM slots first; the slot is released when QEMU ends.
 */
export async function launchVm(
  options: VmOptions,
  ctx: VmContext & { spawn(argv: string[]): ChildProcess; slotSignal?: AbortSignal; onSpawn?(child: ChildProcess): void },
): Promise<Vm> {
  const mac = (options.mac ?? randomMac()).toLowerCase()
  const arch: VmArch = options.arch ?? 'x86_64'
  const uefi = isUefiMode(options.mode)
  let varsFile: string | undefined
  if (uefi) {
    // A private, writable VARS copy for every boot (lab.md): boot entries from one run must not leak into the next.
    varsFile = join(ctx.tmpDir, `${ctx.name}-vars.fd`)
    copyFileSync(arch === 'arm64' ? AAVMF_VARS : OVMF_VARS, varsFile)
  }
  const diskFiles = (options.disks ?? []).map((d, i) => {
    if (d.path) return d.path
    const file = join(ctx.tmpDir, `${ctx.name}-disk${i}.raw`)
    if (!existsSync(file)) createSparse(file, d.sizeMiB)
    return file
  })
  const args = qemuArgs(options, { ...ctx, mac, diskFiles, ...(varsFile ? { varsFile } : {}) })
  const logFile = join(ctx.tmpDir, `${ctx.name}.serial.log`)

  const slot: VmSlot = await acquireVmSlot(ctx.slotSignal ? { signal: ctx.slotSignal } : {})
  const startedAt = Date.now()
  const serial = new SerialLog(() => startedAt, logFile)
  let stderr = ''
  let stopReason: VmExit['reason'] | null = null
  let child: ChildProcess
  try {
    // coreutils timeout as QEMU's parent enforces the hard limit even if this test process dies without cleaning up.
    const limitS = Math.ceil((options.hardTimeoutMs ?? 300_000) / 1000) + 15
    child = ctx.spawn(['timeout', '-s', 'KILL', String(limitS), qemuBinary(arch), ...args])
  } catch (err) {
    slot.release()
    throw err
  }
  child.stdout?.on('data', (d: Buffer) => serial.push(d))
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<VmExit>((resolve) => {
    const done = (code: number | null, signal: NodeJS.Signals | null) => {
      clearTimeout(hard)
      slot.release()
      resolve({ code, signal, reason: stopReason ?? 'exit' })
    }
    child.once('exit', done)
    child.once('error', (err) => {
      stderr += `\nspawn failed: ${err.message}`
      done(null, null)
    })
  })
  const hardTimeoutMs = options.hardTimeoutMs ?? 300_000
  ctx.onSpawn?.(child)
  const hard = setTimeout(() => {
    stopReason = 'timeout'
    void kill(child, 1_000)
  }, hardTimeoutMs)
  hard.unref()

  const describe = () => `${ctx.name} (${arch === 'arm64' ? 'arm64 ' : ''}${options.mode}, ${mac})`
  const vm: Vm = {
    name: ctx.name,
    mode: options.mode,
    arch,
    mac,
    tap: ctx.tap,
    logFile,
    startedAt,
    serial,
    exited,
    waitFor(re, timeoutMs, waitOptions = {}) {
      const pending = serial.next(re, waitOptions)
      let timer: NodeJS.Timeout | undefined
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${describe()}: no ${re} within ${timeoutMs} ms\n--- serial tail ---\n${serial.tail()}\n--- qemu stderr ---\n${stderr.trim()}`)),
          timeoutMs,
        )
      })
      const gone = exited.then((e) => {
        // A last chunk may arrive with the exit: look once more before failing.
        const late = serial.find(re)
        if (late) return late
        throw new Error(`${describe()}: QEMU ended (${e.reason}, code ${e.code}, signal ${e.signal}) before ${re}\n--- serial tail ---\n${serial.tail()}\n--- qemu stderr ---\n${stderr.trim()}`)
      })
      return Promise.race([pending.promise, timeout, gone]).finally(() => {
        clearTimeout(timer)
        pending.cancel()
      })
    },
    waitForExit(timeoutMs) {
      let timer: NodeJS.Timeout | undefined
      return Promise.race([
        exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`${describe()}: still running after ${timeoutMs} ms\n${serial.tail()}`)), timeoutMs)
        }),
      ]).finally(() => clearTimeout(timer))
    },
    timeOf(re) {
      return serial.find(re)?.atMs ?? null
    },
    timeline(markers = DEFAULT_MARKERS) {
      return Object.fromEntries(Object.entries(markers).map(([k, re]) => [k, serial.find(re)?.atMs ?? null]))
    },
    stderr: () => stderr,
    async stop() {
      if (!stopReason) stopReason = 'stopped'
      try {
        await kill(child, 2_000)
        await exited
      } catch {
        // never throws
      }
    },
  }
  return vm
}
