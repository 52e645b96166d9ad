import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { createSocket, type Socket } from 'node:dgram'
import { Registry } from 'prom-client'
import { encode } from '../../src/dhcp/codec.js'
import {
  createKernelDropTracker,
  parseProcNetUdp,
  parseUdpSnmp,
  receiveBufferOf,
  registerUdpReceiveErrors,
  socketInode,
  type ProcSource,
} from '../../src/dhcp/kernel-drops.js'
import { createDhcpMetrics } from '../../src/dhcp/metrics.js'
import { MessageType } from '../../src/dhcp/options.js'
import { createDhcpSockets } from '../../src/dhcp/server.js'
import { createLogger, silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'
import { createTftpServer } from '../../src/tftp/index.js'
import { request } from './packets.js'

// Datagrams the kernel drops before rackboot reads them are counted (rackboot_dhcp_dropped_total{reason="kernel"}),
// from the socket's own line of /proc/net/udp; and the receive buffer asked for is set, read back, and a capped one
// is said once.

// Captured on Linux 6.x (x86_64): a DHCP server on 0.0.0.0:67 and 192.168.1.10:67 (the second with 1234 drops and
// 2 KiB queued), a client socket, and a udp6 socket on [::1]:4011.
const PROC_NET_UDP = `   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            
  381: 00000000:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5412389 2 ffff8e7e4b7c0000 0          
  381: 0A01A8C0:0043 00000000:0000 07 00000000:00000800 00:00000000 00000000     0        0 5412390 2 ffff8e7e4b7c0400 1234       
 1023: 0100007F:E3F1 0100007F:0043 01 00000000:00000000 00:00000000 00000000  1000        0 5412999 2 ffff8e7e4b7c0800 7          
garbage line
`
const PROC_NET_UDP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000000000000000000001000000:0FAB 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 777 2 ffff8e7e4b7c0c00 3
`
const PROC_NET_SNMP = `Ip: Forwarding DefaultTTL InReceives
Ip: 1 64 123
Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
Udp: 7822137 2650 161852 8023104 161852 0 0 0 0
UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors
UdpLite: 0 0 0 0 0 0 0 0 0
`

test('/proc/net/udp and udp6: address, port, receive queue and drops of each socket', () => {
  assert.deepEqual(parseProcNetUdp(PROC_NET_UDP, true), [
    { inode: '5412389', localAddress: '0.0.0.0', localPort: 67, rxQueueBytes: 0, drops: 0 },
    { inode: '5412390', localAddress: '192.168.1.10', localPort: 67, rxQueueBytes: 2048, drops: 1234 },
    { inode: '5412999', localAddress: '127.0.0.1', localPort: 58353, rxQueueBytes: 0, drops: 7 },
  ])
  assert.deepEqual(parseProcNetUdp(PROC_NET_UDP6, true), [{ inode: '777', localAddress: '0:0:0:0:0:0:0:1', localPort: 4011, rxQueueBytes: 0, drops: 3 }])
  // A big-endian host prints the words the other way round.
  assert.equal(parseProcNetUdp(PROC_NET_UDP.replace('0A01A8C0', 'C0A8010A'), false)[1]!.localAddress, '192.168.1.10')
  assert.deepEqual(parseProcNetUdp(''), [])
  assert.deepEqual(parseProcNetUdp('  1: 0100007F:0043 00000000:0000 07 00000000:00000000 00:00000000 00000000 0 0 12 2 ffff x\n'), [], 'drops not a number')
})

test('/proc/net/snmp: the Udp counters, not UdpLite\'s', () => {
  const udp = parseUdpSnmp(PROC_NET_SNMP)!
  assert.equal(udp.RcvbufErrors, 161852)
  assert.equal(udp.InDatagrams, 7822137)
  assert.equal(parseUdpSnmp('Ip: a\nIp: 1\n'), null)
})

function fakeProc(files: Record<string, string>, links: Record<number, string> = {}): ProcSource & { files: Record<string, string> } {
  return {
    files,
    read: (path) => files[path] ?? null,
    fdLink: (fd) => links[fd] ?? null,
    fds: () => Object.keys(links).map(Number),
  }
}

function boundSocket(): Promise<Socket> {
  return new Promise((resolve) => {
    const s = createSocket('udp4')
    s.bind({ address: '127.0.0.1', port: 0 }, () => resolve(s))
  })
}

test('the tracker reports each socket\'s new drops once, at most once a second, and a last time when untracked', async (t) => {
  const sock = await boundSocket()
  t.after(() => sock.close())
  const port = sock.address().port.toString(16).toUpperCase().padStart(4, '0')
  const line = (drops: number) => `   sl  local_address ...\n    5: 0100007F:${port} 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 ffff ${drops}\n`
  const proc = fakeProc({ '/proc/net/udp': line(10) })
  // No fd link for it (as if Node's internals changed): found by address, port and this process's socket inodes.
  const links: Record<number, string> = { 3: 'socket:[4242]', 4: 'pipe:[1]' }
  Object.assign(proc, { fdLink: (fd: number) => links[fd] ?? null, fds: () => [3, 4] })
  assert.equal(socketInode(sock, proc), '4242')
  let clock = 0
  const seen: Array<[number, string]> = []
  const tracker = createKernelDropTracker({ onDrops: (n, label) => seen.push([n, label]), proc, now: () => clock })
  assert.equal(tracker.track(sock, 'main'), true)
  tracker.sample()
  assert.deepEqual(seen, [], 'drops before tracking are not counted')
  proc.files['/proc/net/udp'] = line(25)
  clock += 100
  tracker.sample()
  assert.deepEqual(seen, [], 'read again within a second: skipped')
  clock += 1000
  tracker.sample()
  assert.deepEqual(seen, [[15, 'main']])
  tracker.sample(true)
  assert.deepEqual(seen, [[15, 'main']], 'no new drops, nothing reported')
  proc.files['/proc/net/udp'] = line(30)
  tracker.untrack(sock)
  assert.deepEqual(seen, [[15, 'main'], [5, 'main']])
  proc.files['/proc/net/udp'] = line(99)
  tracker.sample(true)
  assert.equal(tracker.size, 0)
  assert.deepEqual(seen, [[15, 'main'], [5, 'main']])
  // Without /proc (another OS, a sandbox): nothing tracked, nothing thrown.
  const none = createKernelDropTracker({ onDrops: () => assert.fail('no drops without /proc'), proc: fakeProc({}) })
  assert.equal(none.track(sock, 'main'), false)
  none.sample(true)
})

test('a real socket is found in /proc through its file descriptor', async (t) => {
  const sock = await boundSocket()
  t.after(() => sock.close())
  const inode = socketInode(sock)
  assert.match(inode ?? '', /^\d+$/)
  const row = parseProcNetUdp((await import('node:fs')).readFileSync('/proc/net/udp', 'utf8')).find((r) => r.inode === inode)
  assert.equal(row?.localPort, sock.address().port)
})

test('rackboot_udp_receive_buffer_errors_total counts RcvbufErrors from the first scrape on', async () => {
  const registry = new Registry()
  const proc = fakeProc({ '/proc/net/snmp': PROC_NET_SNMP })
  registerUdpReceiveErrors(registry, proc)
  registerUdpReceiveErrors(registry, proc) // a second server on the registry: one metric
  assert.match(await registry.metrics(), /^rackboot_udp_receive_buffer_errors_total 0$/m)
  proc.files['/proc/net/snmp'] = PROC_NET_SNMP.replace('161852 8023104 161852', '161852 8023104 161900')
  assert.match(await registry.metrics(), /^rackboot_udp_receive_buffer_errors_total 48$/m)
})

function captureLogger() {
  const lines: Array<Record<string, unknown>> = []
  const log = createLogger({ level: 'info', format: 'json', destination: { write: (l: string) => void lines.push(JSON.parse(l)) } })
  return { log, lines }
}

async function startSockets(receiveBufferBytes: number | undefined, registry: Registry, log = silentLogger(), twoSockets = false) {
  const sockets = createDhcpSockets({
    handler: { mode: 'full', handle: async () => ({ kind: 'silent', reason: 'test' }) as never },
    // Two sockets: the wildcard one and the server address's.
    listen: twoSockets ? '0.0.0.0' : '127.0.0.1',
    port: 0,
    serverAddress: twoSockets ? '127.0.0.1' : null,
    metrics: createDhcpMetrics(registry, () => []),
    log,
    ...(receiveBufferBytes !== undefined ? { receiveBufferBytes } : {}),
  })
  return { sockets, ...(await sockets.start()) }
}

const metric = (text: string, re: RegExp): number => Number(re.exec(text)?.[1] ?? 0)

test('the receive buffer asked for is set; one the kernel caps is said once, with the sysctl', async (t) => {
  const rmemMax = Number((await import('node:fs')).readFileSync('/proc/sys/net/core/rmem_max', 'utf8'))
  const small = await startSockets(256 * 1024, new Registry())
  t.after(() => small.sockets.stop())
  if (rmemMax >= 256 * 1024) {
    const reg = new Registry()
    const s = await startSockets(256 * 1024, reg)
    t.after(() => s.sockets.stop())
    assert.match(await reg.metrics(), /rackboot_dhcp_socket_receive_buffer_bytes\{socket="main"\} 262144/)
  }
  // More than net.core.rmem_max: granted rmem_max, and a warning naming the fix (once, though asked twice).
  const { log, lines } = captureLogger()
  const reg = new Registry()
  const big = await startSockets(rmemMax * 2, reg, log, true)
  t.after(() => big.sockets.stop())
  const warnings = lines.filter((l) => /receive buffer/.test(String(l.msg)))
  assert.equal(warnings.length, 1)
  assert.match(String(warnings[0]!.msg), new RegExp(`is ${rmemMax} bytes, ${rmemMax * 2} were asked for.*sysctl -w net\\.core\\.rmem_max=${rmemMax * 2}`))
  for (const socket of ['main', 'server-address']) {
    assert.match(await reg.metrics(), new RegExp(`rackboot_dhcp_socket_receive_buffer_bytes\\{socket="${socket}"\\} ${rmemMax}\\b`))
  }
  const sock = createSocket('udp4')
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()))
  t.after(() => sock.close())
  assert.equal(receiveBufferOf(sock, 0).capped, false, 'the kernel default is never "capped"')
})

// The child floods the server's port with DISCOVERs as fast as it can, once told to go.
const FLOODER = `
const dgram = require('node:dgram')
const [port, count, hex] = process.argv.slice(1)
const buf = Buffer.from(hex, 'hex')
const s = dgram.createSocket('udp4')
s.bind(0, '127.0.0.1', () => {
  process.stdout.write('ready\\n')
  process.stdin.once('data', () => {
    let sent = 0, failed = 0, done = 0
    for (let i = 0; i < Number(count); i++) s.send(buf, Number(port), '127.0.0.1', (err) => {
      if (err) failed++; else sent++
      if (++done === Number(count)) { process.stdout.write(JSON.stringify({ sent, failed }) + '\\n', () => process.exit(0)) }
    })
  })
})
`

/** Floods 127.0.0.1:port with `count` copies of `datagram` from a child process while this process is busy for `stallMs`. */
async function floodWhileStalled(port: number, count: number, datagram: Buffer, stallMs: number): Promise<void> {
  const child = spawn(process.execPath, ['-e', FLOODER, String(port), String(count), datagram.toString('hex')], { stdio: ['pipe', 'pipe', 'inherit'] })
  let out = ''
  child.stdout.on('data', (d: Buffer) => { out += d.toString() })
  await new Promise<void>((resolve) => child.stdout.on('data', () => out.includes('ready') && resolve()))
  child.stdin.end('go\n')
  // The stall: this process reads nothing while the child sends everything.
  const until = Date.now() + stallMs
  while (Date.now() < until) { /* busy */ }
  await new Promise<void>((resolve) => child.on('exit', () => resolve()))
  const result = JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!) as { sent: number; failed: number }
  assert.equal(result.sent, count, `the child sent them all (${out})`)
}

test('a flood while the event loop is blocked: what the tiny buffer could not hold is counted as kernel drops, and nothing is lost from the count', async (t) => {
  const registry = new Registry()
  // 4 KiB: a handful of datagrams fit.
  const { sockets, port } = await startSockets(4096, registry)
  let stopped = false
  t.after(() => (stopped ? undefined : sockets.stop()))
  const COUNT = 2000
  await floodWhileStalled(port, COUNT, encode(request({ type: MessageType.Discover, mac: '52:54:00:0f:10:0d' })), 1500)
  // Let the server read what its buffer held; scrape more than a second after any earlier read.
  await new Promise((r) => setTimeout(r, 1100))
  const text = await registry.metrics()
  const kernel = metric(text, /rackboot_dhcp_dropped_total\{reason="kernel"\} (\d+)/)
  const received = metric(text, /rackboot_dhcp_packets_received_total\{type="discover"\} (\d+)/)
  t.diagnostic(`sent ${COUNT}, received ${received}, kernel drops ${kernel}`)
  assert.ok(kernel > 0, `kernel drops counted:\n${text.split('\n').filter((l) => l.startsWith('rackboot_dhcp_')).join('\n')}`)
  assert.ok(received > 0 && received < COUNT / 2, `received ${received}`)
  assert.equal(received + kernel, COUNT, `every datagram sent is either received or a kernel drop (received ${received}, kernel ${kernel})`)
  await sockets.stop()
  stopped = true
  assert.equal(metric(await registry.metrics(), /rackboot_dhcp_dropped_total\{reason="kernel"\} (\d+)/), kernel)
})

test('TFTP: the same flood on its server port is counted as reason="kernel" drops, read when the server stops', async () => {
  const metrics = createMetricsRegistry()
  const server = createTftpServer({
    settings: { listen: '127.0.0.1', port: 0, maxBlockSize: 1468, mtu: 1500, maxWindowSize: 64, maxTransfers: 500, maxRetries: 5, retransmitMs: 1000, receiveBufferBytes: 4096 },
    source: { open: async () => null } as never,
    log: silentLogger(),
    metrics,
  })
  const { port } = await server.start()
  const COUNT = 1000
  // Opcode 9 does not exist: each datagram read is dropped by the server itself, the rest by the kernel.
  await floodWhileStalled(port, COUNT, Buffer.from([0, 9, 0x61, 0]), 1000)
  await new Promise((r) => setTimeout(r, 300))
  await server.stop()
  const dropped = server.stats().dropped
  const kernel = dropped.kernel ?? 0
  const byServer = Object.entries(dropped).filter(([k]) => k !== 'kernel').reduce((n, [, v]) => n + v, 0)
  assert.ok(kernel > 0, JSON.stringify(dropped))
  assert.equal(kernel + byServer, COUNT, JSON.stringify(dropped))
  assert.match(await metrics.metrics(), new RegExp(`rackboot_tftp_dropped_datagrams_total\\{reason="kernel"\\} ${kernel}\\b`))
})
