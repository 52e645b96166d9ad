// The discovery agent: the boot assets (kernel + busybox initramfs) a new machine boots to report its hardware,
// the report format, and the Talos stand-in the end-to-end tests boot instead of Talos.
export { buildAgentAssets, agentAssetDir, agentModules, AGENT_MODULES, AGENT_OPTIONAL_MODULES, ARM64_OPTIONAL_MODULES, type AgentAssets, type AgentAssetsOptions } from './initramfs.js'
export { buildFakeTalosAssets, talosUrlAwk, talosUrlAwkPath, type FakeTalosOptions } from './fake-talos.js'
export { describeSource, type BuiltAssets, type BuildSource } from './image.js'
export { aptFor, privateAptConfig, DEB_ARCHES, isDebArch, type AptContext, type DebArch } from './apt.js'
export type { BuildProgress, ProgressFn, ProgressPhase } from './debian.js'
export { AgentReportSchema, type AgentReport } from './report.js'
export { AGENT_VERSION, collectScript, collectScriptPath } from './scripts.js'
export { CpioBuilder, encodeCpio, type CpioEntry } from './cpio.js'
