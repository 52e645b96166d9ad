// rackboot's Talos library: kernel args by version, secrets and certificates, config generation, patches,
// per-machine rendering, install-disk choice and schema lint. Pure functions, except the linter which caches
// compiled schemas. (The events/log receivers live in ./receivers/ and have their own door.)

export { parseTalosVersion, formatTalosVersion, versionAtLeast, contractGreater, type TalosVersion } from './version.js'
export { kernelArgs, defaultKernelArgs, MAX_CMDLINE_BYTES, type KernelArgsOptions } from './kernel-args.js'

export {
  parseConfigDocuments,
  stringifyConfigDocuments,
  documentIdentity,
  documentKey,
  documentLabel,
  isV1Alpha1Document,
  type ConfigDocument,
  type DocumentIdentity,
} from './documents.js'
export { loadPatch, applyPatch, applyPatches, JSON6902_MULTIDOC_MESSAGE, type ConfigPatch, type PatchInput } from './patches.js'
export { applyJsonPatch, parsePointer, type JsonPatchOperation } from './json-patch.js'
export { mergeDocument, loadStrategicPatch, applyStrategicPatch, type StrategicPatch, type StrategicStep, type DeleteSelector } from './strategic-merge.js'

export {
  generateSecretsBundle,
  parseSecretsBundle,
  validateSecretsBundle,
  secretsBundleToYaml,
  generateToken,
  decodePem,
  encodePem,
  CA_VALIDITY_MS,
  TOKEN_RE,
  type SecretsBundle,
  type CertAndKey,
  type GenerateSecretsOptions,
} from './secrets.js'
export { talosconfigFor, TALOS_API_CLIENT_CERT_VALIDITY_MS, type Talosconfig, type TalosconfigContext, type TalosconfigOptions } from './talosconfig.js'
export { createCertificate, parseCertificate, type CertificateTemplate, type NameSpec } from './x509.js'
export { generateKey, loadPrivateKey, privateKeyToPem, type KeyAlgorithm } from './keys.js'

export {
  generateConfig,
  defaultInstallerImage,
  DEFAULT_KUBERNETES_VERSIONS,
  MIN_GENERATE_VERSION,
  VANILLA_SCHEMATIC,
  type GenerateConfigOptions,
  type MachineRole,
  type RenderedConfig,
} from './generate.js'
export {
  createConfigLinter,
  chooseSchema,
  listSchemas,
  DEFAULT_SCHEMAS_DIR,
  type ConfigLinter,
  type ConfigLinterDeps,
  type LintIssue,
  type LintOptions,
  type LintResult,
  type SchemaInfo,
} from './lint.js'
export {
  renderMachineConfig,
  applyMachineValues,
  type RenderMachineConfigInput,
  type MachineValues,
  type StaticAddress,
  type InstallDiskValue,
} from './render.js'
export { renderCacheStats, configureRenderCache, clearRenderCache, DEFAULT_RENDER_CACHE_LIMITS, type RenderCacheStats, type LruLimits } from './render-cache.js'
export { chooseInstallDisk, installDiskOf, parseSize, parseSizeCondition, diskKind, diskPath, type DiskSelector, type DiskChoice, type DiskKind } from './disks.js'
