// `rackboot assets build agent`: builds the discovery agent (Debian kernel + busybox initramfs) into
// <assetsDir>/agent/, with a progress bar on stderr while the kernel package downloads and the image is packed.
import { join } from 'node:path'
import { buildAgentAssets, type BuildProgress } from '../agent/index.js'
import { createLogger } from '../log.js'
import { loadSettings } from '../settings/index.js'
import { printJson, type GlobalOptions } from './common.js'

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
export async function assetsBuildAgent(values: GlobalOptions & { cacheDir?: string; kernelPackage?: string; force?: boolean }): Promise<number> {
  const settings = loadSettings({ ...(values.config ? { file: values.config } : {}), overrides: values.set ?? [] })
  const outDir = join(settings.assetsDir, 'agent')
  const cacheDir = values.cacheDir ?? join(settings.dataDir, 'cache')
  const log = createLogger({ level: 'warn', destination: process.stderr })
  const display = createProgressDisplay(process.stderr)
  try {
    const built = await buildAgentAssets({
      outDir,
      cacheDir,
      log,
      onProgress: (p) => display.update(p),
      ...(values.kernelPackage ? { kernelPackage: values.kernelPackage } : {}),
      ...(values.force ? { force: true } : {}),
    })
    display.end()
    if (values.json) printJson({ ...built, outDir, cacheDir })
    else {
      console.log(
        `agent ${built.cached ? 'up to date' : 'built'} in ${outDir}: vmlinuz ${mib(built.bytes.kernel)} MiB, agent.img ${mib(built.bytes.initramfs)} MiB, kernel ${built.kernelVersion}`,
      )
    }
    return 0
  } catch (err) {
    display.end()
    throw err
  }
}
