import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import type { Inventory, TokenScope } from '../../src/inventory/index.js'
import type { PowerManager } from '../../src/power/index.js'

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

/**
 * The environment the CLI runs with: this process's, without a server or token it might name, and with a CLI
 * configuration file of the test's own (never the developer's ~/.config/rackboot/cli.yaml); then `env` on top.
 */
export function cliEnv(cwd: string, env: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const base: NodeJS.ProcessEnv = { ...process.env, RACKBOOT_CLI_CONFIG: join(cwd, '.rackboot-cli.yaml') }
  for (const k of ['RACKBOOT_URL', 'RACKBOOT_SERVER', 'RACKBOOT_TOKEN', 'RACKBOOT_CONFIG', 'NO_COLOR', 'XDG_CONFIG_HOME']) delete base[k]
  return { ...base, ...env }
}

/** Runs the real CLI as a user would, in `cwd`. Blocks this process: not for a server running in this process. */
export function rackboot(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): CliResult {
  const res = spawnSync(process.execPath, [BIN, ...args], {
    cwd: options.cwd,
    env: cliEnv(options.cwd, options.env),
    encoding: 'utf8',
    timeout: options.timeoutMs ?? 60_000,
  })
  return { code: res.status, stdout: res.stdout, stderr: res.stderr }
}

/** Starts `rackboot serve` in the background; resolves once its log says it is serving. */
export async function startServe(args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }) {
  const child = spawn(process.execPath, [BIN, 'serve', ...args], { cwd: options.cwd, env: cliEnv(options.cwd, options.env), stdio: ['ignore', 'pipe', 'pipe'] })
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
    const child = spawn(process.execPath, [BIN, ...args], { cwd: options.cwd, env: cliEnv(options.cwd, options.env), stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d) => (stdout += d))
    child.stderr.on('data', (d) => (stderr += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 60_000)
    // 'close', not 'exit': a process can exit before its piped output has been read here (a quick command's
    // stdout then arrived empty, now and then).
    child.once('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** An API token made directly in a data directory's database (as `tokens create --data-dir` does), without a spawn. */
export async function seedToken(dataDir: string, scopes: TokenScope[] = ['admin'], name = 'test'): Promise<string> {
  const { prepareDataDir } = await import('../../src/cli/context.js')
  const { openSqliteInventory } = await import('../../src/inventory/index.js')
  prepareDataDir(dataDir, () => {})
  const inv = await openSqliteInventory({ file: join(dataDir, 'rackboot.db'), secretKeyFile: join(dataDir, 'secret.key') })
  try {
    return (await inv.tokens.create({ name, scopes }, Date.now())).secret
  } finally {
    await inv.close()
  }
}

/**
 * The API served from this process (test/api/support/app.ts on a database file), listening on 127.0.0.1, and the
 * CLI pointed at it through RACKBOOT_URL and RACKBOOT_TOKEN. Run the CLI with `cli` (never the blocking
 * `rackboot`: this process answers its requests).
 */
export async function startApi(options: { powerManager?: (inventory: Inventory) => PowerManager } = {}) {
  const { apiSetup } = await import('../api/support/app.js')
  const dir = tempCwd('rb-cli-api-')
  const setup = await apiSetup({ file: join(dir, 'rackboot.db'), ...(options.powerManager ? { powerManager: options.powerManager } : {}) })
  await setup.app.listen({ host: '127.0.0.1', port: 0 })
  const address = setup.app.server.address()
  const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`
  const env = (scope: TokenScope | 'none' = 'admin'): NodeJS.ProcessEnv => ({ RACKBOOT_URL: url, RACKBOOT_TOKEN: setup.secrets[scope] })
  return {
    ...setup, dir, url, env,
    /** The CLI against this server, in `cwd` (default: a directory of its own), with the `scope` token. */
    cli(args: string[], o: { cwd?: string; env?: NodeJS.ProcessEnv; scope?: TokenScope | 'none'; timeoutMs?: number } = {}): Promise<CliResult> {
      return rackbootAsync(args, { cwd: o.cwd ?? dir, env: { ...env(o.scope), ...o.env }, ...(o.timeoutMs ? { timeoutMs: o.timeoutMs } : {}) })
    },
  }
}

export type ApiServer = Awaited<ReturnType<typeof startApi>>

/**
 * The CLI run in this process (runCli), with `env` set for the call and its own output (usage errors, error lines,
 * help) captured. For tables of mistakes: what a command prints on success goes to this process's stdout, so run
 * those through `rackbootAsync`.
 */
export async function cliInProcess(argv: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  const { runCli } = await import('../../src/cli/program.js')
  const saved = new Map(Object.keys(env).map((k) => [k, process.env[k]]))
  Object.assign(process.env, env)
  let stdout = ''
  let stderr = ''
  try {
    const code = await runCli(argv, { out: (t) => void (stdout += t), err: (t) => void (stderr += t) })
    return { code, stdout, stderr }
  } finally {
    for (const [k, v] of saved) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}
