import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'

export const REPO = resolve(import.meta.dirname, '..', '..')
export const BIN = join(REPO, 'bin', 'rackboot.mjs')

export interface CliResult {
  code: number | null
  stdout: string
  stderr: string
}

export function tempCwd(prefix = 'rb-cli-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/** Runs the real CLI as a user would, in `cwd`. */
export function rackboot(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): CliResult {
  const res = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd,
    env: { ...process.env, ...options.env },
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 60_000,
  })
  return { code: res.status, stdout: res.stdout, stderr: res.stderr }
}

/** Starts `rackboot serve` in the background; resolves once its log says it is serving. */
export async function startServe(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }) {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  child.stdout.on('data', (d) => (out += d))
  child.stderr.on('data', (d) => (out += d))
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)))
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`serve did not start in time:\n${out}`)), options.timeoutMs ?? 30_000)
    const check = () => {
      if (out.includes('rackboot is serving')) {
        clearTimeout(timer)
        res()
      }
    }
    child.stdout.on('data', check)
    child.stderr.on('data', check)
    void exited.then((code) => {
      clearTimeout(timer)
      rej(new Error(`serve exited with ${code}:\n${out}`))
    })
  })
  return {
    child,
    output: () => out,
    async stop(): Promise<number | null> {
      if (child.exitCode === null) child.kill('SIGTERM')
      return exited
    },
  }
}

/** As `rackboot`, but without blocking this process's event loop (for tests that serve something to the CLI). */
export function rackbootAsync(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
    child.once('exit', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}
