import { isRackbootError } from './errors.js'
import { VERSION } from './version.js'

const USAGE = `rackboot ${VERSION}: bare-metal provisioning (DHCP, TFTP, iPXE, HTTP) for Talos Linux

usage: rackboot <command> [options]

  serve                               run the server
  machines list|show|accept|label|delete|retry|replace|logs|bmc
  inventory import|export             declarative inventory files <-> database
  tokens create|list|revoke           API tokens
  assets list|fetch|import            boot assets: iPXE, Talos kernels and initramfs images
  power status|on|off|cycle|pxe|...   drive machines' BMCs (IPMI, Redfish): one command, one action, verified
  classes list|test                   which class (and profile) a machine gets, and why
  clusters create|list|talosconfig    Talos clusters: secrets, admin talosconfig
  version

Every command takes --config FILE, --set key=value and --help; lists take --json.`

type Command = (args: string[]) => Promise<number>

const COMMANDS: Record<string, () => Promise<Command>> = {
  serve: async () => (await import('./cli/serve.js')).serveCommand,
  machines: async () => (await import('./cli/machines.js')).machinesCommand,
  inventory: async () => (await import('./cli/inventory.js')).inventoryCommand,
  tokens: async () => (await import('./cli/tokens.js')).tokensCommand,
  assets: async () => (await import('./cli/assets.js')).assetsCommand,
  power: async () => (await import('./cli/power.js')).powerCommand,
  classes: async () => (await import('./cli/classes.js')).classesCommand,
  clusters: async () => (await import('./cli/clusters.js')).clustersCommand,
}

/** Exit codes: 0 done, 1 failed, 2 bad usage or bad settings. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(USAGE)
    return name ? 0 : 2
  }
  if (name === 'version' || name === '--version') {
    console.log(VERSION)
    return 0
  }
  const load = COMMANDS[name]
  if (!load) {
    console.error(`rackboot: unknown command '${name}'\n\n${USAGE}`)
    return 2
  }
  try {
    return await (await load())(rest)
  } catch (err) {
    if (isRackbootError(err)) {
      console.error(`rackboot ${name}: ${err.message}`)
      const details = err.details as { errors?: string[] } | { message?: string }[] | undefined
      if (Array.isArray(details) && details.length > 1) {
        for (const d of details.slice(1, 20)) {
          const p = d as { file?: string; line?: number; column?: number; field?: string; message?: string }
          if (p.file) console.error(`  ${p.file}:${p.line}:${p.column}: ${p.field}: ${p.message}`)
        }
      }
      return err.code === 'RB_ERR_SETTINGS' || err.code === 'RB_ERR_VALIDATION' || err.code === 'RB_ERR_INVENTORY_FILE' ? 2 : 1
    }
    console.error(`rackboot ${name}: unexpected error:`, err)
    return 1
  }
}

// `rackboot machines list | head`: the reader went away, which is not a failure of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

const code = await main(process.argv.slice(2))
// Let stdout drain; serve returns only after shutdown.
process.exitCode = code
