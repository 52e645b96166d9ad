import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import type { Command } from 'commander'
import { buildProgram, commandPath, runCli } from '../../src/cli/program.js'
import { completionScript } from '../../src/cli/completion.js'
import { rackbootAsync, startApi, tempCwd } from '../support/cli.js'

// The command line itself: help for every group and command, suggestions for mistakes, exit codes, completion,
// and what the CLI does (and does not do) with no server, a missing data directory, and saved contexts.

/** Runs the CLI in this process, its own output captured (for help and parse errors: no command runs). */
async function inProcess(argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = ''
  let stderr = ''
  const code = await runCli(argv, { out: (t) => void (stdout += t), err: (t) => void (stderr += t) })
  return { code, stdout, stderr }
}

function everyCommand(root: Command): Command[] {
  return root.commands.flatMap((c) => (c.name() === 'help' ? [] : [c, ...everyCommand(c)]))
}

test('every group and command has --help (exit 0, on stdout); a group without a command shows its help as a usage error', async () => {
  const { program } = buildProgram()
  const commands = everyCommand(program)
  assert.ok(commands.length > 60, `${commands.length} commands`)
  for (const c of commands) {
    const path = commandPath(c).split(' ')
    const r = await inProcess([...path, '--help'])
    assert.equal(r.code, 0, `${path.join(' ')} --help: ${r.stderr}`)
    assert.match(r.stdout, new RegExp(`^Usage: rackboot ${path.join(' ')}\\b`), path.join(' '))
    assert.equal(r.stderr, '')
    if (c.commands.length) {
      const bare = await inProcess(path)
      assert.equal(bare.code, 2, path.join(' '))
      assert.match(bare.stderr, new RegExp(`^Usage: rackboot ${path.join(' ')} <command>`))
    }
  }
  // The top-level help names every command, nested ones too (the issue: build agent, logs, soft-off were missing).
  const top = await inProcess(['--help'])
  const text = top.stdout.replace(/\s+/g, ' ')
  for (const words of ['build agent', 'logs', 'soft-off', 'reset', 'bmc show|set|adopt|remove', 'completion', 'login', 'healthcheck', 'backup']) {
    assert.ok(text.includes(words), `top-level help names ${words}`)
  }
  const viaHelp = await inProcess(['help', 'power'])
  assert.equal(viaHelp.code, 0)
  assert.match(viaHelp.stdout, /^Usage: rackboot power <command>/)
  // --data-dir only where a local mode exists, named in its help.
  assert.match((await inProcess(['machines', 'list', '--help'])).stdout, /--data-dir <dir>\s+no server: open this data directory's database/)
  assert.doesNotMatch((await inProcess(['machines', 'release', '--help'])).stdout, /--data-dir/)
  assert.match((await inProcess(['power', 'on', '--help'])).stdout, /Global Options:[\s\S]*--server <url>/)
})

test('mistakes are usage errors (exit 2) in one line, with a suggestion; secrets typed as flags are never echoed', async () => {
  const cases: [string[], RegExp][] = [
    [['machines', 'list', '--lmit', '5'], /^rackboot machines list: unknown option '--lmit' \(did you mean --limit\?\); see rackboot machines list --help$/],
    [['machines', 'lst'], /^rackboot machines: unknown command 'lst' \(did you mean list\?\)/],
    [['mach'], /^rackboot: unknown command 'mach' \(did you mean machines\?\)/],
    [['bogus'], /^rackboot: unknown command 'bogus' \((did you mean \w+\?|one of: serve, login.*)\); see rackboot --help$/],
    [['zzzzzzzzzz'], /^rackboot: unknown command 'zzzzzzzzzz' \(one of: serve, login, logout, context, machines, power/],
    [['machines', 'show'], /^rackboot machines show: missing required argument 'machine'/],
    [['machines', 'show', 'a', 'b'], /^rackboot machines show: too many arguments/],
    [['machines', 'maintenance', 'sideways', 'a'], /^rackboot machines maintenance: command-argument value 'sideways' is invalid for argument 'mode'\. Allowed choices are on, off; see/],
    [['power', 'pxe', 'a', '--uefi', '--bios'], /^rackboot power pxe: option '--(uefi|bios)' cannot be used with option '--(bios|uefi)'/],
    [['machines', 'list', '--sort', 'colour'], /^rackboot machines list: --sort takes one of name, state, rack, serial, createdAt, updatedAt/],
    [['machines', 'bmc', 'set', 'a1', '--password', 'hunter2-secret'], /^rackboot machines bmc set: --password is not taken: secrets never go on the command line/],
    [['machines', 'bmc', 'set', 'a1', '--pasword=hunter2-secret'], /^rackboot machines bmc set: unknown option '--pasword=…'/],
  ]
  for (const [args, want] of cases) {
    const r = await inProcess(args)
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`)
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`)
    assert.match(r.stderr.trimEnd(), want, args.join(' '))
    assert.ok(!r.stderr.includes('hunter2'), 'a secret typed on the command line is not repeated')
  }
})

/** Completions bash offers for the words typed so far (the last one being completed). */
function bashComplete(script: string, words: string[]): string[] {
  const file = join(tempCwd('rb-compl-'), 'rackboot.bash')
  writeFileSync(file, script)
  const quoted = words.map((w) => `'${w}'`).join(' ')
  const out = execFileSync('bash', ['-c', `source '${file}'; COMP_WORDS=(${quoted}); COMP_CWORD=${words.length - 1}; _rackboot; printf '%s\\n' "\${COMPREPLY[@]}"`], { encoding: 'utf8' })
  return out.split('\n').filter(Boolean)
}

test('completion: bash completes commands, subcommands, flags and choices from the command tree; zsh has the same tree', async () => {
  const { program } = buildProgram()
  const bash = completionScript(program, 'bash')
  assert.deepEqual(bashComplete(bash, ['rackboot', 'mach']), ['machines'])
  assert.deepEqual(bashComplete(bash, ['rackboot', 'machines', 'l']), ['list', 'label', 'logs'])
  assert.deepEqual(bashComplete(bash, ['rackboot', 'machines', 'bmc', '']), ['show', 'set', 'adopt', 'remove'])
  // Flags of the command named so far (a flag's value is skipped), global ones included.
  assert.deepEqual(bashComplete(bash, ['rackboot', 'machines', 'list', '--state', 'ready', '--so']), ['--sort'])
  assert.ok(bashComplete(bash, ['rackboot', '--server', 'http://x', 'power', 'on', '--']).includes('--timeout'))
  assert.ok(bashComplete(bash, ['rackboot', 'power', 'on', '--']).includes('--context'))
  assert.deepEqual(bashComplete(bash, ['rackboot', 'machines', 'bmc', 'set', 'a1', '--type', '']), ['ipmi', 'redfish'])
  assert.deepEqual(bashComplete(bash, ['rackboot', 'completion', '']), ['bash', 'zsh'])
  assert.deepEqual(bashComplete(bash, ['rackboot', 'machines', 'maintenance', 'o']), ['on', 'off'])
  const zsh = completionScript(program, 'zsh')
  assert.match(zsh, /^#compdef rackboot\n/)
  assert.match(zsh, /'machines'\) reply=\('list:machines, as a table/)
  assert.match(zsh, /compdef _rackboot rackboot/)
  // The script the command prints is this one.
  const printed = await inProcess(['completion', 'bash'])
  assert.equal(printed.code, 0)
  assert.equal(printed.stdout, bash)
})

/** A port nothing listens on. */
async function closedPort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const port = (s.address() as { port: number }).port
  await new Promise((r) => s.close(r))
  return port
}

test('no server: a clear message naming the URL, exit 1; no ./data made anywhere; --data-dir reads never make a database', async () => {
  const cwd = tempCwd()
  const port = await closedPort()
  const missing = join(cwd, 'nowhere')
  const [unreachable, fallback, readLocal, listLocal, help] = await Promise.all([
    rackbootAsync(['machines', 'list'], { cwd, env: { RACKBOOT_URL: `http://127.0.0.1:${port}`, RACKBOOT_TOKEN: 'rbk_x' } }),
    // No RACKBOOT_URL, no context, no settings file: the settings' default address, as before.
    rackbootAsync(['machines', 'show', 'r1', '--set', `http.port=${port}`], { cwd }),
    rackbootAsync(['tokens', 'list', '--data-dir', missing], { cwd }),
    rackbootAsync(['machines', 'list', '--data-dir', missing], { cwd }),
    rackbootAsync(['machines', '--help'], { cwd }),
  ])
  assert.equal(unreachable.code, 1, unreachable.stderr)
  assert.equal(unreachable.stderr, `rackboot machines list: cannot reach rackboot at http://127.0.0.1:${port}: connection refused (is \`rackboot serve\` running? set RACKBOOT_URL or run \`rackboot login\`)\n`)
  assert.ok(!unreachable.stderr.includes('rbk_x'))
  assert.equal(fallback.code, 1)
  assert.match(fallback.stderr, new RegExp(`cannot reach rackboot at http://127\\.0\\.0\\.1:${port}: connection refused`))
  for (const r of [readLocal, listLocal]) {
    assert.equal(r.code, 1, r.stderr)
    assert.match(r.stderr, new RegExp(`no rackboot database at ${missing}/rackboot\\.db: --data-dir names the server's data directory \\(nothing was created there\\)`))
  }
  assert.equal(help.code, 0)
  assert.match(help.stdout, /^Usage: rackboot machines <command>/)
  assert.equal(existsSync(missing), false, 'nothing made for a read')
  assert.deepEqual(readdirSync(cwd), [], 'no ./data, nothing at all in the working directory')
})

test('login checks the token and saves a context (0600, in a 0700 directory); tokens are never printed; contexts are used, listed, removed', async (t) => {
  const api = await startApi()
  t.after(() => api.close())
  const cwd = tempCwd()
  const config = join(cwd, 'conf', 'rackboot', 'cli.yaml')
  const env = { RACKBOOT_CLI_CONFIG: config }
  const admin = api.secrets.admin
  const wrong = await rackbootAsync(['login', api.url, '--token', 'rbk_wrong-token-0000'], { cwd, env })
  assert.equal(wrong.code, 1)
  assert.match(wrong.stderr, /refused the API token: the API token is unknown, revoked or expired/)
  assert.equal(existsSync(config), false, 'nothing saved for a token the server refused')

  const login = await rackbootAsync(['login', api.url, '--context', 'lab'], { cwd, env: { ...env, RACKBOOT_TOKEN: admin } })
  assert.equal(login.code, 0, login.stderr)
  assert.match(login.stdout, new RegExp(`logged in to ${api.url} as token 'root' \\(scopes: admin\\)\\ncontext 'lab' saved in ${config} and made current`))
  assert.equal(statSync(config).mode & 0o777, 0o600)
  assert.equal(statSync(join(cwd, 'conf', 'rackboot')).mode & 0o777, 0o700)
  assert.match(readFileSync(config, 'utf8'), new RegExp(`current: "lab"[\\s\\S]*"lab":\\n {4}server: "${api.url}"\\n {4}token: "${admin}"`))
  // A second context, read-only, made current; then back to lab by name.
  const reader = await rackbootAsync(['login', api.url, '--token', api.secrets.read], { cwd, env })
  assert.equal(reader.code, 0, reader.stderr)
  assert.match(reader.stdout, /scopes: read[\s\S]*context '127\.0\.0\.1:\d+' saved/)

  const [viaCurrent, viaNamed, listed, json] = await Promise.all([
    // The current context (read-only) is used when nothing else names a server: reading works, deleting is refused.
    rackbootAsync(['machines', 'delete', 'nope', '--yes'], { cwd, env }),
    rackbootAsync(['tokens', 'list', '--context', 'lab'], { cwd, env }),
    rackbootAsync(['context', 'list'], { cwd, env }),
    rackbootAsync(['context', 'list', '--json'], { cwd, env }),
  ])
  assert.equal(viaCurrent.code, 1)
  assert.match(viaCurrent.stderr, /token 'reader' lacks the 'admin' scope/)
  assert.equal(viaNamed.code, 0, viaNamed.stderr)
  assert.match(viaNamed.stdout, /root\s+admin/)
  assert.match(listed.stdout, /^CURRENT\s+NAME\s+SERVER\s+TOKEN/m)
  assert.match(listed.stdout, /^\*\s+127\.0\.0\.1:\d+\s+http:\/\/127\.0\.0\.1:\d+\s+saved/m)
  assert.match(listed.stdout, /^-\s+lab\s+http/m)
  assert.equal(JSON.parse(json.stdout).current, `127.0.0.1:${new URL(api.url).port}`)
  for (const r of [login, reader, viaCurrent, viaNamed, listed, json]) {
    for (const secret of [admin, api.secrets.read]) assert.ok(!(r.stdout + r.stderr).includes(secret), `a token was printed: ${r.stdout}${r.stderr}`)
  }
  const use = await rackbootAsync(['context', 'use', 'lab'], { cwd, env })
  assert.equal(use.code, 0, use.stderr)
  const logout = await rackbootAsync(['logout'], { cwd, env })
  const missing = await rackbootAsync(['machines', 'list', '--context', 'prod'], { cwd, env })
  assert.equal(logout.code, 0, logout.stderr)
  assert.match(logout.stdout, /context 'lab' and its token removed/)
  assert.equal(missing.code, 2)
  assert.match(missing.stderr, /^rackboot machines list: no context 'prod' in .*cli\.yaml \(there are: 127\.0\.0\.1:\d+\)$/m)
  const after = readFileSync(config, 'utf8')
  assert.ok(!after.includes(admin), 'the logged-out token is gone from the file')
  assert.match(after, /current: null/)
})
