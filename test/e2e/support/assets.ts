// Boot assets for VM tests, built once per machine into a shared cache (the kernel .deb is ~70 MB): CI downloads
// it once per run, developers once. RACKBOOT_TEST_CACHE overrides the place.
import { copyFile, mkdir } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { buildAgentAssets, buildFakeTalosAssets, type BuiltAssets } from '../../../src/agent/index.js'
import { silentLogger } from '../../../src/log.js'

export function testCacheDir(): string {
  if (process.env.RACKBOOT_TEST_CACHE) return process.env.RACKBOOT_TEST_CACHE
  if (process.getuid?.() === 0) return '/var/cache/rackboot-test'
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'rackboot-test')
}

let agent: Promise<BuiltAssets> | undefined
let fakeTalos: Promise<BuiltAssets> | undefined

/** The discovery agent (vmlinuz + agent.img), built or reused; memoized per process. */
export function testAgentAssets(): Promise<BuiltAssets> {
  agent ??= buildAgentAssets({ outDir: join(testCacheDir(), 'build'), cacheDir: testCacheDir(), log: silentLogger() })
  agent.catch(() => (agent = undefined))
  return agent
}

/** The Talos stand-in (vmlinuz + fake-talos.img), built or reused; memoized per process. */
export function testFakeTalosAssets(): Promise<BuiltAssets> {
  fakeTalos ??= buildFakeTalosAssets({ outDir: join(testCacheDir(), 'build'), cacheDir: testCacheDir(), log: silentLogger() })
  fakeTalos.catch(() => (fakeTalos = undefined))
  return fakeTalos
}

/** Copies the agent where rackboot serves it: <assetsDir>/agent/vmlinuz and agent.img (/assets/agent/...). */
export async function installAgentAssets(assetsDir: string): Promise<BuiltAssets> {
  const built = await testAgentAssets()
  const dir = join(assetsDir, 'agent')
  await mkdir(dir, { recursive: true })
  await copyFile(built.kernel, join(dir, 'vmlinuz'))
  await copyFile(built.initramfs, join(dir, 'agent.img'))
  return built
}

/**
 * Copies the Talos stand-in into `dir` under Talos's release names, vmlinuz and initramfs.xz (the kernel tells
 * gzip from xz by its magic bytes), e.g. dir = <assetsDir>/talos/<version>/amd64.
 */
export async function installFakeTalos(dir: string): Promise<BuiltAssets> {
  const built = await testFakeTalosAssets()
  await mkdir(dir, { recursive: true })
  await copyFile(built.kernel, join(dir, 'vmlinuz'))
  await copyFile(built.initramfs, join(dir, 'initramfs.xz'))
  return built
}
