// The command tree (commander 14). Only commander and a few small modules load at start: each command's module is
// imported when that command runs, so `rackboot machines --help` or a remote `machines list` never loads fastify,
// SQLite or the settings schema.
import { Argument, Command, CommanderError, Option } from 'commander'
import { isRackbootError } from '../errors.js'
import { VERSION } from '../version.js'
import { colourEnabled, palette, type GlobalOptions } from './common.js'

/** Exit codes: 0 done, 1 failed, 2 bad usage or bad settings. */
export const EXIT = { ok: 0, failed: 1, usage: 2 } as const

type Opts = GlobalOptions & Record<string, unknown>
type Handler = (args: unknown[], opts: Opts, cmd: Command) => Promise<number>

const collect = (value: string, previous: string[] = []): string[] => [...previous, value]

/** `machines list`, `power on`: a command's name below the program. */
export function commandPath(cmd: Command): string {
  const names: string[] = []
  for (let c: Command | null = cmd; c && c.parent; c = c.parent) names.unshift(c.name())
  return names.join(' ')
}

/** A command's own subcommands (not commander's implicit `help`). */
function subcommandsOf(cmd: Command): Command[] {
  return cmd.commands.filter((c) => c.name() !== 'help')
}

const LOCAL_HELP = 'no server: open this data directory\'s database directly (a read never creates one)'

/** Where the command line's own output goes (help, usage errors, completion scripts): stdout and stderr by default. */
export interface Io {
  out(text: string): void
  err(text: string): void
}

const STDIO: Io = { out: (t) => void process.stdout.write(t), err: (t) => void process.stderr.write(t) }

interface Built {
  program: Command
  /** The exit code the action set. */
  code: number
}

export function buildProgram(io: Io = STDIO): Built {
  const built: Built = { program: new Command('rackboot'), code: EXIT.ok }
  const program = built.program
  const out = palette(process.stdout)

  /** Runs a command's handler, its exit code kept for main. */
  const run = (handler: Handler) => async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command
    const opts = cmd.optsWithGlobals() as Opts
    built.code = await handler(args.slice(0, -2), opts, cmd)
  }

  program
    .description(`bare-metal provisioning (DHCP, TFTP, iPXE, HTTP) for Talos Linux (${VERSION})`)
    .usage('<command> [options]')
    .version(VERSION, '-V, --version', 'print the version')
    .option('-c, --config <file>', 'the server\'s settings file (default: ./rackboot.yaml or RACKBOOT_CONFIG)')
    .option('--set <key=value>', 'a setting, e.g. --set http.port=8081 (repeatable)', collect)
    .option('--server <url>', 'the rackboot server (default: RACKBOOT_URL, the current context, or the settings\' http.listen and http.port)')
    .option('--token <token>', 'API token (default: RACKBOOT_TOKEN or the current context; a flag shows in ps and shell history)')
    .option('--context <name>', 'a context saved by rackboot login (default: the current one)')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      // Errors are printed by runCli as one line; help goes to io.
      writeOut: (t) => io.out(t),
      writeErr: (t) => io.err(t),
      outputError: () => {},
      getOutHasColors: () => colourEnabled(process.stdout),
      getErrHasColors: () => colourEnabled(process.stderr),
    })
    .configureHelp({
      showGlobalOptions: true,
      // A group is listed with its commands (`machines: list, show, ...`), so the top-level help names every one.
      subcommandTerm: (cmd) => {
        const args = cmd.registeredArguments.map((a) => (a.required ? `<${a.name()}${a.variadic ? '...' : ''}>` : `[${a.name()}${a.variadic ? '...' : ''}]`))
        return subcommandsOf(cmd).length ? `${cmd.name()} <command>` : [cmd.name(), ...args].join(' ')
      },
      subcommandDescription: (cmd) => {
        const subs = subcommandsOf(cmd)
        if (subs.length === 0) return cmd.description()
        return `${cmd.description()}: ${subs.map((s) => (subcommandsOf(s).length ? `${s.name()} ${subcommandsOf(s).map((c) => c.name()).join('|')}` : s.name())).join(', ')}`
      },
      styleTitle: (s) => out.bold(s),
      styleSubcommandTerm: (s) => out.cyan(s),
    })

  // Shown by `rackboot version`; the flag works but would be noise under every command's global options.
  program.options.find((opt) => opt.long === '--version')?.hideHelp()

  const group = (parent: Command, name: string, description: string): Command =>
    parent.command(name).description(description).usage('<command> [options]')
  const json = (cmd: Command) => cmd.option('--json', 'print JSON')
  const local = (cmd: Command) => cmd.option('--data-dir <dir>', LOCAL_HELP)
  const machineArg = new Argument('<machine>', 'id, name, MAC, SMBIOS uuid or serial')
  const machinesArg = new Argument('<machine...>', 'id, name, MAC, SMBIOS uuid or serial')

  // serve
  program.command('serve')
    .description('run the server: HTTP (boot scripts, assets, API, /healthz, /metrics), TFTP and, when configured, DHCP')
    .action(run(async (_a, o) => (await import('./serve.js')).serveCommand(o)))

  // login, logout, context
  program.command('login')
    .description('check an API token against a server and save both as a context (the current one) in the CLI configuration')
    .argument('<url>', 'the server, e.g. http://10.0.0.2:8080')
    .option('--ca <file>', 'PEM of the CA that signed the server\'s certificate (https with a private CA)')
    .addHelpText('after', '\nThe token comes from --token or RACKBOOT_TOKEN; --context NAME names the context (default: the server\'s host).\n' +
      'The file is $RACKBOOT_CLI_CONFIG, or $XDG_CONFIG_HOME/rackboot/cli.yaml (~/.config/rackboot/cli.yaml), mode 0600.')
    .action(run(async ([url], o) => (await import('./login.js')).login(String(url), o)))
  program.command('logout')
    .description('forget the current context (or --context NAME) and its token')
    .action(run(async (_a, o) => (await import('./login.js')).logout(o)))
  const context = group(program, 'context', 'servers and tokens saved by rackboot login')
  json(context.command('list').description('the saved contexts (tokens are not shown)'))
    .action(run(async (_a, o) => (await import('./login.js')).contextList(o)))
  context.command('use').description('make a saved context the current one').argument('<name>')
    .action(run(async ([name], o) => (await import('./login.js')).contextUse(String(name), o)))
  context.command('remove').description('delete a saved context and its token').argument('<name>')
    .action(run(async ([name], o) => (await import('./login.js')).contextRemove(String(name), o)))

  // machines
  const machines = group(program, 'machines', 'the inventory\'s machines')
  const m = (name: string) => machines.command(name)
  local(json(m('list')
    .description('machines, as a table fitted to the terminal or as JSON')
    .option('--state <state>', 'only these states, comma-separated or repeated', collect)
    .option('--label <key=value>', 'only machines with this label (repeatable; all must match)', collect)
    .option('--rack <rack>', 'only this rack')
    .option('--search <text>', 'free text over id, name, serial, uuid and MACs')
    .option('--class <class>', 'only machines matching this class\'s selectors')
    .option('--selector <expr>', 'only machines matching a selector, e.g. "cpu.cores >= 32"')
    .option('--sort <field>', 'name, state, rack, serial, createdAt or updatedAt; -field for descending')
    .option('--limit <n>', 'at most this many (default 200; more than 1000 pages through the server\'s cursor)')
    .option('--all', 'every machine (follows the cursor to the end)')
    .option('--cursor <cursor>', 'start after this cursor (the `next` of an earlier --json page)'),
  )).action(run(async (_a, o) => (await import('./machines.js')).list(o)))
  local(json(m('show').description('one machine: hardware, NICs, BMC, network, disks, timeline').addArgument(machineArg)))
    .option('--timeline <n>', 'newest timeline events to show (default 20)')
    .action(run(async ([ref], o) => (await import('./machines.js')).show(String(ref), o)))
  local(m('accept').description('discovered -> ready (into the pool)').addArgument(machinesArg))
    .action(run(async ([refs], o) => (await import('./machines.js')).accept(refs as string[], o)))
  local(m('label').description('set (key=value) or remove (key-) labels').addArgument(machineArg).argument('<change...>', 'key=value or key-'))
    .action(run(async ([ref, changes], o) => (await import('./machines.js')).label(String(ref), changes as string[], o)))
  local(m('retry').description('failed -> provisioning, failure counts reset; PXE-booted through its BMC by the server').addArgument(machinesArg))
    .option('--reason <text>', 'recorded on the timeline')
    .option('--no-pxe', 'do not PXE-boot it now through its BMC')
    .action(run(async ([refs], o) => (await import('./machines.js')).retry(refs as string[], o)))
  local(json(m('replace').description('a ready machine of the same class and role takes its place; it is released (wiped), or stays quarantined if it failed').addArgument(machineArg)))
    .option('--key <key>', 'idempotency key: a retried call with the same key gives the first result')
    .option('--power-on', 'PXE-boot the replacement now through its BMC')
    .action(run(async ([ref], o) => (await import('./machines.js')).replace(String(ref), o)))
  local(m('delete').description('remove machines, their NICs, hardware and BMC from the inventory').addArgument(machinesArg))
    .option('--yes', 'confirm')
    .option('--force', 'also a provisioning or installed machine')
    .action(run(async ([refs], o) => (await import('./machines.js')).remove(refs as string[], o)))
  json(m('logs').description('the kernel log Talos sent for this machine, from the running server').addArgument(machineArg))
    .option('-f, --follow', 'keep printing new lines')
    .option('--limit <n>', 'newest lines (default 200)')
    .action(run(async ([ref], o) => (await import('./machines.js')).logs(String(ref), o)))
  json(m('release').description('release allocated machines: the discovery agent wipes their disks, then they are ready again').addArgument(machinesArg))
    .option('--no-pxe', 'do not PXE-boot them now through their BMC (the wipe starts at their next boot)')
    .action(run(async ([refs], o) => (await import('./machines.js')).release(refs as string[], o)))
  m('maintenance').description('maintenance on (nothing boots) or off (back to new or discovered)')
    .addArgument(new Argument('<mode>', 'on or off').choices(['on', 'off']))
    .addArgument(machinesArg)
    .option('--reason <text>', 'recorded on the timeline')
    .action(run(async ([mode, refs], o) => (await import('./machines.js')).maintenance(mode === 'on', refs as string[], o)))
  m('identify').description('blink the machines\' identify light through their BMCs').addArgument(machinesArg)
    .option('--seconds <n>', 'for this long (default: the BMC\'s default)')
    .option('--off', 'turn it off')
    .action(run(async ([refs], o) => (await import('./machines.js')).identify(refs as string[], o)))

  // machines bmc
  const bmc = group(machines, 'bmc', 'a machine\'s BMC: address, credentials (env:/file: only), settings')
  local(json(bmc.command('show').description('address, settings (never secrets), last power state, the address the agent reported').addArgument(machineArg)))
    .action(run(async ([ref], o) => (await import('./bmc.js')).show(String(ref), o)))
  const set = local(bmc.command('set').description('create the BMC (--type and --address) or change the settings given; the others stay').addArgument(machineArg))
  bmcSettings(set, true)
    .addHelpText('after', '\nA Redfish address may name the system: https://10.0.0.5/redfish/v1/Systems/1. Secrets are read from env:VAR or\n' +
      'file:PATH and sent to the server; they never go on the command line (ps, shell history).')
    .action(run(async ([ref], o) => (await import('./bmc.js')).set(String(ref), o)))
  const adopt = local(json(bmc.command('adopt')
    .description('set the BMC address to the one the discovery agent reported (review it with --dry-run on networks you do not trust)')
    .argument('[machine...]', 'id, name, MAC, SMBIOS uuid or serial')))
  bmcSettings(adopt, false)
    .option('--all', 'every machine whose reported address differs from the stored one (with --type: also machines without a record)')
    .option('--dry-run', 'show what would change, change nothing')
    .action(run(async ([refs], o) => (await import('./bmc.js')).adopt((refs as string[] | undefined) ?? [], o)))
  local(bmc.command('remove').description('remove the BMC record and its stored password and K_G').addArgument(machinesArg))
    .option('--yes', 'confirm')
    .action(run(async ([refs], o) => (await import('./bmc.js')).remove(refs as string[], o)))

  // power
  const power = group(program, 'power', 'drive machines\' BMCs (IPMI, Redfish), each action verified by reading the BMC back')
  power.addHelpText('after', '\nEvery action is sent once and verified; a request the BMC did not answer is never sent again. Many machines run at\n' +
    'once (--concurrency), one operation at a time per BMC; each gets at most --timeout seconds. Exit 1 when any failed.')
  const powerCommands: [string, string, boolean][] = [
    ['status', 'power state, asked from each machine\'s BMC', false],
    ['on', 'power on', false],
    ['off', 'hard power off', false],
    ['soft-off', 'ACPI shutdown (a hard off after power.softOffTimeoutMs)', false],
    ['cycle', 'power cycle (off then on); an off machine is powered on', false],
    ['reset', 'warm reset; an off machine is powered on', false],
    ['pxe', 'next boot from the network (read back and verified), then cycle or power on', true],
    ['netboot', 'like pxe, by the machine\'s boot method (pxe, uefi-http or virtual-media)', true],
    ['media-boot', 'insert rackboot\'s boot ISO as virtual media (Redfish) and boot from it', true],
    ['disk', 'next boot from the disk (read back and verified)', true],
    ['clear-override', 'remove any next-boot override (the firmware\'s own boot order)', false],
    ['boot-device', 'the next-boot override as the BMC reads it back', false],
  ]
  for (const [name, description, boot] of powerCommands) {
    const c = local(json(power.command(name).description(description).addArgument(machinesArg)))
      .option('--concurrency <n>', 'machines at once (default 16)')
      .option('--timeout <seconds>', 'the most one machine may take (default 300)')
    if (boot) {
      c.addOption(new Option('--uefi', 'UEFI boot override').conflicts('bios'))
        .addOption(new Option('--bios', 'legacy BIOS boot override').conflicts('uefi'))
      if (name !== 'media-boot') c.option('--persistent', 'on every boot, not only the next')
    }
    c.action(run(async ([refs], o) => (await import('./power.js')).power(name, refs as string[], o)))
  }

  // classes
  const classes = group(program, 'classes', 'which class (and profile) a machine gets, and why')
  local(json(classes.command('list').description('classes with their selectors and profiles')))
    .action(run(async (_a, o) => (await import('./classes.js')).list(o)))
  local(json(classes.command('test').description('which classes match this machine, selector by selector, and which one wins').addArgument(machineArg)))
    .action(run(async ([ref], o) => (await import('./classes.js')).test(String(ref), o)))

  // clusters
  const clusters = group(program, 'clusters', 'Talos clusters (secrets sealed at rest)')
  local(json(clusters.command('create').description('generate (or adopt) the cluster\'s Talos secrets; machines allocated to it get configs from them').argument('<name>')))
    .requiredOption('--endpoint <url>', 'Kubernetes API endpoint, https://HOST:6443')
    .requiredOption('--talos-version <version>', 'e.g. v1.13.9')
    .option('--kubernetes-version <version>', 'e.g. 1.34.1')
    .option('--secrets <file>', 'an existing secrets bundle (talosctl gen secrets) to adopt')
    .action(run(async ([name], o) => (await import('./clusters.js')).create(String(name), o)))
  local(json(clusters.command('list').description('clusters and how many machines each holds')))
    .action(run(async (_a, o) => (await import('./clusters.js')).list(o)))
  local(clusters.command('talosconfig').description('the admin talosconfig (a fresh os:admin certificate)').argument('<name>'))
    .option('-o, --out <file>', 'write it to this file (mode 0600) instead of stdout')
    .option('--endpoint <host>', 'Talos API endpoint (repeatable; default: the cluster endpoint\'s host)', collect)
    .option('--node <host>', 'default node (repeatable)', collect)
    .action(run(async ([name], o) => (await import('./clusters.js')).talosconfig(String(name), o)))

  // tokens
  const tokens = group(program, 'tokens', 'API tokens (scopes read < provision < admin)')
  tokens.addHelpText('after', '\nThe first token (before the server has any): rackboot tokens create admin --scope admin --data-dir DIR, on the\n' +
    'server\'s box, DIR being its data directory.')
  local(json(tokens.command('list').description('tokens (never their secrets)')))
    .action(run(async (_a, o) => (await import('./tokens.js')).list(o)))
  local(json(tokens.command('create').description('a new token; its secret is shown once').argument('<name>')))
    .requiredOption('--scope <scope>', 'read, provision or admin (repeatable or comma-separated)', collect)
    .option('--expires-days <n>', 'expires after this many days')
    .action(run(async ([name], o) => (await import('./tokens.js')).create(String(name), o)))
  local(tokens.command('revoke').description('revoke a token').argument('<token>', 'its id or name'))
    .action(run(async ([ref], o) => (await import('./tokens.js')).revoke(String(ref), o)))

  // inventory
  const inventory = group(program, 'inventory', 'declarative inventory files (machines, classes, profiles)')
  json(inventory.command('check').description('validate inventory files here, offline: no server, no database').argument('<path>', 'a directory of *.yaml or one file'))
    .action(run(async ([dir], o) => (await import('./inventory.js')).check(String(dir), o)))
  local(json(inventory.command('import').description('reconcile the files into the inventory (validated first: a bad file changes nothing)').argument('<path>', 'a directory of *.yaml or one file')))
    .option('--prune', 'delete what the files no longer declare (entries an earlier import made)')
    .option('--dry-run', 'show what would change, change nothing')
    .action(run(async ([dir], o) => (await import('./inventory.js')).importFiles(String(dir), o)))
  local(json(inventory.command('export').description('machines, classes and profiles as inventory files').argument('[dir]', 'write the files here (default: print them)')))
    .action(run(async ([dir], o) => (await import('./inventory.js')).exportFiles(dir === undefined ? undefined : String(dir), o)))

  // assets
  const assets = group(program, 'assets', 'boot assets: iPXE, Talos kernels and initramfs, the discovery agent')
  assets.addHelpText('after', '\nfetch, import and build work on the assets directory of this box (settings assetsDir): run them where the server runs.')
  json(assets.command('list').description('what the server has in its assets directory, checked against its manifest'))
    .option('--verify', 'hash every file against the manifest (reads every byte)')
    .option('--local', 'the assets directory on this box instead (settings assetsDir)')
    .action(run(async (_a, o) => (await import('./assets.js')).list(o)))
  const fetch = group(assets, 'fetch', 'download boot assets into the assets directory (verified)')
  json(fetch.command('talos').description('kernel + initramfs from the Talos release (sha512-verified) or the Image Factory (--schematic)').argument('<version>', 'e.g. v1.13.9'))
    .addOption(new Option('--arch <arch>', 'architecture').choices(['amd64', 'arm64']).default('amd64'))
    .option('--schematic <id>', 'an Image Factory schematic')
    .action(run(async ([version], o) => (await import('./assets.js')).fetchTalos(String(version), o)))
  json(fetch.command('ipxe').description('iPXE binaries from Debian\'s ipxe package (offline)'))
    .action(run(async (_a, o) => (await import('./assets.js')).fetchIpxe(o)))
  json(fetch.command('grub').description('GRUB netboot images built from Debian\'s GRUB packages (arm64 boots GRUB: Debian has no arm64 iPXE) into grub/'))
    .addOption(new Option('--arch <arch>', 'which image').choices(['arm64', 'amd64', 'all']).default('all'))
    .option('--cache-dir <dir>', 'downloaded packages, unpacked trees and private apt state (default: <dataDir>/cache)')
    .addHelpText('after', '\nDownloads grub-efi-arm64-bin and grub-efi-amd64-bin with apt-get download (a private apt configuration for the\n' +
      'foreign architecture under the cache directory: the host\'s dpkg architectures are not changed, nothing is\n' +
      'installed), checks each .deb against the archive\'s SHA256 and builds grub/grubnetaa64.efi and grub/grubnetx64.efi\n' +
      'with grub-mkimage (efinet, tftp and http built in; not signed: Secure Boot off for netboot). Offline, the cached\n' +
      'packages are used; or bring the files with \'rackboot assets import grubnetaa64.efi\'.')
    .action(run(async (_a, o) => (await import('./assets.js')).fetchGrub(o)))
  json(assets.command('import').description('add local files: Talos vmlinuz-<arch>/initramfs-<arch>.xz with --talos, iPXE and GRUB binaries by name, anything else with --to').argument('<file...>'))
    .option('--talos <version>', 'the files are this Talos version\'s kernel and initramfs')
    .addOption(new Option('--arch <arch>', 'architecture').choices(['amd64', 'arm64']).default('amd64'))
    .option('--schematic <id>', 'an Image Factory schematic')
    .option('--to <dir/>', 'put them in this directory of the assets')
    .option('--sha256 <hex>', 'the SHA-256 the release publishes for the one FILE: refused unless the bytes match')
    .option('--checksums <file>', 'the release\'s sha256sum.txt or sha512sum.txt: each FILE must be in it, with its hash')
    .action(run(async ([files], o) => (await import('./assets.js')).importAssets(files as string[], o)))
  const build = group(assets, 'build', 'build boot assets here')
  json(build.command('agent').description('the discovery agent (Debian kernel + busybox initramfs) into <assetsDir>/agent/ (arm64: agent/arm64/)'))
    .addOption(new Option('--arch <arch>', 'architecture').choices(['amd64', 'arm64']).default('amd64'))
    .option('--cache-dir <dir>', 'downloaded packages and unpacked trees (default: <dataDir>/cache)')
    .option('--kernel-package <name>', 'a specific kernel package, e.g. linux-image-6.1.0-56-amd64')
    .option('--force', 'rebuild even when the cached build is current')
    .addHelpText('after', '\nBuilds <assetsDir>/agent/vmlinuz and agent.img (served as /assets/agent/...; --arch arm64: agent/arm64/). The kernel\n' +
      'and its modules come from Debian\'s linux-image-<arch>, busybox from busybox-static, fetched with apt-get download\n' +
      'into the cache directory (another architecture through a private apt configuration there) and unpacked there;\n' +
      'nothing is installed on this host. A build whose inputs are unchanged is reused. Both files go in the manifest.')
    .action(run(async (_a, o) => (await import('./assets-agent.js')).assetsBuildAgent(o)))

  // backup, restore, healthcheck
  program.command('backup').description('a consistent copy of the database, while the server runs (back up the secrets key apart, once)').argument('<file>')
    .option('--data-dir <dir>', 'the data directory (default: the settings\' dataDir)')
    .action(run(async ([file], o) => (await import('./backup.js')).backupCommand(String(file), pick(o, ['config', 'set', 'dataDir']))))
  program.command('restore').description('put a backup in place of the data directory\'s database (the server stopped)').argument('<file>')
    .option('--data-dir <dir>', 'the data directory (default: the settings\' dataDir)')
    .option('--yes', 'replace the existing database')
    .action(run(async ([file], o) => (await import('./backup.js')).restoreCommand(String(file), pick(o, ['config', 'set', 'dataDir', 'yes']))))
  program.command('healthcheck').description('ask the local server\'s /healthz (exit 0 when it serves); for container health checks')
    .option('--timeout <seconds>', 'give up after this long')
    .action(run(async (_a, o) => {
      const timeout = o.timeout === undefined ? undefined : Number(o.timeout)
      if (timeout !== undefined && !(timeout > 0)) throw new (await import('./common.js')).UsageError(`--timeout expects a number of seconds, got '${o.timeout}'`)
      return (await import('./healthcheck.js')).healthcheckCommand({ ...pick(o, ['config', 'set']), ...(timeout ? { timeoutMs: Math.round(timeout * 1000) } : {}) })
    }))

  // completion, version
  program.command('completion').description('a shell completion script: source <(rackboot completion bash), or for zsh put it in a file on $fpath')
    .addArgument(new Argument('<shell>').choices(['bash', 'zsh']))
    .action(run(async ([shell]) => {
      const { completionScript } = await import('./completion.js')
      io.out(completionScript(program, String(shell) as 'bash' | 'zsh'))
      return EXIT.ok
    }))
  program.command('version').description('print the version').action(run(async () => {
    console.log(VERSION)
    return EXIT.ok
  }))

  // Subcommands inherit exitOverride and the output settings when made with .command(); the argument objects are
  // shared between commands, which commander allows (they are only read).
  return built
}

/** The BMC settings flags (secrets only as env:/file: references). */
function bmcSettings(cmd: Command, all: boolean): Command {
  cmd.addOption(new Option('--type <type>', 'ipmi or redfish').choices(['ipmi', 'redfish']))
  if (all) cmd.option('--address <host|url>', 'host or IP; Redfish also https://host[:port][/redfish/v1/Systems/<id>]')
  cmd.option('--port <n>', 'port (IPMI 623, Redfish 443 when not given)')
    .option('--username <name>', 'user name')
    .option('--password-from <ref>', 'the password, from env:VAR or file:PATH')
  if (!all) return cmd
  return cmd
    .option('--insecure', 'Redfish TLS: do not verify the certificate')
    .option('--fingerprint <sha256>', 'Redfish TLS: pin the certificate by its sha256')
    .option('--system-id <id>', 'Redfish: the system to drive, its Id or /redfish/v1/Systems/<id>')
    .option('--ca-file <pem>', 'Redfish TLS: the CA certificate(s) of this BMC')
    .addOption(new Option('--auth <auth>', 'Redfish authentication').choices(['auto', 'session', 'basic']))
    .option('--cipher-suites <list>', 'IPMI cipher suites in the order tried: 17,3')
    .addOption(new Option('--privilege <level>', 'IPMI session privilege').choices(['user', 'operator', 'administrator']))
    .option('--kg-from <ref>', 'IPMI K_G (hex), from env:VAR or file:PATH')
    .addOption(new Option('--boot-verify <mode>', 'IPMI boot override read-back').choices(['strict', 'device']))
    .addOption(new Option('--boot-method <method>', 'how the machine network-boots').choices(['pxe', 'uefi-http', 'virtual-media']))
    .option('--unset <name>', 'clear a setting (repeatable): port, username, password, fingerprint, insecure, system-id, ca, auth, cipher-suites, privilege, kg, boot-verify, boot-method', collect)
}

function pick<K extends string>(o: Opts, keys: readonly K[]): Partial<Record<K, never>> & Record<string, unknown> {
  return Object.fromEntries(keys.filter((k) => o[k] !== undefined).map((k) => [k, o[k]])) as Partial<Record<K, never>> & Record<string, unknown>
}

/** The command the words on the command line name, as far as they name one, and the words left. */
function locate(program: Command, argv: readonly string[]): Command {
  let cmd = program
  for (const word of argv) {
    if (word.startsWith('-')) continue
    const next = cmd.commands.find((c) => c.name() === word || c.aliases().includes(word))
    if (!next) break
    cmd = next
  }
  return cmd
}

/** commander's error in one line: `unknown option '--lmit' (did you mean --limit?)`; prefixes suggested for commands. */
function describeCommanderError(err: CommanderError, at: Command): string {
  // `--pasword=hunter2`: an option's value is never repeated (it may be a secret typed under a wrong name).
  let message = err.message.replace(/'(--?[^=' ]+)=[^']*'/g, "'$1=…'").replace(/\.$/, '').replace(/^error: /, '').replace(/\n\(Did you mean (.*)\?\)/, ' (did you mean $1?)').replace(/\s*\n\s*/g, ' ').trim()
  if (err.code === 'commander.unknownCommand' && !message.includes('did you mean')) {
    const word = /unknown command '([^']*)'/.exec(message)?.[1] ?? ''
    const names = at.commands.map((c) => c.name()).filter((n) => n !== 'help')
    const prefixed = word ? names.filter((n) => n.startsWith(word)) : []
    message += prefixed.length ? ` (did you mean ${prefixed.join(' or ')}?)` : ` (one of: ${names.join(', ')})`
  }
  return message
}

/** Runs the command line (without node and the script); returns the exit code. */
export async function runCli(argv: string[], io: Io = STDIO): Promise<number> {
  const built = buildProgram(io)
  const { program } = built
  let active: Command = program
  program.hook('preAction', (_this, actionCommand) => {
    active = actionCommand
  })
  const prefix = (cmd: Command) => `rackboot${commandPath(cmd) ? ` ${commandPath(cmd)}` : ''}`
  const err = palette(process.stderr)
  try {
    // Said before parsing, and the value never repeated: secrets do not go on the command line.
    const plain = argv.find((a) => /^--(password|kg)(=|$)/.test(a))
    if (plain) {
      const flag = plain.replace(/=.*/, '')
      const at = locate(program, argv)
      io.err(`${err.red(prefix(at))}: ${flag} is not taken: secrets never go on the command line (ps, shell history); use ${flag === '--kg' ? '--kg-from' : '--password-from'} env:VAR or file:PATH\n`)
      return EXIT.usage
    }
    await program.parseAsync(argv, { from: 'user' })
    return built.code
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') return EXIT.ok
      // `rackboot help machines` (0); a group named without a command: its help went to stderr, a usage error.
      if (e.code === 'commander.help') return e.exitCode === 0 ? EXIT.ok : EXIT.usage
      const at = locate(program, argv)
      io.err(`${err.red(prefix(at))}: ${describeCommanderError(e, at)}; see ${prefix(at)} --help\n`)
      return EXIT.usage
    }
    if (isRackbootError(e)) {
      io.err(`${err.red(prefix(active))}: ${e.message}\n`)
      const details = e.details as unknown
      if (Array.isArray(details) && details.length > 1) {
        for (const d of details.slice(1, 20)) {
          const p = d as { file?: string; line?: number; column?: number; field?: string; message?: string }
          if (p.file) io.err(`  ${p.file}:${p.line}:${p.column}: ${p.field}: ${p.message}\n`)
        }
        if (details.length > 20) io.err(`  (and ${details.length - 20} more)\n`)
      }
      return e.code === 'RB_ERR_SETTINGS' || e.code === 'RB_ERR_VALIDATION' || e.code === 'RB_ERR_INVENTORY_FILE' ? EXIT.usage : EXIT.failed
    }
    io.err(`${err.red(prefix(active))}: unexpected error: ${(e as Error)?.stack ?? String(e)}\n`)
    return EXIT.failed
  }
}
