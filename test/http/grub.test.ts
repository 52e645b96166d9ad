// GRUB's boot path over HTTP: per-machine configs by MAC with the same decisions, tokens and kernel args as
// /boot.ipxe, rendered so GRUB's parser hands each argument to `linux` exactly as meant (checked with a parser of
// GRUB's quoting rules below, and with Debian's grub-script-check where grub-common is installed).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { connect, type AddressInfo } from 'node:net'
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createEventBus } from '../../src/events/bus.js'
import { buildApp } from '../../src/http/index.js'
import { createDownloadGate } from '../../src/http/download-gate.js'
import { grubWord } from '../../src/http/grub/config.js'
import { openSqliteInventory } from '../../src/inventory/index.js'
import { attachTimeline, createBootService, createConfigService, createLifecycle } from '../../src/lifecycle/index.js'
import { createConfigLinter } from '../../src/talos/index.js'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'
import { which } from '../../src/processes.js'
import { leaseAddress } from '../support/leases.js'

const MAC = '52:54:00:1a:b0:01'
const FILE = 'grub.cfg-01-52-54-00-1a-b0-01'
const HOST = { host: '198.18.0.1:8080' }

async function setup(options: { limit?: number; holdMode?: 'retry' | 'exit'; arm64Agent?: boolean } = {}) {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  await leaseAddress(inventory, '127.0.0.1', MAC)
  const log = silentLogger()
  const bus = createEventBus()
  const timeline = attachTimeline({ inventory, bus, log })
  const clock = { now: () => Date.now() }
  const lifecycle = createLifecycle({ inventory, bus, log, clock })
  const service = createBootService({ inventory, lifecycle, log, clock, policy: { holdMode: options.holdMode ?? 'retry', autoAccept: false } })
  const assetsDir = mkdtempSync(join(tmpdir(), 'rb-grub-assets-'))
  mkdirSync(join(assetsDir, 'agent'))
  writeFileSync(join(assetsDir, 'agent', 'vmlinuz'), Buffer.alloc(1000, 7))
  writeFileSync(join(assetsDir, 'agent', 'agent.img'), Buffer.alloc(1000, 9))
  if (options.arm64Agent !== false) {
    mkdirSync(join(assetsDir, 'agent', 'arm64'))
    writeFileSync(join(assetsDir, 'agent', 'arm64', 'vmlinuz'), Buffer.alloc(1000, 7))
    writeFileSync(join(assetsDir, 'agent', 'arm64', 'agent.img'), Buffer.alloc(1000, 9))
  }
  const gate = createDownloadGate({ limit: options.limit ?? 10, holdMs: 60_000 })
  const configs = createConfigService({ inventory, lifecycle, log, clock, linter: createConfigLinter() })
  const app = await buildApp({
    inventory, lifecycle, log, registry: createMetricsRegistry(), version: 'test',
    boot: { service, gate, assetsDir, publicUrl: '', hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: ['console=ttyS0,115200n8'], arm64: ['console=ttyAMA0,115200'] }, assetsDir }, configs },
  })
  return { inventory, lifecycle, app, timeline, async close() { await app.close(); await timeline.flush(); await inventory.close() } }
}

// --- GRUB's lexer (grub-core/script/yylex.l), as far as configs use it --------------------------------------------
// Words split on blanks; a command ends at an unquoted newline or ';'. Outside quotes `\x` is x; '...' is literal;
// "..." keeps `\"`, `\\`, `\$` escapes and expands variables; $name / ${name} expand outside single quotes. An
// unquoted { } | & < > is a token of its own in GRUB: in an argument it means the value was not quoted as needed.
function grubParse(text: string, env: Record<string, string> = {}): string[][] {
  const commands: string[][] = []
  let words: string[] = []
  let word: string | null = null
  const add = (s: string) => (word = (word ?? '') + s)
  const end = () => {
    if (word !== null) words.push(word)
    word = null
  }
  const endCommand = () => {
    end()
    if (words.length > 0) commands.push(words)
    words = []
  }
  const variable = (i: number): [string, number] => {
    if (text[i + 1] === '{') {
      const close = text.indexOf('}', i + 2)
      assert.ok(close > 0, 'unterminated ${')
      return [env[text.slice(i + 2, close)] ?? '', close + 1]
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*|^[0-9]+|^[?#*@]/.exec(text.slice(i + 1))
    assert.ok(m, `bare $ at ${i}`)
    return [env[m[0]] ?? '', i + 1 + m[0].length]
  }
  let i = 0
  while (i < text.length) {
    const c = text[i]!
    if (c === '#' && word === null) {
      while (i < text.length && text[i] !== '\n') i++
    } else if (c === '\n' || c === ';') {
      endCommand()
      i++
    } else if (c === ' ' || c === '\t') {
      end()
      i++
    } else if (c === "'") {
      const close = text.indexOf("'", i + 1)
      assert.ok(close > 0, `unterminated ' at ${i}`)
      add(text.slice(i + 1, close))
      i = close + 1
    } else if (c === '"') {
      add('')
      i++
      for (;;) {
        assert.ok(i < text.length, 'unterminated "')
        const d = text[i]!
        if (d === '"') break
        if (d === '\\' && '$\\"'.includes(text[i + 1] ?? '')) {
          add(text[i + 1]!)
          i += 2
        } else if (d === '$') {
          const [v, next] = variable(i)
          add(v)
          i = next
        } else {
          add(d)
          i++
        }
      }
      i++
    } else if (c === '\\') {
      add(text[i + 1] ?? '')
      i += 2
    } else if (c === '$') {
      const [v, next] = variable(i)
      add(v)
      i = next
    } else {
      assert.ok(!'{}|&<>'.includes(c), `unquoted ${c} at ${i}: ${JSON.stringify(text.slice(Math.max(0, i - 30), i + 30))}`)
      add(c)
      i++
    }
  }
  endCommand()
  return commands
}

/** The argv of the first command named `name` (also as the condition of an `if`). */
function command(cfg: string, name: string, env: Record<string, string> = {}): string[] {
  const found = grubParse(cfg, env).map((w) => (w[0] === 'if' || w[0] === 'while' ? w.slice(1) : w)).find((w) => w[0] === name)
  assert.ok(found, `no ${name} command in:\n${cfg}`)
  return found
}

/** What a config does before the loop that asks again (the loop is the same in every config). */
function body(cfg: string): string {
  const at = cfg.indexOf('if [ -z "$rackboot_loop" ]')
  assert.ok(at > 0, cfg)
  return cfg.slice(0, at)
}

const grubScriptCheck = which('grub-script-check')

function scriptCheck(t: { diagnostic(m: string): void }, cfg: string): void {
  if (!grubScriptCheck) {
    t.diagnostic('grub-script-check not installed (Debian package grub-common): GRUB syntax checked by the test parser only')
    return
  }
  const dir = mkdtempSync(join(tmpdir(), 'rb-grub-cfg-'))
  writeFileSync(join(dir, 'grub.cfg'), cfg)
  try {
    execFileSync(grubScriptCheck, [join(dir, 'grub.cfg')], { stdio: 'pipe' })
  } catch (err) {
    assert.fail(`grub-script-check refuses the config: ${(err as { stderr?: Buffer }).stderr}\n${cfg}`)
  }
}

test('a GRUB word reaches the command exactly, whatever the value', (t) => {
  const nasty = ['plain', 'a=b,c:d/e', "it's", 'a;b', 'a&b', '$x', '${x}', 'a"b', 'a b', "'", "''", '\\', 'a\\', '{x}', 'a|b', '<a>', '*?[', '#not-a-comment', '', 'tab\there'.replace('\t', ' '), 'ü€']
  const cfg = `echo ${nasty.map((v) => grubWord(v)).join(' ')}\n`
  assert.deepEqual(command(cfg, 'echo', { x: 'EXPANDED' }).slice(1), nasty)
  scriptCheck(t, cfg)
  for (const bad of ['a\nb', 'a\rb', 'nul\0']) assert.throws(() => grubWord(bad), /unsafe/)
})

test('an unknown machine asking for grub.cfg-01-<mac> gets the discovery agent with a token, its BOOTIF and a retry', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const res = await s.app.inject({ url: `/grub/${FILE}`, headers: HOST })
  assert.equal(res.statusCode, 200, res.body)
  assert.match(String(res.headers['content-type']), /text\/plain/)
  assert.equal(res.headers['cache-control'], 'no-store')
  const cfg = res.body
  scriptCheck(t, cfg)
  const machine = (await s.inventory.machines.byMac(MAC))!
  assert.equal(machine.state, 'new')
  const linux = command(cfg, 'linux')
  assert.equal(linux[1], `(http,198.18.0.1:8080)/assets/agent/vmlinuz?m=${machine.id}`)
  const args = linux.slice(2)
  assert.deepEqual(args.filter((a) => !a.startsWith('rackboot.token=')), [
    'console=ttyS0,115200n8', 'rackboot.report=http://198.18.0.1:8080/api/v1/agent/report', `rackboot.machine=${machine.id}`, 'rackboot.after=reboot', 'BOOTIF=01-52-54-00-1a-b0-01',
  ])
  assert.deepEqual(command(cfg, 'initrd').slice(1), [`(http,198.18.0.1:8080)/assets/agent/agent.img?m=${machine.id}`])
  // The token is the one /boot.ipxe would have minted: the agent's report is taken with it.
  const token = args.find((a) => a.startsWith('rackboot.token='))!.slice('rackboot.token='.length)
  const report = await s.app.inject({ method: 'POST', url: '/api/v1/agent/report', payload: { nics: [{ name: 'eth0', mac: MAC }] }, headers: { authorization: `Bearer ${token}` } })
  assert.equal(report.statusCode, 200, report.body)
  assert.equal(report.json().state, 'discovered')
  // A failed download waits and asks again over HTTP, at the next attempt.
  assert.deepEqual(command(cfg, 'set', {}), ['set', 'rackboot_got=1'])
  assert.ok(grubParse(cfg).some((w) => w.join(' ') === `set rackboot_next=(http,198.18.0.1:8080)/grub/${FILE}?attempt=1`), cfg)
  assert.ok(grubParse(cfg).some((w) => w[0] === 'boot'))
  // The colon form GRUB's ${net_default_mac} gives (from the bootstrap) names the same machine.
  const again = await s.app.inject({ url: '/grub/grub.cfg-01-52:54:00:1a:b0:01?cpu=x86_64&platform=efi', headers: HOST })
  assert.equal(again.statusCode, 200)
  assert.match(again.body, /waiting to be accepted/)
  assert.equal((await s.inventory.machines.get(machine.id))!.firmware, 'uefi')
  await s.timeline.flush()
  const scripts = (await s.inventory.events.list({ machineId: machine.id, types: ['boot.script'] })).map((e) => e.data.decision)
  assert.deepEqual(scripts, ['discovery', 'hold'])
})

test('install: the Talos kernel args, config URL and token as /boot.ipxe has them, quoted for GRUB', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  // Values a profile may carry that GRUB's parser would split, expand or choke on unquoted.
  const nasty = ['rackboot.x=a;b&c', 'rackboot.y=$HOME${x}', `rackboot.z="q"'q'`, 'rackboot.w=a|b<c>{d}', 'rackboot.v=a\\b', 'console=ttyS0,115200n8']
  await s.inventory.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: nasty, baseConfig: null, patches: [], managedBy: null }, 1)
  const m = await s.inventory.machines.create({ name: 'r1-u1', nics: [{ mac: MAC, name: null, boot: true }], state: 'provisioning', profile: 'w' }, 1)
  const cfg = (await s.app.inject({ url: `/grub/${FILE}`, headers: HOST })).body
  scriptCheck(t, cfg)
  const linux = command(cfg, 'linux', { HOME: 'EXPANDED', x: 'EXPANDED' })
  assert.equal(linux[1], `(http,198.18.0.1:8080)/assets/talos/v1.13.9/amd64/vmlinuz?m=${m.id}`)
  const args = linux.slice(2)
  for (const a of nasty) assert.ok(args.includes(a), `${JSON.stringify(a)} reaches linux as it is: ${JSON.stringify(args)}`)
  assert.equal(args[0], 'talos.platform=metal')
  assert.ok(args.includes('slab_nomerge') && args.includes('pti=on'))
  const configArg = args.find((a) => a.startsWith('talos.config='))!
  const token = /^talos\.config=http:\/\/198\.18\.0\.1:8080\/talos\/config\?t=([A-Za-z0-9]{32})$/.exec(configArg)?.[1]
  assert.ok(token, configArg)
  assert.equal((await s.inventory.bootTokens.verify(token, 'config', Date.now()))?.machineId, m.id)
  assert.ok(!args.some((a) => a.startsWith('BOOTIF=')), 'Talos finds its NIC itself')
  assert.ok(!args.some((a) => a.startsWith('initrd=')), 'GRUB passes the initrd to the kernel itself')
  assert.deepEqual(command(cfg, 'initrd').slice(1), [`(http,198.18.0.1:8080)/assets/talos/v1.13.9/amd64/initramfs.xz?m=${m.id}`])
  // The same args /boot.ipxe gives this machine (less the token, and iPXE's initrd= for the EFI stub), for values
  // iPXE can carry at all (no $, braces or blanks).
  await s.inventory.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64', schematic: null, kernelArgs: ['rackboot.x=a;b&c', `rackboot.z="q"'q'`, 'console=ttyS0,115200n8'], baseConfig: null, patches: [], managedBy: null }, 2)
  const ipxe = (await s.app.inject({ url: `/boot.ipxe?mac=52-54-00-1a-b0-01`, headers: HOST })).body
  const ipxeArgs = /^kernel \S+ initrd=initramfs\.xz (.*) \|\| goto retry$/m.exec(ipxe)![1]!.split(' ')
  const grubArgs = command((await s.app.inject({ url: `/grub/${FILE}`, headers: HOST })).body, 'linux').slice(2)
  const strip = (xs: string[]) => xs.map((a) => a.replace(/\?t=\w+$/, '?t=TOKEN'))
  assert.ok(ipxeArgs.includes(`rackboot.z="q"'q'`), ipxe)
  assert.deepEqual(strip(grubArgs), strip(ipxeArgs))
})

test('held, refused, blocked, local disk: GRUB waits and asks again, or leaves for the disk, as iPXE would', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const m = await s.inventory.machines.create({ nics: [{ mac: MAC, name: null, boot: true }], state: 'ready' }, 1)
  const held = (await s.app.inject({ url: `/grub/${FILE}`, headers: HOST })).body
  scriptCheck(t, held)
  assert.match(command(held, 'echo')[1]!, /^rackboot: m-\w+: ready: waiting to be allocated$/)
  const sleep1 = Number(command(held, 'sleep')[1])
  assert.ok(sleep1 >= 24 && sleep1 <= 36, `first wait ${sleep1}`)
  assert.ok(grubParse(held).some((w) => w.join(' ') === `set rackboot_next=(http,198.18.0.1:8080)/grub/${FILE}?attempt=1`), held)
  assert.ok(!grubParse(held).some((w) => w[0] === 'linux'))
  assert.equal(grubParse(body(held)).filter((w) => w[0] === 'sleep').length, 1)
  const later = (await s.app.inject({ url: `/grub/${FILE}?attempt=6`, headers: HOST })).body
  const sleep6 = Number(command(later, 'sleep')[1])
  assert.ok(sleep6 >= 240 && sleep6 <= 360, `capped wait ${sleep6}`)
  assert.match(later, /\?attempt=7'?\n/)

  // A MAC claimed from an address the network gives to another MAC: a hold with the reason, and never a token.
  await leaseAddress(s.inventory, '127.0.0.9', '02:00:00:00:00:09')
  const refused = await s.app.inject({ url: `/grub/${FILE}`, headers: HOST, remoteAddress: '127.0.0.9' })
  assert.equal(refused.statusCode, 200)
  scriptCheck(t, refused.body)
  assert.match(refused.body, /127\.0\.0\.9/)
  assert.doesNotMatch(refused.body, /token|talos\.config|linux/)
  assert.ok(grubParse(refused.body).some((w) => w.join(' ') === `set rackboot_next=(http,198.18.0.1:8080)/grub/${FILE}?attempt=1`))

  await s.inventory.machines.setState(m.id, 'ready', 'provisioning', Date.now())
  const blocked = (await s.app.inject({ url: `/grub/${FILE}`, headers: HOST })).body
  assert.match(command(blocked, 'echo')[1]!, /cannot boot: allocated, but no profile applies/)

  await s.inventory.machines.setState(m.id, 'provisioning', 'installed', Date.now())
  const local = (await s.app.inject({ url: `/grub/${FILE}`, headers: HOST })).body
  scriptCheck(t, local)
  assert.match(command(local, 'echo')[1]!, /installed: boot from disk/)
  assert.ok(grubParse(local).some((w) => w[0] === 'exit'))
  assert.ok(!grubParse(body(local)).some((w) => w[0] === 'linux' || w[0] === 'sleep'), local)

  const e = await setup({ holdMode: 'exit' })
  t.after(() => e.close())
  await e.inventory.machines.create({ nics: [{ mac: MAC, name: null, boot: true }], state: 'ready' }, 1)
  const exit = (await e.app.inject({ url: `/grub/${FILE}`, headers: HOST })).body
  assert.ok(grubParse(exit).some((w) => w[0] === 'exit'), exit)
})

test('past the download limit GRUB is told to wait for a slot, at the same attempt', async (t) => {
  const s = await setup({ limit: 1 })
  t.after(() => s.close())
  await leaseAddress(s.inventory, '127.0.0.2', '02:00:00:00:00:01')
  await leaseAddress(s.inventory, '127.0.0.3', '02:00:00:00:00:02')
  assert.match((await s.app.inject({ url: '/grub/grub.cfg-01-02-00-00-00-00-01', headers: HOST, remoteAddress: '127.0.0.2' })).body, /\nif linux /)
  const b = (await s.app.inject({ url: '/grub/grub.cfg-01-02-00-00-00-00-02?attempt=3', headers: HOST, remoteAddress: '127.0.0.3' })).body
  assert.match(b, /1 machines are downloading, waiting for a slot/)
  assert.ok(grubParse(b).some((w) => w.join(' ') === 'set rackboot_next=(http,198.18.0.1:8080)/grub/grub.cfg-01-02-00-00-00-00-02?attempt=3'), b)
})

test('the bootstrap asks for the per-machine config by ${net_default_mac}; other names and bad MACs are refused', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const boot = await s.app.inject({ url: '/grub/grub.cfg', headers: HOST })
  assert.equal(boot.statusCode, 200)
  scriptCheck(t, boot.body)
  const env = { net_default_mac: '52:54:00:1a:b0:01', grub_cpu: 'x86_64', grub_platform: 'efi' }
  const next = grubParse(boot.body, env).find((w) => w[0] === 'set' && w[1]!.startsWith('rackboot_next='))!
  assert.equal(next[1], 'rackboot_next=(http,198.18.0.1:8080)/grub/grub.cfg-01-52:54:00:1a:b0:01?cpu=x86_64&platform=efi')
  // What GRUB then asks for is a per-machine config.
  const url = next[1]!.replace('rackboot_next=(http,198.18.0.1:8080)', '')
  assert.match((await s.app.inject({ url, headers: HOST })).body, /rackboot\.token=/)
  for (const probe of ['grub.cfg-C6120001', 'grub.cfg-C6', 'grub.cfg-8c3f5a7e-1b2d-4c6e-9f01-23456789abcd', 'grub.cfg-01-52-54-00-1a-b0', 'x86_64-efi']) {
    assert.equal((await s.app.inject({ url: `/grub/${probe}`, headers: HOST })).statusCode, 404, probe)
  }
  assert.equal((await s.app.inject({ url: `/grub/${FILE}?attempt=lots`, headers: HOST })).statusCode, 400)
})

test('GRUB 2.06 drops the port from its Host header: the URLs it is given keep the port it came in on', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.app.listen({ host: '127.0.0.1', port: 0 })
  const port = (s.app.server.address() as AddressInfo).port
  // The request as GRUB 2.06 sends it (http.c: the ":<port>" it writes after the host is overwritten).
  const raw = await new Promise<string>((resolve, reject) => {
    const sock = connect(port, '127.0.0.1', () => sock.write(`GET /grub/${FILE} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: GRUB 2.06\r\n\r\n`))
    let got = ''
    sock.on('data', (d) => {
      got += d
      const length = /\r\nContent-Length: (\d+)\r\n/i.exec(got)
      const head = got.indexOf('\r\n\r\n')
      if (length && head > 0 && Buffer.byteLength(got.slice(head + 4)) >= Number(length[1])) {
        sock.destroy()
        resolve(got)
      }
    })
    sock.on('error', reject)
    sock.setTimeout(10_000, () => reject(new Error(`no full answer: ${got}`)))
  })
  assert.match(raw, /^HTTP\/1\.1 200 /)
  assert.match(raw, /\r\nContent-Length: \d+\r\n/, 'the header name GRUB matches byte for byte')
  assert.match(raw, new RegExp(`^if linux '\\(http,127\\.0\\.0\\.1:${port}\\)/assets/agent/vmlinuz\\?m=m-\\w+' .*rackboot\\.report=http://127\\.0\\.0\\.1:${port}/api/v1/agent/report `, 'm'))
  assert.match(raw, new RegExp(`^set rackboot_next='\\(http,127\\.0\\.0\\.1:${port}\\)/grub/${FILE}\\?attempt=1'$`, 'm'))
})

/** Commands only x86 GRUB has (linuxefi/initrdefi come from shim-era x86 patches; linux16 is i386-pc). */
function assertPortable(cfg: string): void {
  const names = new Set(grubParse(cfg).map((w) => (w[0] === 'if' ? w[1] : w[0])))
  for (const x86 of ['linuxefi', 'initrdefi', 'linux16', 'initrd16', 'chainloader']) assert.ok(!names.has(x86), `${x86} in:\n${cfg}`)
}

test('arm64 GRUB (grub_cpu arm64) in discovery: the arm64 agent, its console, a token, plain linux and initrd', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const cfg = (await s.app.inject({ url: `/grub/${FILE}?cpu=arm64&platform=efi`, headers: HOST })).body
  scriptCheck(t, cfg)
  assertPortable(cfg)
  const machine = (await s.inventory.machines.byMac(MAC))!
  assert.equal(machine.arch, 'arm64')
  const linux = command(cfg, 'linux')
  assert.equal(linux[1], `(http,198.18.0.1:8080)/assets/agent/arm64/vmlinuz?m=${machine.id}`)
  const args = linux.slice(2)
  assert.equal(args[0], 'console=ttyAMA0,115200')
  assert.ok(!args.some((a) => a.includes('ttyS0')), JSON.stringify(args))
  assert.match(args.find((a) => a.startsWith('rackboot.token=')) ?? '', /^rackboot\.token=\w{16,}$/)
  assert.ok(args.includes('BOOTIF=01-52-54-00-1a-b0-01'))
  assert.deepEqual(command(cfg, 'initrd').slice(1), [`(http,198.18.0.1:8080)/assets/agent/arm64/agent.img?m=${machine.id}`])
  // GRUB over TFTP asks without ?cpu=: the recorded arch (from this boot) still picks arm64.
  await s.inventory.machines.setState(machine.id, 'new', 'released', Date.now())
  assert.equal(command((await s.app.inject({ url: `/grub/${FILE}`, headers: HOST })).body, 'linux')[1], `(http,198.18.0.1:8080)/assets/agent/arm64/vmlinuz?m=${machine.id}`)
})

test('arm64 GRUB installing: Talos arm64 kernel, initramfs and console args, and nothing x86 in the config', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  await s.inventory.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: null, schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 1)
  const m = await s.inventory.machines.create({ nics: [{ mac: MAC, name: null, boot: true }], arch: 'arm64', state: 'provisioning', profile: 'w' }, 1)
  for (const query of ['?cpu=arm64&platform=efi', '']) {
    const cfg = (await s.app.inject({ url: `/grub/${FILE}${query}`, headers: HOST })).body
    scriptCheck(t, cfg)
    assertPortable(cfg)
    const linux = command(cfg, 'linux')
    assert.equal(linux[1], `(http,198.18.0.1:8080)/assets/talos/v1.13.9/arm64/vmlinuz?m=${m.id}`)
    assert.deepEqual(linux.slice(2, 5), ['talos.platform=metal', 'console=ttyAMA0', 'console=tty0'])
    assert.ok(linux.some((a) => /^talos\.config=http:\/\/198\.18\.0\.1:8080\/talos\/config\?t=\w{32}$/.test(a)), JSON.stringify(linux))
    assert.ok(!linux.some((a) => a.includes('ttyS0')), JSON.stringify(linux))
    assert.deepEqual(command(cfg, 'initrd').slice(1), [`(http,198.18.0.1:8080)/assets/talos/v1.13.9/arm64/initramfs.xz?m=${m.id}`])
  }
})

test('x86_64 GRUB is unchanged: the amd64 agent and Talos, ttyS0 consoles, the same portable commands', async (t) => {
  const s = await setup()
  t.after(() => s.close())
  const cfg = (await s.app.inject({ url: `/grub/${FILE}?cpu=x86_64&platform=efi`, headers: HOST })).body
  assertPortable(cfg)
  const machine = (await s.inventory.machines.byMac(MAC))!
  assert.equal(machine.arch, 'amd64')
  const linux = command(cfg, 'linux')
  assert.equal(linux[1], `(http,198.18.0.1:8080)/assets/agent/vmlinuz?m=${machine.id}`)
  assert.equal(linux[2], 'console=ttyS0,115200n8')
  assert.deepEqual(command(cfg, 'initrd').slice(1), [`(http,198.18.0.1:8080)/assets/agent/agent.img?m=${machine.id}`])
  await s.inventory.profiles.put({ name: 'w', description: null, talosVersion: 'v1.13.9', arch: null, schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }, 1)
  await s.inventory.machines.update(machine.id, { profile: 'w' }, 2)
  await s.inventory.machines.setState(machine.id, 'new', 'provisioning', Date.now())
  const talos = command((await s.app.inject({ url: `/grub/${FILE}?cpu=x86_64&platform=efi`, headers: HOST })).body, 'linux')
  assert.equal(talos[1], `(http,198.18.0.1:8080)/assets/talos/v1.13.9/amd64/vmlinuz?m=${machine.id}`)
  assert.ok(talos.includes('console=tty0') && !talos.includes('console=ttyAMA0'), JSON.stringify(talos))
})

test('arm64 agent missing: GRUB holds with the fix on the console, and the timeline has a failed step', async (t) => {
  const s = await setup({ arm64Agent: false })
  t.after(() => s.close())
  const cfg = (await s.app.inject({ url: `/grub/${FILE}?cpu=arm64&platform=efi`, headers: HOST })).body
  scriptCheck(t, cfg)
  assert.ok(!grubParse(body(cfg)).some((w) => w[0] === 'if' && w[1] === 'linux'), cfg)
  assert.match(command(cfg, 'echo')[1]!, /cannot boot: the arm64 discovery agent is missing on this server .*: run rackboot assets build agent --arch arm64$/)
  assert.ok(grubParse(cfg).some((w) => w.join(' ') === `set rackboot_next=(http,198.18.0.1:8080)/grub/${FILE}?attempt=1`), cfg)
  const machine = (await s.inventory.machines.byMac(MAC))!
  await s.timeline.flush()
  const blocked = (await s.inventory.events.list({ machineId: machine.id, types: ['boot.script'] })).filter((e) => e.data.blocked)
  assert.deepEqual(blocked.map((e) => e.data.fix), ['rackboot assets build agent --arch arm64'])
})
