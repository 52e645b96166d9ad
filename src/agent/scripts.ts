// The shell scripts that run inside the agent and Talos stand-in initramfs images. They live as real .sh files
// beside this module (so tests can run them with busybox sh) and are read when an image is built.
import { readFileSync } from 'node:fs'

function load(name: string): string {
  return readFileSync(new URL(`./sh/${name}`, import.meta.url), 'utf8')
}

/** The agent report format version (the report's "agentVersion"). */
export const AGENT_VERSION = '1'

/** The hardware collector: prints the agent report JSON. Honours RACKBOOT_SYSFS, RACKBOOT_PROCFS, RACKBOOT_MACHINE. */
export const collectScript = (): string => load('collect.sh')
export const agentInitScript = (): string => load('agent-init.sh')
export const udhcpcScript = (): string => load('udhcpc.sh')
/** Sourced by the agent's /init with rackboot.wipe=1: wipe_disks. */
export const wipeScript = (): string => load('wipe.sh')
/** The driver loader both images source (load_modules: by device modalias, dependencies first). */
export const modulesScript = (): string => load('modules.sh')
export const fakeTalosInitScript = (): string => load('fake-talos-init.sh')
/** Sourced by both images' /init: ipv6_url, ipv6_lease (an image booted over IPv6 waits for its SLAAC address). */
export const ipv6Script = (): string => load('ipv6.sh')

/** Path of the collector on disk, for running it directly (tests). */
export const collectScriptPath = (): string => new URL('./sh/collect.sh', import.meta.url).pathname
