// GRUB configs as pure functions (values in, grub.cfg text out): the GRUB rendering of a BootTarget, and the
// bootstrap a GRUB image with an HTTP config location starts from.
//
// GRUB reads a config with a shell-like lexer (grub-core/script/yylex.l): words split on blanks; `{ } | & $ ; < >`,
// quotes and `\` are special outside quotes; `$name` and `${name}` expand outside single quotes; `*`, `?` and `[`
// may glob where the regexp module is loaded. Inside single quotes everything is literal up to the next `'`, so
// every value we write is a bare word of harmless characters or single-quoted (a `'` inside becomes `'\''`, as in
// sh). A value with a control character (a newline would end the command) is refused.
//
// Every per-machine config has the same shape: a body (what to boot now) that sets `rackboot_next` to the location
// to ask next when it has to ask again, and a loop that `source`s that location until a body boots something or
// leaves GRUB. The loop runs once, in the config GRUB loaded first; sourced bodies skip it (`rackboot_loop` is
// set), so waiting for hours never nests configs (configfile would, and would clear the screen each time).

/** Characters GRUB's lexer takes literally in a bare word, with no globbing: anything else is quoted. */
const BARE = /^[A-Za-z0-9_.,:/=+@%^~-]+$/

// eslint-disable-next-line no-control-regex
const CONTROL = /[\x00-\x1f\x7f]/

/** One word for GRUB's parser that reaches the command as exactly `value`. */
export function grubWord(value: string, what = 'value'): string {
  if (CONTROL.test(value)) throw new Error(`unsafe ${what} for a GRUB config: ${JSON.stringify(value)}`)
  if (BARE.test(value)) return value
  return `'${value.replaceAll("'", `'\\''`)}'`
}

/** Text shown with `echo`: one line, no control characters, at most 200 characters, quoted. */
function say(text: string): string {
  // eslint-disable-next-line no-control-regex
  return grubWord(text.replace(/[\x00-\x1f\x7f]+/g, ' ').slice(0, 200))
}

/**
 * GRUB's name for a file behind an http:// URL: `(http,HOST[:PORT])/path?query`. GRUB 2.06 has no HTTPS, so any
 * other scheme is refused (set http.publicUrl to a plain http:// address machines reach).
 */
export function grubHttpPath(url: string): string {
  let u: URL
  try {
    u = new URL(url)
  } catch {
    throw new Error(`not a URL for a GRUB config: ${JSON.stringify(url)}`)
  }
  if (u.protocol !== 'http:') throw new Error(`GRUB loads files over plain http:// only, not ${JSON.stringify(url)}`)
  return `(http,${u.host})${u.pathname}${u.search}`
}

/** The loop that fetches and runs each next body; a body that could not be fetched is asked for again. */
function loop(): string[] {
  return [
    'if [ -z "$rackboot_loop" ]; then',
    '  set rackboot_loop=1',
    '  while [ -n "$rackboot_next" ]; do',
    '    set rackboot_url="$rackboot_next"',
    '    set rackboot_next=',
    '    set rackboot_got=',
    '    source "$rackboot_url"',
    '    if [ -z "$rackboot_got" ]; then',
    "      echo 'rackboot: cannot fetch the boot config, retrying in 10 s'",
    '      sleep 10',
    '      set rackboot_next="$rackboot_url"',
    '    fi',
    '  done',
    'fi',
  ]
}

/** First lines of every per-machine config: it was fetched (for the loop), nothing to ask next yet. */
function head(comment: string): string[] {
  return [`# rackboot: ${comment.replace(/[\r\n]+/g, ' ')}`, 'set rackboot_got=1', 'set rackboot_next=']
}

export interface GrubKernelBoot {
  banner: string
  /** http:// URLs; written as (http,HOST:PORT)/path?query. */
  kernelUrl: string
  initrdUrl: string
  /** Kernel arguments, each one word on the kernel command line (quoted for GRUB as needed). */
  args: string[]
  /** Where to ask again after a failed download or boot: a GRUB file name, e.g. (http,HOST:PORT)/grub/... */
  retry: string
}

/** Boot a kernel + initramfs. A failed download waits and asks again; it never boots a kernel without its initramfs. */
export function grubKernelConfig(k: GrubKernelBoot): string {
  const args = k.args.map((a) => grubWord(a, 'kernel argument'))
  return [
    ...head('boot a kernel'),
    `echo ${say(k.banner)}`,
    `if linux ${grubWord(grubHttpPath(k.kernelUrl), 'kernel URL')}${args.length > 0 ? ' ' + args.join(' ') : ''}; then`,
    `  if initrd ${grubWord(grubHttpPath(k.initrdUrl), 'initrd URL')}; then`,
    '    boot',
    '  fi',
    'fi',
    "echo 'rackboot: download or boot failed, retrying in 15 s'",
    'sleep 15',
    `set rackboot_next=${grubWord(k.retry, 'retry location')}`,
    ...loop(),
    '',
  ].join('\n')
}

/** Wait in the pool: say why, sleep, then ask again (the server decides again each time). */
export function grubHoldConfig(input: { message: string; sleepSeconds: number; retry: string }): string {
  return [
    ...head('wait, then ask again'),
    `echo ${say(`rackboot: ${input.message}`)}`,
    `echo ${say(`rackboot: asking again in ${Math.round(input.sleepSeconds)} s`)}`,
    `sleep ${Math.max(1, Math.round(input.sleepSeconds))}`,
    `set rackboot_next=${grubWord(input.retry, 'retry location')}`,
    ...loop(),
    '',
  ].join('\n')
}

/** Leave GRUB: UEFI firmware goes on to its next boot entry (the local disk). */
export function grubLocalConfig(message: string): string {
  return [...head('boot from the local disk'), `echo ${say(`rackboot: ${message}`)}`, 'exit', ...loop(), ''].join('\n')
}

/**
 * The first config of a GRUB that does not ask for `grub.cfg-01-<mac>` itself (an HTTP config location, or a
 * TFTP grub.cfg reached when the per-MAC one could not be had): ask for this machine's config by the MAC GRUB
 * booted from. `perMachine` is a GRUB file name holding GRUB variables on purpose (double-quoted: they expand).
 */
export function grubBootstrapConfig(perMachine: string): string {
  if (CONTROL.test(perMachine) || /["\\`]/.test(perMachine)) throw new Error(`unsafe per-machine location for a GRUB config: ${JSON.stringify(perMachine)}`)
  return [
    '# rackboot: GRUB bootstrap: fetch this machine\'s config by the MAC GRUB booted from',
    'set rackboot_got=1',
    `set rackboot_next="${perMachine}"`,
    ...loop(),
    '',
  ].join('\n')
}
