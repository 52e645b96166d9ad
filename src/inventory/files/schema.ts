import Type, { type Static } from 'typebox'
import { DiskSelectorSchema } from '../disk-selector.js'
import { MachineNetworkSchema } from '../network.js'
import { BMC_AUTHS, BMC_BOOT_VERIFY, BMC_PRIVILEGES, BOOT_METHODS, SECRET_REF_PATTERN } from './bmc-settings.js'

// The declarative inventory format: what a tech knows before racking. Files under inventory/ hold any of the
// top-level lists `machines`, `classes`, `profiles`.

const Name = Type.String({ pattern: '^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$' })
const Label = Type.Record(Type.String({ pattern: '^[A-Za-z0-9]([A-Za-z0-9._/-]{0,252})$' }), Type.String({ maxLength: 253 }))

export const FileNicSchema = Type.Object(
  {
    mac: Type.String(),
    name: Type.Optional(Type.String()),
    boot: Type.Optional(Type.Boolean()),
    /** A DHCP reservation for this NIC. */
    ip: Type.Optional(Type.String({ format: 'ipv4' })),
  },
  { additionalProperties: false },
)

export const FileBmcSchema = Type.Object(
  {
    type: Type.Union([Type.Literal('ipmi'), Type.Literal('redfish')]),
    /** Host or IP; Redfish also https://host[:port], optionally with the system path (/redfish/v1/Systems/<id>). */
    address: Type.String({ minLength: 1 }),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535 })),
    username: Type.Optional(Type.String()),
    /** Where the password comes from at import: `env:VARIABLE` or `file:/path`. Never the password itself. */
    passwordFrom: Type.Optional(Type.String({ pattern: SECRET_REF_PATTERN })),
    insecure: Type.Optional(Type.Boolean()),
    fingerprint: Type.Optional(Type.String({ pattern: '^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$' })),
    /** Redfish: the system to drive on a service with several, its Id or /redfish/v1/Systems/<id>. */
    systemId: Type.Optional(Type.String({ minLength: 1 })),
    /** Redfish: a CA certificate (PEM file, relative to this file) trusted for this BMC, read at import... */
    caFile: Type.Optional(Type.String({ minLength: 1 })),
    /** ...or the PEM inline. */
    ca: Type.Optional(Type.String({ minLength: 1 })),
    /** Redfish: session (X-Auth-Token), basic, or auto (session, basic where the BMC has no SessionService). */
    auth: Type.Optional(Type.Enum([...BMC_AUTHS])),
    /** IPMI: cipher suites in the order tried (17, 3). */
    cipherSuites: Type.Optional(Type.Array(Type.Integer(), { minItems: 1 })),
    /** IPMI: session privilege. */
    privilege: Type.Optional(Type.Enum([...BMC_PRIVILEGES])),
    /** IPMI: where the BMC key K_G (hex, up to 20 bytes) comes from at import, as passwordFrom. */
    kgFrom: Type.Optional(Type.String({ pattern: SECRET_REF_PATTERN })),
    /** IPMI: boot override read-back, strict (device, mode, persistence) or device only. */
    bootVerify: Type.Optional(Type.Enum([...BMC_BOOT_VERIFY])),
    /** How the lifecycle network-boots the machine through this BMC. */
    bootMethod: Type.Optional(Type.Enum([...BOOT_METHODS])),
  },
  { additionalProperties: false },
)

export const FileMachineSchema = Type.Object(
  {
    name: Name,
    serial: Type.Optional(Type.String({ minLength: 1 })),
    uuid: Type.Optional(Type.String()),
    manufacturer: Type.Optional(Type.String()),
    product: Type.Optional(Type.String()),
    arch: Type.Optional(Type.Union([Type.Literal('amd64'), Type.Literal('arm64')])),
    firmware: Type.Optional(Type.Union([Type.Literal('bios'), Type.Literal('uefi')])),
    nics: Type.Optional(Type.Array(FileNicSchema)),
    rack: Type.Optional(Type.String()),
    unit: Type.Optional(Type.Integer({ minimum: 1, maximum: 60 })),
    labels: Type.Optional(Label),
    profile: Type.Optional(Name),
    alwaysPxe: Type.Optional(Type.Boolean()),
    bmc: Type.Optional(FileBmcSchema),
    /** Static addresses and nameservers for its Talos config (without it: DHCP). */
    network: Type.Optional(MachineNetworkSchema),
  },
  { additionalProperties: false },
)

export const FileClassSchema = Type.Object(
  {
    name: Name,
    description: Type.Optional(Type.String()),
    /** Selector expressions that must all hold, e.g. `cpu.cores >= 32`. */
    selectors: Type.Array(Type.String({ minLength: 1 })),
    profile: Type.Optional(Name),
    patches: Type.Optional(Type.Array(Type.Unknown())),
  },
  { additionalProperties: false },
)

export const PhaseDeadlinesSchema = Type.Object({
  boot: Type.Optional(Type.Integer({ minimum: 10 })), download: Type.Optional(Type.Integer({ minimum: 10 })), config: Type.Optional(Type.Integer({ minimum: 10 })),
  installing: Type.Optional(Type.Integer({ minimum: 10 })), installed: Type.Optional(Type.Integer({ minimum: 10 })),
}, { additionalProperties: false, description: 'Seconds per boot phase, overriding the server\'s repair.deadlines' })

export const FileProfileSchema = Type.Object(
  {
    name: Name,
    description: Type.Optional(Type.String()),
    talosVersion: Type.Optional(Type.String({ pattern: '^v\\d+\\.\\d+\\.\\d+(-[0-9A-Za-z.-]+)?$' })),
    arch: Type.Optional(Type.Union([Type.Literal('amd64'), Type.Literal('arm64')])),
    schematic: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$' })),
    kernelArgs: Type.Optional(Type.Array(Type.String())),
    /** The base machine config inline (YAML text)... */
    baseConfig: Type.Optional(Type.String()),
    /** ...or in a file beside this one. */
    baseConfigFile: Type.Optional(Type.String()),
    patches: Type.Optional(Type.Array(Type.Unknown())),
    /** How the install disk is chosen among the disks a machine reported. */
    installDisk: Type.Optional(DiskSelectorSchema),
    /** Seconds per boot phase (boot, download, config, installing, installed), overriding repair.deadlines. */
    deadlines: Type.Optional(PhaseDeadlinesSchema),
  },
  { additionalProperties: false },
)

export const InventoryFileSchema = Type.Object(
  {
    machines: Type.Optional(Type.Array(FileMachineSchema)),
    classes: Type.Optional(Type.Array(FileClassSchema)),
    profiles: Type.Optional(Type.Array(FileProfileSchema)),
  },
  { additionalProperties: false },
)

export type FileBmc = Static<typeof FileBmcSchema>
export type FileMachine = Static<typeof FileMachineSchema>
export type FileClass = Static<typeof FileClassSchema>
export type FileProfile = Static<typeof FileProfileSchema>
export type InventoryFile = Static<typeof InventoryFileSchema>
