// `rackboot assets build agent`: builds the discovery agent (Debian kernel + busybox initramfs) into
// <assetsDir>/agent/ (amd64) or <assetsDir>/agent/arm64/, with a progress bar on stderr while the kernel package
// downloads and the image is packed, and records both files in the assets manifest.
import { join } from 'node:path'
import { agentAssetDir, buildAgentAssets, describeSource, isDebArch, type BuildProgress } from '../agent/index.js'
import { createAssetStore } from '../assets/index.js'
import { createLogger } from '../log.js'
import { loadSettings } from '../settings/index.js'
import { printJson, UsageError, type GlobalOptions } from './common.js'

const PHASE_LABEL: Record<BuildProgress['phase'], string> = {
  resolve: 'resolving',
  download: 'downloading',
  extract: 'unpacking',
  modules: 'modules',
  pack: 'packing',
  compress: 'compressing',
  done: 'done',
}

function mib(bytes: number): string {
  return (bytes / (1024 * 1024)).toFixed(1)
}

/** One line of progress: a bar when the phase knows its total, else the message alone. */
export function renderProgress(p: BuildProgress, width = 30): string {
  const label = PHASE_LABEL[p.phase].padEnd(11)
  if (p.total === undefined || p.total <= 0 || p.done === undefined) return `${label} ${p.message}`
  const ratio = Math.max(0, Math.min(1, p.done / p.total))
  const filled = Math.round(ratio * width)
  const bar = `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.round(ratio * 100)).padStart(3)}%`
  const amount = p.phase === 'download' ? ` ${mib(p.done)}/${mib(p.total)} MiB` : ` ${p.done}/${p.total}`
  return `${label} ${bar}${amount} ${p.message}`
}

interface ProgressStream {
  isTTY?: boolean
  columns?: number
  write(chunk: string): boolean
}

/**
 * A progress display: on a terminal one line redrawn in place; otherwise a line per phase (and per quarter of a
 * download), so logs stay readable.
 */
export function createProgressDisplay(stream: ProgressStream): { update(p: BuildProgress): void; end(): void } {
  let lastPhase = ''
  let lastQuarter = -1
  let drawn = false
  let lastDraw = 0
  return {
    update(p) {
      if (stream.isTTY) {
        const now = Date.now()
        // Redraw at most ~20 times a second, but always on a phase change or at 100 %.
        if (p.phase === lastPhase && now - lastDraw < 50 && p.done !== p.total) return
        lastDraw = now
        if (lastPhase && p.phase !== lastPhase) stream.write('\n')
        lastPhase = p.phase
        const cols = Math.max(40, (stream.columns ?? 100) - 1)
        stream.write(`\r${renderProgress(p).slice(0, cols).padEnd(cols)}`)
        drawn = true
        return
      }
      const quarter = p.total ? Math.floor(((p.done ?? 0) / p.total) * 4) : -1
      if (p.phase !== lastPhase || (p.phase === 'download' && quarter !== lastQuarter)) stream.write(`${renderProgress(p)}\n`)
      lastPhase = p.phase
      lastQuarter = quarter
    },
    end() {
      if (stream.isTTY && drawn) stream.write('\n')
    },
  }
}

/** Builds the agent assets; returns the exit code (0 built or up to date, 1 failed, 2 usage). */
export async function assetsBuildAgent(values: GlobalOptions & { cacheDir?: string; kernelPackage?: string; force?: boolean; arch?: string }): Promise<number> {
  const arch = values.arch ?? 'amd64'
  if (!isDebArch(arch)) throw new UsageError(`--arch: amd64 or arm64, not '${arch}'`)
  const settings = loadSettings({ ...(values.config ? { file: values.config } : {}), overrides: values.set ?? [] })
  const rel = agentAssetDir(arch)
  const outDir = join(settings.assetsDir, rel)
  const cacheDir = values.cacheDir ?? join(settings.dataDir, 'cache')
  const log = createLogger({ level: 'warn', destination: process.stderr })
  const display = createProgressDisplay(process.stderr)
  try {
    const built = await buildAgentAssets({
      arch,
      outDir,
      cacheDir,
      log,
      onProgress: (p) => display.update(p),
      ...(values.kernelPackage ? { kernelPackage: values.kernelPackage } : {}),
      ...(values.force ? { force: true } : {}),
    })
    display.end()
    // Recorded like fetched files, so `assets list` checks them (their source: the packages they were built from).
    const store = createAssetStore({ dir: settings.assetsDir })
    const source = describeSource(built.source)
    for (const name of ['vmlinuz', 'agent.img']) await store.recordFile(join(rel, name), { source, verified: null })
    // The build's own record (what it was built from, to reuse it) sits beside them: recorded too, so no listing
    // shows it as a file nobody accounts for.
    await store.recordFile(join(rel, 'agent.img.manifest.json'), { source: `build record of ${join(rel, 'agent.img')}`, verified: null, expect: null })
    if (values.json) printJson({ ...built, outDir, cacheDir })
    else {
      console.log(
        `agent (${arch}) ${built.cached ? 'up to date' : 'built'} in ${outDir}: vmlinuz ${mib(built.bytes.kernel)} MiB, agent.img ${mib(built.bytes.initramfs)} MiB, kernel ${built.kernelVersion}`,
      )
    }
    return 0
  } catch (err) {
    display.end()
    throw err
  }
}
