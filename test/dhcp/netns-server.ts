// Starts the DHCP runner (fixtures/run-server.ts) inside a test namespace and follows its output.
import { mkdtempSync, rmSync, writeFileSync, chmodSync, readFileSync, existsSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { ChildProcess } from 'node:child_process'
import type { Netns } from '../support/netns.js'
import type { DhcpServerInfo } from '../../src/dhcp/index.js'

export const REPO = resolve(import.meta.dirname, '../..')
const RUNNER = join(REPO, 'test/dhcp/fixtures/run-server.ts')

export interface BootEventLine {
  mac: string
  uuid: string | null
  arch: number | null
  clientType: string | null
  isIpxe: boolean
  message: string
  reply: string
  mode: string
  ip?: string
  bootFile?: string
}

export interface RunningServer {
  proc: ChildProcess
  info: DhcpServerInfo
  events: BootEventLine[]
  stderr(): string
  /** Stops with SIGTERM and returns the final metrics text. */
  stop(): Promise<string>
}

export async function startServerIn(ns: Netns, config: unknown, timeoutMs = 60_000): Promise<RunningServer> {
  const proc = ns.spawn(['node', '--import', 'tsx', RUNNER, JSON.stringify(config)], { cwd: REPO, stdio: ['pipe', 'pipe', 'pipe'] })
  const events: BootEventLine[] = []
  let err = ''
  let buf = ''
  let finalMetrics: string | null = null
  let onReady: ((info: DhcpServerInfo) => void) | null = null
  let onMetrics: ((m: string) => void) | null = null
  proc.stderr?.on('data', (d: Buffer) => {
    err += d.toString()
    if (err.length > 200_000) err = err.slice(-100_000)
  })
  proc.stdout?.on('data', (d: Buffer) => {
    buf += d.toString()
    let nl
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      if (line.startsWith('READY ')) onReady?.(JSON.parse(line.slice(6)) as DhcpServerInfo)
      else if (line.startsWith('EVENT ')) events.push(JSON.parse(line.slice(6)) as BootEventLine)
      else if (line.startsWith('METRICS ')) {
        finalMetrics = JSON.parse(line.slice(8)) as string
        onMetrics?.(finalMetrics)
      }
    }
  })
  const info = await new Promise<DhcpServerInfo>((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`DHCP runner not ready after ${timeoutMs} ms: ${err}`)), timeoutMs)
    onReady = (i) => {
      clearTimeout(timer)
      resolveReady(i)
    }
    proc.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`DHCP runner exited (${code}) before ready: ${err}`))
    })
  })
  return {
    proc,
    info,
    events,
    stderr: () => err,
    stop() {
      return new Promise((resolveStop) => {
        if (proc.exitCode !== null) return resolveStop(finalMetrics ?? '')
        const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000)
        onMetrics = () => undefined
        proc.once('exit', () => {
          clearTimeout(timer)
          resolveStop(finalMetrics ?? '')
        })
        proc.kill('SIGTERM')
      })
    },
  }
}

/** A scratch directory removed on teardown. */
export function scratch(t: { after(fn: () => void): void }, prefix = 'rb-dhcp-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A client hook script that writes its environment to DIR/<event>.env (udhcpc: $1; dhclient: $reason). */
export function envDumpScript(dir: string): string {
  const path = join(dir, 'dump-env.sh')
  writeFileSync(path, `#!/bin/sh\nev="\${1:-$reason}"\nenv > "${dir}/$ev.env.tmp" && mv "${dir}/$ev.env.tmp" "${dir}/$ev.env"\nexit 0\n`)
  chmodSync(path, 0o755)
  return path
}

export function readEnv(file: string): Record<string, string> | null {
  if (!existsSync(file)) return null
  const out: Record<string, string> = {}
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const eq = line.indexOf('=')
    if (eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1).replace(/^'(.*)'$/, '$1')
  }
  return out
}
