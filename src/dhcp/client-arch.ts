// Client system architecture types (DHCP option 93, RFC 4578 and the IANA "Processor Architecture Types" registry).
// Each entry says which boot-file family serves it and whether the client boots over HTTP instead of TFTP.

/** The boot-file families rackboot has names for (settings.dhcp.bootFiles). */
export type BootFamily =
  | 'bios'
  | 'uefiIa32'
  | 'uefiX64'
  | 'uefiArm32'
  | 'uefiArm64'
  | 'uefiRiscv32'
  | 'uefiRiscv64'
  | 'uefiLoongarch64'

export interface ClientArch {
  code: number
  name: string
  /** Boot-file family, or null when rackboot has no loader for this architecture (Itanium, PowerPC, U-Boot...). */
  family: BootFamily | null
  firmware: 'bios' | 'uefi' | 'other'
  /** The client fetches its boot file over HTTP (UEFI HTTP boot) rather than TFTP. */
  http: boolean
}

const table: [code: number, name: string, family: BootFamily | null, firmware: ClientArch['firmware'], http: boolean][] = [
  [0, 'x86 BIOS', 'bios', 'bios', false],
  [1, 'NEC/PC98', null, 'other', false],
  [2, 'Itanium', null, 'other', false],
  [3, 'DEC Alpha', null, 'other', false],
  [4, 'Arc x86', null, 'other', false],
  [5, 'Intel Lean Client', null, 'other', false],
  [6, 'x86 UEFI', 'uefiIa32', 'uefi', false],
  [7, 'x64 UEFI', 'uefiX64', 'uefi', false],
  [8, 'EFI Xscale', null, 'other', false],
  // IANA says EBC, but RFC 4578's first table (and much firmware) used 9 for x64 UEFI.
  [9, 'EBC (x64 UEFI in older firmware)', 'uefiX64', 'uefi', false],
  [10, 'ARM 32-bit UEFI', 'uefiArm32', 'uefi', false],
  [11, 'ARM 64-bit UEFI', 'uefiArm64', 'uefi', false],
  [12, 'PowerPC Open Firmware', null, 'other', false],
  [13, 'PowerPC ePAPR', null, 'other', false],
  [14, 'POWER OPAL v3', null, 'other', false],
  [15, 'x86 UEFI HTTP', 'uefiIa32', 'uefi', true],
  [16, 'x64 UEFI HTTP', 'uefiX64', 'uefi', true],
  [17, 'EBC HTTP', 'uefiX64', 'uefi', true],
  [18, 'ARM 32-bit UEFI HTTP', 'uefiArm32', 'uefi', true],
  [19, 'ARM 64-bit UEFI HTTP', 'uefiArm64', 'uefi', true],
  [20, 'PC/AT BIOS HTTP', 'bios', 'bios', true],
  [21, 'ARM 32-bit U-Boot', null, 'other', false],
  [22, 'ARM 64-bit U-Boot', null, 'other', false],
  [23, 'ARM 32-bit U-Boot HTTP', null, 'other', true],
  [24, 'ARM 64-bit U-Boot HTTP', null, 'other', true],
  [25, 'RISC-V 32-bit UEFI', 'uefiRiscv32', 'uefi', false],
  [26, 'RISC-V 32-bit UEFI HTTP', 'uefiRiscv32', 'uefi', true],
  [27, 'RISC-V 64-bit UEFI', 'uefiRiscv64', 'uefi', false],
  [28, 'RISC-V 64-bit UEFI HTTP', 'uefiRiscv64', 'uefi', true],
  [29, 'RISC-V 128-bit UEFI', null, 'uefi', false],
  [30, 'RISC-V 128-bit UEFI HTTP', null, 'uefi', true],
  [31, 's390 Basic', null, 'other', false],
  [32, 's390 Extended', null, 'other', false],
  [33, 'MIPS 32-bit UEFI', null, 'uefi', false],
  [34, 'MIPS 64-bit UEFI', null, 'uefi', false],
  [35, 'Sunway 32-bit UEFI', null, 'uefi', false],
  [36, 'Sunway 64-bit UEFI', null, 'uefi', false],
  [37, 'LoongArch 32-bit UEFI', null, 'uefi', false],
  [38, 'LoongArch 32-bit UEFI HTTP', null, 'uefi', true],
  [39, 'LoongArch 64-bit UEFI', 'uefiLoongarch64', 'uefi', false],
  [40, 'LoongArch 64-bit UEFI HTTP', 'uefiLoongarch64', 'uefi', true],
  [41, 'ARM rpiboot', 'uefiArm64', 'other', false],
]

export const CLIENT_ARCHS: ReadonlyMap<number, ClientArch> = new Map(
  table.map(([code, name, family, firmware, http]) => [code, Object.freeze({ code, name, family, firmware, http })]),
)

/** The table entry for an option 93 value; unassigned values give an entry with no family. */
export function clientArch(code: number): ClientArch {
  return CLIENT_ARCHS.get(code) ?? { code, name: `unassigned (${code})`, family: null, firmware: 'other', http: false }
}

/** iPXE's ${buildarch}-style name for logs and URLs: i386, x86_64, arm32, arm64, riscv64, loong64. */
export function archCpuName(arch: ClientArch): string | null {
  switch (arch.family) {
    case 'bios':
    case 'uefiIa32':
      return arch.family === 'bios' ? 'x86' : 'i386'
    case 'uefiX64':
      return 'x86_64'
    case 'uefiArm32':
      return 'arm32'
    case 'uefiArm64':
      return 'arm64'
    case 'uefiRiscv32':
      return 'riscv32'
    case 'uefiRiscv64':
      return 'riscv64'
    case 'uefiLoongarch64':
      return 'loong64'
    default:
      return null
  }
}
