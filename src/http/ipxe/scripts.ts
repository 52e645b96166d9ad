// iPXE scripts as pure functions (vars) → text. iPXE expands ${...} everywhere and has no escape, so every value
// we interpolate is checked to carry no '$', '{', '}' or whitespace where iPXE would split or expand it.

function safe(value: string, what: string): string {
  if (/[\s${}]/.test(value)) throw new Error(`unsafe ${what} for an iPXE script: ${JSON.stringify(value)}`)
  return value
}

/** Our own URLs that carry iPXE variables on purpose (the identity query): only whitespace is refused. */
function template(value: string, what: string): string {
  if (/\s/.test(value)) throw new Error(`unsafe ${what} for an iPXE script: ${JSON.stringify(value)}`)
  return value
}

/** Text shown with `echo`: drop what iPXE would expand or mangle. */
function say(text: string): string {
  return text.replace(/[${}\r\n]/g, '').slice(0, 200)
}

/** The query iPXE fills in itself: the same on every chain so a machine is always identified the same way. */
export const IPXE_IDENTITY_QUERY =
  'mac=${net0/mac:hexhyp}&uuid=${uuid}&serial=${serial:uristring}&manufacturer=${manufacturer:uristring}' +
  '&product=${product:uristring}&arch=${buildarch}&platform=${platform}'

/** The constant first stage (also what DHCP hands iPXE): fetch the per-machine script with the machine's facts. */
export function bootstrapScript(baseUrl: string): string {
  return ['#!ipxe', `chain --replace --autofree ${safe(baseUrl, 'base URL')}/boot.ipxe?${IPXE_IDENTITY_QUERY} || goto failed`, 'exit', ':failed', 'echo rackboot: cannot fetch the boot script, retrying in 10 s', 'sleep 10', `chain --replace --autofree ${baseUrl}/boot.ipxe?${IPXE_IDENTITY_QUERY}`, ''].join('\n')
}

export interface KernelBoot {
  kernelUrl: string
  initrdUrl: string
  /** File name the initrd gets in iPXE (and `initrd=` on the command line, for the EFI stub). */
  initrdName: string
  args: string[]
  /** Args that carry iPXE variables on purpose (e.g. BOOTIF=01-${net0/mac:hexhyp}): only whitespace is refused. */
  templateArgs?: string[]
  banner: string
  /** Where to go when a download fails: a retry of the whole script after a pause. */
  retryUrl: string
}

/** Boot a kernel + initramfs (discovery agent, Talos). A failed download retries the script, never hangs. */
export function kernelScript(k: KernelBoot): string {
  const args = [...k.args.map((a) => safe(a, 'kernel argument')), ...(k.templateArgs ?? []).map((a) => template(a, 'kernel argument'))]
  return [
    '#!ipxe',
    `echo ${say(k.banner)}`,
    `kernel ${safe(k.kernelUrl, 'kernel URL')} initrd=${safe(k.initrdName, 'initrd name')} ${args.join(' ')} || goto retry`,
    `initrd --name ${k.initrdName} ${safe(k.initrdUrl, 'initrd URL')} || goto retry`,
    'boot || goto retry',
    ':retry',
    'echo rackboot: download or boot failed, retrying in 15 s',
    'sleep 15',
    `chain --replace --autofree ${template(k.retryUrl, 'retry URL')}`,
    '',
  ].join('\n')
}

/** Wait in the pool: sleep, then ask again (the server decides again each time). */
export function holdScript(input: { message: string; sleepSeconds: number; retryUrl: string }): string {
  return [
    '#!ipxe',
    `echo rackboot: ${say(input.message)}`,
    `echo rackboot: asking again in ${Math.round(input.sleepSeconds)} s`,
    `sleep ${Math.max(1, Math.round(input.sleepSeconds))}`,
    `chain --replace --autofree ${template(input.retryUrl, 'retry URL')}`,
    '',
  ].join('\n')
}

/** Leave iPXE so the firmware boots the next device (the local disk). */
export function localBootScript(message: string): string {
  return ['#!ipxe', `echo rackboot: ${say(message)}`, 'exit', ''].join('\n')
}
