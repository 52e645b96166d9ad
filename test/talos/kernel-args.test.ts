import { test } from 'node:test'
import assert from 'node:assert/strict'
import { defaultKernelArgs, kernelArgs } from '../../src/talos/index.js'
import { isRackbootError } from '../../src/errors.js'
import { Cmdline } from '../../src/talos/cmdline.js'

// Expected strings are Talos's own (pkg/imager/imager_test.go, shared/reference/talos.md §1.4).
const DEFAULTS: ReadonlyArray<[string, 'amd64' | 'arm64', string]> = [
  ['v1.7.0', 'amd64', 'talos.platform=metal console=ttyS0 console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512'],
  ['v1.7.0', 'arm64', 'talos.platform=metal console=ttyAMA0 console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512'],
  ['v1.8.0', 'amd64', 'talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512'],
  ['v1.9.5', 'amd64', 'talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512'],
  ['v1.10.1', 'amd64', 'talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512 selinux=1'],
  ['v1.10.1', 'arm64', 'talos.platform=metal console=ttyAMA0 console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on ima_template=ima-ng ima_appraise=fix ima_hash=sha512 selinux=1'],
  ['v1.11.0', 'amd64', 'talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1'],
  ['v1.11.0', 'arm64', 'talos.platform=metal console=ttyAMA0 console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1'],
  ['v1.12.11', 'amd64', 'talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1'],
  ['v1.13.0', 'amd64', 'talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never'],
  ['v1.13.9', 'arm64', 'talos.platform=metal console=ttyAMA0 console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never'],
  ['v1.14.0', 'amd64', 'talos.platform=metal console=tty0 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never'],
  ['v1.14.0', 'arm64', 'talos.platform=metal console=ttyAMA0 console=tty0 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never'],
  // The imager's quirks drop pre-release tags: rc.1 of 1.14 already has the 1.14 line.
  ['v1.14.0-rc.1', 'amd64', 'talos.platform=metal console=tty0 slab_nomerge pti=on consoleblank=0 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never'],
  ['1.13', 'amd64', 'talos.platform=metal console=tty0 init_on_alloc=1 slab_nomerge pti=on consoleblank=0 nvme_core.io_timeout=4294967295 printk.devkmsg=on selinux=1 module.sig_enforce=1 proc_mem.force_override=never'],
]

for (const [version, arch, expected] of DEFAULTS) {
  test(`default kernel args for Talos ${version} ${arch}`, () => {
    assert.equal(defaultKernelArgs(version, arch).join(' '), expected)
    // With nothing added, kernelArgs is exactly the imager's cmdline.
    assert.deepEqual(kernelArgs({ talosVersion: version, arch }), expected.split(' '))
  })
}

test('config URL, events sink and kernel log come after the defaults, one value each', () => {
  const url = 'http://198.18.0.1:8080/talos/config?m=abc&t=tok'
  const args = kernelArgs({
    talosVersion: 'v1.13.9',
    arch: 'amd64',
    configUrl: url,
    eventsSink: '198.18.0.1:8090',
    loggingKernel: 'tcp://198.18.0.1:8092/',
  })
  assert.deepEqual(args.slice(-3), [
    `talos.config=${url}`,
    'talos.events.sink=198.18.0.1:8090',
    'talos.logging.kernel=tcp://198.18.0.1:8092/',
  ])
  assert.equal(args[0], 'talos.platform=metal')
  assert.ok(args.includes('slab_nomerge') && args.includes('pti=on'))
})

test('console option replaces the platform console in place', () => {
  const args = kernelArgs({ talosVersion: 'v1.13.9', arch: 'amd64', console: ['ttyS1,115200n8', 'tty0'] })
  assert.deepEqual(args.slice(0, 3), ['talos.platform=metal', 'console=ttyS1,115200n8', 'console=tty0'])
  assert.equal(args.filter((a) => a.startsWith('console=')).length, 2)
})

test('extra args follow schematic semantics: console overrides, -arg deletes, others append', () => {
  const args = kernelArgs({
    talosVersion: 'v1.13.9',
    arch: 'amd64',
    extra: ['console=ttyS0', '-selinux', 'net.ifnames=0', 'ip=dhcp', 'ip=eth1:dhcp', '-module.sig_enforce=1', 'module.sig_enforce=0'],
  })
  assert.equal(args[1], 'console=ttyS0')
  assert.ok(!args.some((a) => a.startsWith('selinux')))
  assert.ok(args.includes('module.sig_enforce=0') && !args.includes('module.sig_enforce=1'))
  // Repeated keys stay together, in order, where the key first appeared.
  const ipAt = args.indexOf('ip=dhcp')
  assert.equal(args[ipAt + 1], 'ip=eth1:dhcp')
  assert.ok(args.includes('net.ifnames=0'))
})

test('removing a KSPP parameter or changing the platform is refused', () => {
  for (const extra of [['-slab_nomerge'], ['-pti'], ['pti=off', '-pti=on'], ['talos.platform=aws']]) {
    assert.throws(
      () => kernelArgs({ talosVersion: 'v1.13.9', arch: 'amd64', extra }),
      (e: unknown) => isRackbootError(e, 'RB_ERR_VALIDATION'),
      extra.join(' '),
    )
  }
})

test('bad inputs are validation errors', () => {
  const bad: Array<Parameters<typeof kernelArgs>[0]> = [
    { talosVersion: 'latest', arch: 'amd64' },
    { talosVersion: 'v1.13.9', arch: 'riscv64' as 'amd64' },
    { talosVersion: 'v1.13.9', arch: 'amd64', configUrl: 'http://x/a b' },
    { talosVersion: 'v1.13.9', arch: 'amd64', configUrl: 'gopher://x/' },
    { talosVersion: 'v1.13.9', arch: 'amd64', extra: ['x'.repeat(5000)] },
  ]
  for (const options of bad) {
    assert.throws(() => kernelArgs(options), (e: unknown) => isRackbootError(e, 'RB_ERR_VALIDATION'), JSON.stringify(options).slice(0, 80))
  }
})

test('secure boot adds lockdown=confidentiality before 1.14 only', () => {
  assert.ok(kernelArgs({ talosVersion: 'v1.13.9', arch: 'amd64', secureBoot: true }).includes('lockdown=confidentiality'))
  assert.ok(!kernelArgs({ talosVersion: 'v1.14.0', arch: 'amd64', secureBoot: true }).includes('lockdown=confidentiality'))
})

test('Cmdline keeps procfs semantics', () => {
  const c = new Cmdline(['a=1 b', 'a=2'])
  assert.equal(c.toString(), 'a=1 a=2 b')
  c.appendAll(['-a=1', 'c=3', '-b'], { deleteNegated: true })
  assert.equal(c.toString(), 'a=2 c=3')
  c.appendAll(['c=4'], { overwrite: ['c'] })
  assert.equal(c.toString(), 'a=2 c=4')
  c.setAll(['a=9'])
  assert.equal(c.toString(), 'a=9 c=4')
})
