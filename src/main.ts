// rackboot's entry. The command tree (commander) loads at once; each command's module only when it runs.
import { runCli } from './cli/program.js'

// `rackboot machines list | head`: the reader went away, which is not a failure of ours.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(0)
  throw err
})

/** Exit codes: 0 done, 1 failed, 2 bad usage or bad settings. */
export const main = runCli

const code = await runCli(process.argv.slice(2))
// Let stdout drain; serve returns only after shutdown.
process.exitCode = code
// The command is done: nothing left open (a keep-alive socket, a worker a failed start left behind) may hold the
// process, which would look like a hang. Unref'd: a process with nothing left exits at once, as usual. Output still
// on its way to a slow reader is let through first (writes to a pipe are asynchronous: exit would cut them short).
const exitWhenDrained = (): void => {
  if (process.stdout.writableLength > 0 || process.stderr.writableLength > 0) setTimeout(exitWhenDrained, 100).unref()
  else process.exit(code)
}
setTimeout(exitWhenDrained, 2000).unref()
