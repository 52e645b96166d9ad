// Boot assets for VM tests, built once per machine into a shared cache (the kernel .deb is ~70 MB): CI downloads
// it once per run, developers once. RACKBOOT_TEST_CACHE overrides the place. amd64 builds go to <cache>/build,
// arm64 ones to <cache>/build/arm64; the .debs (and the private arm64 apt state) are shared in the cache.
import { copyFile, mkdir } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { agentAssetDir, buildAgentAssets, buildFakeTalosAssets, type BuiltAssets, type DebArch } from '../../../src/agent/index.js'
import { createAssetStore, fetchGrub, type ManifestEntry } from '../../../src/assets/index.js'
import { silentLogger } from '../../../src/log.js'

export function testCacheDir(): string {
  if (process.env.RACKBOOT_TEST_CACHE) return process.env.RACKBOOT_TEST_CACHE
  if (process.getuid?.() === 0) return '/var/cache/rackboot-test'
  return join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'rackboot-test')
}

const agent = new Map<DebArch, Promise<BuiltAssets>>()
const fakeTalos = new Map<DebArch, Promise<BuiltAssets>>()

function buildDir(arch: DebArch): string {
  return arch === 'amd64' ? join(testCacheDir(), 'build') : join(testCacheDir(), 'build', arch)
}

/** The discovery agent (vmlinuz + agent.img) for `arch` (default amd64), built or reused; memoized per process. */
export function testAgentAssets(arch: DebArch = 'amd64'): Promise<BuiltAssets> {
  let p = agent.get(arch)
  if (!p) {
    p = buildAgentAssets({ outDir: buildDir(arch), cacheDir: testCacheDir(), log: silentLogger(), ...(arch === 'amd64' ? {} : { arch }) })
    agent.set(arch, p)
    p.catch(() => agent.delete(arch))
  }
  return p
}

/** The Talos stand-in (vmlinuz + fake-talos.img) for `arch` (default amd64), built or reused; memoized per process. */
export function testFakeTalosAssets(arch: DebArch = 'amd64'): Promise<BuiltAssets> {
  let p = fakeTalos.get(arch)
  if (!p) {
    p = buildFakeTalosAssets({ outDir: buildDir(arch), cacheDir: testCacheDir(), log: silentLogger(), ...(arch === 'amd64' ? {} : { arch }) })
    fakeTalos.set(arch, p)
    p.catch(() => fakeTalos.delete(arch))
  }
  return p
}

/**
 * Copies the agent where rackboot serves it: <assetsDir>/agent/vmlinuz and agent.img for amd64 (/assets/agent/...),
 * <assetsDir>/agent/arm64/... for arm64.
 */
export async function installAgentAssets(assetsDir: string, arch: DebArch = 'amd64'): Promise<BuiltAssets> {
  const built = await testAgentAssets(arch)
  const dir = join(assetsDir, agentAssetDir(arch))
  await mkdir(dir, { recursive: true })
  await copyFile(built.kernel, join(dir, 'vmlinuz'))
  await copyFile(built.initramfs, join(dir, 'agent.img'))
  return built
}

/**
 * Copies the Talos stand-in into `dir` under Talos's release names, vmlinuz and initramfs.xz (the kernel tells
 * gzip from xz by its magic bytes), e.g. dir = <assetsDir>/talos/<version>/amd64.
 */
export async function installFakeTalos(dir: string, arch: DebArch = 'amd64'): Promise<BuiltAssets> {
  const built = await testFakeTalosAssets(arch)
  await mkdir(dir, { recursive: true })
  await copyFile(built.kernel, join(dir, 'vmlinuz'))
  await copyFile(built.initramfs, join(dir, 'initramfs.xz'))
  return built
}

const quietProgress = () => ({ update: () => undefined, finish: () => undefined })

/**
 * `rackboot assets fetch grub` for `arch` into `assetsDir` (grub/grubnetaa64.efi for arm64): the command's own code,
 * with the test cache as its package cache, so the .deb (and the private arm64 apt lists) are fetched once a day
 * at most; offline, the cached .deb is used.
 */
export async function installGrubAssets(assetsDir: string, arch: DebArch = 'arm64'): Promise<ManifestEntry[]> {
  const store = createAssetStore({ dir: assetsDir, progress: quietProgress, notice: () => undefined })
  return fetchGrub({ store, cacheDir: testCacheDir(), log: silentLogger(), arches: [arch], progress: quietProgress })
}
