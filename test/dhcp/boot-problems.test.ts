import assert from 'node:assert/strict'
import { createSocket } from 'node:dgram'
import { test } from 'node:test'
import { pino } from 'pino'
import { Registry } from 'prom-client'
import { decode, encode, type DhcpPacket } from '../../src/dhcp/codec.js'
import { createDhcpServer, type DhcpProblem } from '../../src/dhcp/index.js'
import { createMissingLoaderReporter } from '../../src/dhcp/missing-loaders.js'
import { MessageType, OptionCode } from '../../src/dhcp/options.js'
import { requestFacts, type RequestFacts } from '../../src/dhcp/facts.js'
import { chooseBoot } from '../../src/dhcp/boot-file.js'
import { createUnservedRelayReporter, unservedRelayMessage } from '../../src/dhcp/unserved-relays.js'
import { createRecentKeys } from '../../src/dhcp/recent-keys.js'
import type { Logger } from '../../src/log.js'
import { loopbackSettings } from './loopback.js'
import { memoryLeases, memoryReservations } from './fakes.js'
import { FIRMWARE, meta, request, type RequestSpec } from './packets.js'

// Issue "Clear when a boot cannot work": a loader DHCP offers that is not on disk, and a relay for a subnet rackboot
// does not serve, are said (log + timeline) instead of failing silently; what is remembered per client is bounded.

type Line = { level: number; msg: string; [k: string]: unknown }
function recorder(): { log: Logger; lines: Line[] } {
  const lines: Line[] = []
  const log = pino({ level: 'debug' }, { write: (s: string) => void lines.push(JSON.parse(s)) })
  return { log, lines }
}
const warnings = (lines: Line[]) => lines.filter((l) => l.level === 40)

const facts = (spec: Partial<RequestSpec>): RequestFacts => requestFacts(request({ type: MessageType.Discover, mac: '52:54:00:00:00:01', ...spec }), meta())
const BOOT = {
  bootFiles: { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'grubnetaa64.efi' },
  archBootFiles: {},
  scriptUrl: 'http://198.18.0.1/boot.ipxe',
  httpBootUrl: (loader: string) => `http://198.18.0.1/assets/grub/${loader}`,
  nextServer: '198.18.0.1',
}

test('recent keys: fresh once per window, at most `max` remembered, the oldest forgotten first', () => {
  let t = 0
  const keys = createRecentKeys({ max: 3, windowMs: 1000, now: () => t })
  assert.equal(keys.fresh('a'), true)
  assert.equal(keys.fresh('a'), false)
  t = 1000
  assert.equal(keys.fresh('a'), true)
  for (const k of ['b', 'c', 'd']) keys.fresh(k)
  assert.equal(keys.size, 3)
  // 'a' was the oldest: forgotten, so fresh again at once.
  assert.equal(keys.fresh('a'), true)
  assert.equal(keys.fresh('d'), false)
  for (let i = 0; i < 10_000; i++) keys.fresh(`x${i}`)
  assert.equal(keys.size, 3)
})

test('a loader that is not on disk: one warning per file, one timeline report per machine and file per window', () => {
  const { log, lines } = recorder()
  let t = 0
  const missing = new Set(['grubnetaa64.efi'])
  const checked: [string, string | undefined][] = []
  const reports: [string, DhcpProblem][] = []
  const report = createMissingLoaderReporter({
    check: { missing: (file, setting) => (checked.push([file, setting]), missing.has(file) ? `${setting} names ${file}: run rackboot assets fetch grub` : null) },
    problems: { report: (f, p) => void reports.push([f.mac, p]) },
    log, now: () => t,
  })
  const arm = facts(FIRMWARE.aavmfPxe)
  const armHttp = facts(FIRMWARE.aavmfHttp)
  const x64 = facts(FIRMWARE.ovmfPxe)
  for (let i = 0; i < 5; i++) report(arm, chooseBoot(arm, BOOT))
  report(armHttp, chooseBoot(armHttp, BOOT))
  report(x64, chooseBoot(x64, BOOT))
  report(arm, chooseBoot(facts(FIRMWARE.ipxeEfi), BOOT)) // a script URL: no loader to check
  assert.deepEqual(checked.at(-1), ['ipxe.efi', 'dhcp.bootFiles.uefiX64'])
  assert.equal(checked.length, 7)
  assert.deepEqual(reports, [['52:54:00:00:00:01', { kind: 'missing-loader', file: 'grubnetaa64.efi', message: 'dhcp.bootFiles.uefiArm64 names grubnetaa64.efi: run rackboot assets fetch grub' }]])
  assert.equal(warnings(lines).length, 1)
  assert.match(warnings(lines)[0]!.msg, /run rackboot assets fetch grub/)
  // Another machine is told at once; the same one again after the window.
  report(facts({ ...FIRMWARE.aavmfPxe, mac: '52:54:00:00:00:02' }), chooseBoot(arm, BOOT))
  assert.equal(reports.length, 2)
  t = 60_000
  report(arm, chooseBoot(arm, BOOT))
  assert.equal(reports.length, 3)
  assert.equal(warnings(lines).length, 1, 'the log is told once per file and 10 minutes')
})

test('a relay rackboot does not serve: one warning per giaddr with the fix, bounded, capped per minute', () => {
  const { log, lines } = recorder()
  let t = 0
  const reports: DhcpProblem[] = []
  const note = createUnservedRelayReporter({ log, problems: { report: (_f, p) => void reports.push(p) }, now: () => t, maxRelays: 4, warningsPerMinute: 3 })
  for (let i = 0; i < 5; i++) note(facts({ giaddr: '10.9.0.1' }))
  assert.equal(warnings(lines).length, 1)
  assert.equal(warnings(lines)[0]!.msg, unservedRelayMessage('10.9.0.1'))
  assert.match(warnings(lines)[0]!.msg, /add a dhcp\.subnets entry whose subnet covers 10\.9\.0\.1/)
  assert.equal(warnings(lines)[0]!.giaddr, '10.9.0.1')
  // The machine's timeline hears it once (per 10 minutes), not per retransmission.
  assert.deepEqual(reports, [{ kind: 'unserved-relay', giaddr: '10.9.0.1', message: unservedRelayMessage('10.9.0.1') }])
  // Forged giaddrs: at most 3 warnings a minute; the rest are counted and said with the next warning.
  for (let i = 2; i <= 6; i++) note(facts({ giaddr: `10.9.0.${i}` }))
  assert.equal(warnings(lines).length, 3)
  t = 60_000
  note(facts({ giaddr: '10.9.1.1' }))
  assert.equal(warnings(lines).length, 4)
  assert.equal(warnings(lines)[3]!.otherRelaysNotWarned, 3)
  // Only 4 giaddrs are remembered: the first has been forgotten and is warned about again.
  note(facts({ giaddr: '10.9.0.1' }))
  assert.equal(warnings(lines).length, 5)
  // A direct (not relayed) request is not this problem.
  note(facts({}))
  assert.equal(warnings(lines).length, 5)
})

test('relay reports to the timeline are capped per second whatever the MACs (each is an inventory lookup)', () => {
  const { log } = recorder()
  let t = 0
  let reports = 0
  const note = createUnservedRelayReporter({ log, problems: { report: () => void reports++ }, now: () => t })
  for (let i = 0; i < 500; i++) note(facts({ giaddr: '10.9.0.1', mac: `52:54:00:00:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` }))
  assert.equal(reports, 20)
  t = 1000
  note(facts({ giaddr: '10.9.0.1', mac: '52:54:00:ff:ff:ff' }))
  assert.equal(reports, 21)
})

// The wiring in createDhcpServer, over loopback: the test plays a relay at 127.0.0.2.
async function loopbackServer(t: { after(fn: () => Promise<void> | void): void }, opts: { missing: Set<string> }) {
  const { log, lines } = recorder()
  const problems: [string, DhcpProblem][] = []
  const server = createDhcpServer({
    settings: loopbackSettings({ bootFiles: { bios: 'undionly.kpxe', uefiX64: 'ipxe.efi', uefiArm64: 'grubnetaa64.efi' } }),
    leases: memoryLeases(), reservations: memoryReservations(),
    urls: { scriptUrl: 'http://198.18.60.1:8080/boot.ipxe', httpBootUrl: (loader) => `http://198.18.60.1:8080/assets/grub/${loader}` },
    loaders: { missing: (file, setting) => (opts.missing.has(file) ? `${setting} names ${file}, which is not on this server: run rackboot assets fetch grub` : null) },
    problems: { report: (f, p) => void problems.push([f.mac, p]) },
    log, metrics: new Registry(),
  })
  const info = (await server.start())!
  t.after(() => server.stop())
  const relay = createSocket({ type: 'udp4', reuseAddr: true })
  await new Promise<void>((resolve, reject) => {
    relay.once('error', reject)
    relay.bind({ address: '127.0.0.2', port: info.port }, () => resolve())
  })
  t.after(() => new Promise<void>((resolve) => relay.close(() => resolve())))
  const replies = new Map<number, DhcpPacket>()
  relay.on('message', (buf) => {
    const p = decode(buf)
    replies.set(p.xid, p)
  })
  const send = async (spec: RequestSpec, link: boolean): Promise<DhcpPacket | null> => {
    const p = request({ giaddr: '127.0.0.2', ...spec, extra: link ? [[OptionCode.SubnetSelection, Buffer.from([198, 18, 60, 0])]] : [] })
    await new Promise<void>((resolve) => relay.send(encode(p), info.port, '127.0.0.1', () => resolve()))
    for (let i = 0; i < 50 && !replies.has(p.xid); i++) await new Promise((r) => setTimeout(r, 20))
    return replies.get(p.xid) ?? null
  }
  return { send, lines, problems }
}

test('server: an offer naming a missing loader still goes out, and the machine and log are told', async (t) => {
  const s = await loopbackServer(t, { missing: new Set(['grubnetaa64.efi']) })
  const offer = await s.send({ type: MessageType.Discover, mac: '52:54:00:0b:00:01', xid: 1, ...FIRMWARE.aavmfPxe }, true)
  assert.equal(offer?.file, 'grubnetaa64.efi')
  assert.deepEqual(s.problems, [['52:54:00:0b:00:01', { kind: 'missing-loader', file: 'grubnetaa64.efi', message: 'dhcp.bootFiles.uefiArm64 names grubnetaa64.efi, which is not on this server: run rackboot assets fetch grub' }]])
  assert.ok(warnings(s.lines).some((l) => /run rackboot assets fetch grub/.test(l.msg)))
  // A loader that is there: nothing said.
  await s.send({ type: MessageType.Discover, mac: '52:54:00:0b:00:02', xid: 2, ...FIRMWARE.ovmfPxe }, true)
  assert.equal(s.problems.length, 1)
})

test('server: a relayed DISCOVER for a subnet it does not serve is dropped, warned once with the fix', async (t) => {
  const s = await loopbackServer(t, { missing: new Set() })
  // No link selection: giaddr 127.0.0.2 is in no dhcp.subnets entry.
  for (let i = 0; i < 3; i++) assert.equal(await s.send({ type: MessageType.Discover, mac: '52:54:00:0c:00:01', xid: 10 + i, ...FIRMWARE.aavmfPxe }, false), null)
  const w = warnings(s.lines).filter((l) => l.giaddr === '127.0.0.2')
  assert.equal(w.length, 1)
  assert.match(w[0]!.msg, /add a dhcp\.subnets entry whose subnet covers 127\.0\.0\.2/)
  assert.deepEqual(s.problems.map(([mac, p]) => [mac, p.kind]), [['52:54:00:0c:00:01', 'unserved-relay']])
})

test('proxy mode: a firmware set to none gets silence with the setting as the reason; a missing loader is reported', async () => {
  const { createProxyHandler } = await import('../../src/dhcp/handlers/proxy.js')
  const { createDhcpMetrics } = await import('../../src/dhcp/metrics.js')
  const seen: string[] = []
  const h = createProxyHandler({
    serverId: '198.18.3.2',
    boot: { ...BOOT, bootFiles: { ...BOOT.bootFiles, bios: 'none' } },
    advice: {
      bootPort: { inspect: async () => undefined }, timeoutMs: 500, metrics: createDhcpMetrics(new Registry(), () => []), log: recorder().log,
      missingLoader: (_f, choice) => void seen.push(choice.kind === 'tftp' ? choice.file : choice.kind),
    },
    log: recorder().log,
  })
  const send = (spec: Partial<RequestSpec>) => h.handle(decode(encode(request({ type: MessageType.Discover, mac: '52:54:00:0d:00:01', ...spec }))), meta())
  const bios = await send(FIRMWARE.biosPxe)
  assert.deepEqual(bios, { kind: 'ignore', reason: 'no-boot-file', detail: 'dhcp.bootFiles.bios is none: x86 BIOS is not network-booted' })
  const arm = await send(FIRMWARE.aavmfPxe)
  assert.equal(arm.kind, 'reply')
  assert.deepEqual(seen, ['grubnetaa64.efi'])
})

test('timeline: a missing loader is a failed (red) TFTP step, an unserved relay a DHCP warning; unknown MACs are not created', async () => {
  const { timelineProblems, warnMissingLoaders } = await import('../../src/cli/serve.js')
  const { classify } = await import(new URL('../../src/http/ui/static/js/phases.js', import.meta.url).href) as { classify(e: unknown): { phase: string; status: string } }
  const records: { id: string | null; type: string; message: string; data: Record<string, unknown> }[] = []
  const asked: unknown[] = []
  const lifecycle = {
    find: async (f: { mac?: string | null }) => (asked.push(f), f.mac === '52:54:00:00:00:01' ? ({ id: 'm1' } as never) : null),
    record: (id: string | null, type: string, message: string, data: Record<string, unknown> = {}) => void records.push({ id, type, message, data }),
    identify: () => assert.fail('a problem report must never create a machine'),
  }
  const port = timelineProblems(lifecycle as never, recorder().log)
  port.report(facts(FIRMWARE.aavmfPxe), { kind: 'missing-loader', file: 'grubnetaa64.efi', message: 'dhcp.bootFiles.uefiArm64 names grubnetaa64.efi: run rackboot assets fetch grub' })
  port.report(facts({ giaddr: '10.9.0.1' }), { kind: 'unserved-relay', giaddr: '10.9.0.1', message: unservedRelayMessage('10.9.0.1') })
  port.report(facts({ mac: '52:54:00:00:00:99' }), { kind: 'missing-loader', file: 'x.efi', message: 'x' })
  await new Promise((r) => setImmediate(r))
  assert.deepEqual(asked, [{ mac: '52:54:00:00:00:01' }, { mac: '52:54:00:00:00:01' }, { mac: '52:54:00:00:00:99' }])
  assert.equal(records.length, 2)
  assert.equal(records[0]!.type, 'boot.tftp')
  assert.match(records[0]!.message, /run rackboot assets fetch grub/)
  assert.deepEqual(classify({ type: records[0]!.type, data: records[0]!.data }), { phase: 'tftp', status: 'fail', label: 'TFTP', tag: 'failed' })
  assert.equal(records[1]!.type, 'boot.dhcp')
  assert.match(records[1]!.message, /^DHCP DISCOVER → no answer: .*add a dhcp\.subnets entry whose subnet covers 10\.9\.0\.1/)
  assert.equal(classify({ type: records[1]!.type, data: records[1]!.data }).status, 'warn')

  // At start-up: one warning per missing loader, naming the file and the fix.
  const { log, lines } = recorder()
  warnMissingLoaders('/nonexistent-assets', [{ setting: 'dhcp.bootFiles.uefiArm64', file: 'grubnetaa64.efi', cpu: 'arm64' }], log)
  assert.equal(warnings(lines).length, 1)
  assert.match(warnings(lines)[0]!.msg, /grubnetaa64\.efi.*grub\/grubnetaa64\.efi under \/nonexistent-assets.*run rackboot assets fetch grub, or set dhcp\.bootFiles\.uefiArm64: none/)
})
