// Issue 13's reproductions, tried as an attacker on the provisioning LAN would, against a real `rackboot serve`.
// Loopback stands in for the segment: 127.0.0.2 is the address rackboot's DHCP bound to the victim's NIC,
// 127.0.0.3 the attacker's own lease, 127.0.0.4 a released machine's, 127.0.0.9 an address nothing vouches for.
// Each request leaves from its address (localAddress), so the server sees what it would see on the wire.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect as tcpConnect } from 'node:net'
import { createSocket } from 'node:dgram'
import { connect as http2Connect } from 'node:http2'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { Agent, request } from 'undici'
import { rackboot, startServe, tempCwd } from '../support/cli.js'
import { leaseAddress } from '../support/leases.js'
import { bytes, message, vint, xid, eventRequest } from '../talos/receivers/wire.js'

const VICTIM = { mac: '02:00:00:00:0a:01', serial: 'VICTIM-1', uuid: '8c3f5a7e-1b2d-4c6e-9f01-0000000000a1', ip: '127.0.0.2' }
const ATTACKER = { mac: '02:00:00:00:ee:01', ip: '127.0.0.3' }
const RELEASED = { mac: '02:00:00:00:0b:01', ip: '127.0.0.4' }
const NOBODY = '127.0.0.9'
/** A second address leased to the victim's MAC (a spoofer that won a lease, or a stale one) that never fetched its config. */
const VICTIM_OTHER = '127.0.0.5'
const port = () => 20000 + Math.floor(Math.random() * 40000)
const dash = (mac: string) => mac.replaceAll(':', '-')

const agents = new Map<string, Agent>()
/** A client whose connections leave from `from` (one per address, as each host on the segment has its own). */
function from(address: string): Agent {
  let a = agents.get(address)
  if (!a) agents.set(address, (a = new Agent({ localAddress: address, connections: 16 })))
  return a
}

async function get(base: string, path: string, address: string, headers: Record<string, string> = {}) {
  const res = await request(`${base}${path}`, { dispatcher: from(address), headers })
  return { status: res.statusCode, body: await res.body.text() }
}

async function post(base: string, path: string, address: string, token: string, body: unknown) {
  const res = await request(`${base}${path}`, {
    method: 'POST', dispatcher: from(address), body: JSON.stringify(body),
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
  })
  return { status: res.statusCode, body: await res.body.text() }
}

/** One kernel-log line over TCP from `from`, as Talos's talos.logging.kernel=tcp:// sends it. */
function kmsgTcp(kport: number, from: string, msg: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = tcpConnect({ port: kport, host: '127.0.0.1', localAddress: from }, () => sock.end(JSON.stringify({ msg, facility: 'user', priority: 'info', seq: 1, clock: 1 }) + '\n'))
    sock.on('close', () => resolve())
    sock.on('error', reject)
  })
}

function kmsgUdp(kport: number, from: string, msg: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4')
    s.bind(0, from, () => s.send(JSON.stringify({ msg, facility: 'user', priority: 'info' }), kport, '127.0.0.1', (err) => { s.close(); err ? reject(err) : resolve() }))
  })
}

/** One EventSinkService/Publish call from `from`, framed by hand as gRPC over HTTP/2 (prior knowledge, plaintext). */
function publishEvent(sport: number, from: string, id: string, typeName: string, payload: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const session = http2Connect(`http://127.0.0.1:${sport}`, { createConnection: () => tcpConnect({ port: sport, host: '127.0.0.1', localAddress: from }) })
    session.on('error', reject)
    const body = eventRequest(id, typeName, payload)
    const frame = Buffer.alloc(5 + body.length)
    frame.writeUInt32BE(body.length, 1)
    body.copy(frame, 5)
    const req = session.request({ ':method': 'POST', ':path': '/events.EventSinkService/Publish', 'content-type': 'application/grpc', te: 'trailers' })
    let status = -1
    req.on('trailers', (t) => { status = Number(t['grpc-status']) })
    req.on('response', (h) => { if (h['grpc-status'] !== undefined) status = Number(h['grpc-status']) })
    req.on('data', () => {})
    req.on('end', () => { session.close(); resolve(status) })
    req.on('error', reject)
    req.end(frame)
  })
}

// MachineStatusEvent { stage = RUNNING (4), status { ready = true } }: "installed" on Talos ≤ 1.13.
const RUNNING_READY = message(vint(1, 4), bytes(2, message(vint(1, true))))

async function showState(cwd: string, name: string): Promise<string> {
  return /state\s+(\S+)/.exec(rackboot(['machines', 'show', name, '--data-dir', join(cwd, 'data')], { cwd }).stdout)?.[1] ?? '?'
}

async function waitState(cwd: string, name: string, want: string, ms = 10_000): Promise<string> {
  const end = Date.now() + ms
  let state = await showState(cwd, name)
  while (state !== want && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 300))
    state = await showState(cwd, name)
  }
  return state
}

test('trust on the provisioning LAN: claims, tokens and Talos feedback count only for the machine the network says is asking', async (t) => {
  const cwd = tempCwd('rb-trust-')
  mkdirSync(join(cwd, 'inv'))
  // A discovery boot holds while its agent is missing on the server: stand-ins, never downloaded here.
  mkdirSync(join(cwd, 'assets', 'agent'), { recursive: true })
  for (const f of ['vmlinuz', 'agent.img']) writeFileSync(join(cwd, 'assets', 'agent', f), 'stand-in')
  writeFileSync(join(cwd, 'inv', 'm.yaml'), `profiles:
  - { name: cp, talosVersion: v1.13.9, arch: amd64 }
machines:
  - { name: victim, serial: ${VICTIM.serial}, uuid: ${VICTIM.uuid}, profile: cp, nics: [{ mac: "${VICTIM.mac}", boot: true }] }
  - { name: old-tenant, serial: OLD-1, nics: [{ mac: "${RELEASED.mac}", boot: true }] }
`)
  assert.equal(rackboot(['inventory', 'import', join(cwd, 'inv'), '--data-dir', join(cwd, 'data')], { cwd }).code, 0)
  const { openSqliteInventory } = await import('../../src/inventory/index.js')
  const { generateConfig, generateSecretsBundle } = await import('../../src/talos/index.js')
  const inv = await openSqliteInventory({ file: join(cwd, 'data', 'rackboot.db'), secretKeyFile: join(cwd, 'data', 'secret.key') })
  const victim = (await inv.machines.byName('victim'))!
  const old = (await inv.machines.byName('old-tenant'))!
  await inv.machines.setState(victim.id, 'new', 'provisioning', Date.now())
  await inv.machines.setState(old.id, 'new', 'released', Date.now())
  await inv.machines.setHardware(victim.id, { disks: [{ name: 'sda', sizeBytes: 480e9, type: 'ssd' }, { name: 'nvme0n1', sizeBytes: 1.9e12, type: 'nvme' }] }, Date.now())
  await inv.machines.setHardware(old.id, { disks: [{ name: 'sda', sizeBytes: 480e9, type: 'ssd' }, { name: 'sdb', sizeBytes: 4e12, type: 'hdd' }] }, Date.now())
  const secrets = await generateSecretsBundle({ talosVersion: 'v1.13.9', rsaBits: 2048 })
  const baseConfig = generateConfig({ secrets, clusterName: 'lab', endpoint: 'https://198.18.0.10:6443', talosVersion: 'v1.13.9', role: 'controlplane' }).yaml
  await inv.profiles.put({ ...(await inv.profiles.get('cp'))!, baseConfig }, Date.now())
  await leaseAddress(inv, VICTIM.ip, VICTIM.mac)
  await leaseAddress(inv, VICTIM_OTHER, VICTIM.mac)
  await leaseAddress(inv, ATTACKER.ip, ATTACKER.mac)
  await leaseAddress(inv, RELEASED.ip, RELEASED.mac)
  await inv.close()

  const http = port()
  const kport = port()
  const sport = port()
  const server = await startServe(['--set', `http.port=${http}`, '--set', 'http.listen=127.0.0.1', '--set', 'tftp.port=0', '--set', `talos.kernelLogPort=${kport}`, '--set', `talos.eventsSinkPort=${sport}`], { cwd })
  t.after(() => server.stop())
  t.after(() => Promise.all([...agents.values()].map((a) => a.close())))
  const base = `http://127.0.0.1:${http}`
  const script = (from: string, query: string) => get(base, `/boot.ipxe?${query}&arch=x86_64&platform=efi`, from)

  await t.test('config theft by claimed MAC, serial or uuid is refused, and the victim\'s timeline says so', async () => {
    for (const query of [`mac=${dash(VICTIM.mac)}`, `mac=${dash(ATTACKER.mac)}&serial=${VICTIM.serial}`, `mac=${dash(ATTACKER.mac)}&uuid=${VICTIM.uuid}`, `serial=${VICTIM.serial}`, `uuid=${VICTIM.uuid}`]) {
      const res = await script(ATTACKER.ip, query)
      assert.equal(res.status, 200)
      assert.doesNotMatch(res.body, /talos\.config=/, `${query} from the attacker`)
      assert.match(res.body, /refused/, query)
    }
    const nobody = await script(NOBODY, `mac=${dash(VICTIM.mac)}`)
    assert.doesNotMatch(nobody.body, /talos\.config=/)
    assert.match(nobody.body, /no lease or neighbour entry vouches for that address/)
    const shown = rackboot(['machines', 'show', 'victim', '--data-dir', join(cwd, 'data')], { cwd }).stdout
    assert.match(shown, /identity claim for 02:00:00:00:0a:01 from 127\.0\.0\.3 refused: leased to 127\.0\.0\.2/)
    assert.doesNotMatch(shown, /02:00:00:00:ee:01.*boot/i, 'the attacker\'s MAC is not among the victim\'s NICs')
  })

  let configPath = ''
  await t.test('the victim gets its config; its token is worthless from any other address and after install', async () => {
    const res = await script(VICTIM.ip, `mac=${dash(VICTIM.mac)}&serial=${VICTIM.serial}&uuid=${VICTIM.uuid}`)
    configPath = /talos\.config=http:\/\/127\.0\.0\.1:\d+(\S+)/.exec(res.body)?.[1] ?? ''
    assert.ok(configPath, res.body)
    // The attacker has the URL (it was on the victim's console): no use from its own address, before or after.
    assert.equal((await get(base, configPath, ATTACKER.ip)).status, 403)
    const ok = await get(base, configPath, VICTIM.ip)
    assert.equal(ok.status, 200, ok.body)
    assert.match(ok.body, /ca:/)
    const stolen = await get(base, configPath, ATTACKER.ip)
    assert.equal(stolen.status, 403)
    assert.doesNotMatch(stolen.body, /BEGIN|crt:|key:/)
    // Even an address leased to the victim's own MAC gets nothing once another address fetched in this boot.
    const second = await get(base, configPath, VICTIM_OTHER)
    assert.equal(second.status, 403)
    assert.match(second.body, /already served to 127\.0\.0\.2/)
    const metrics = (await get(base, '/metrics', VICTIM.ip)).body
    assert.match(metrics, /rackboot_security_events_total\{kind="identity-refused"\} [1-9]/)
    assert.match(metrics, /rackboot_security_events_total\{kind="config-token-refused"\} [1-9]/)
    assert.match(metrics, /rackboot_security_events_total\{kind="config-second-address"\} [1-9]/)
  })

  await t.test('forged Talos feedback (kernel log over TCP or UDP, event sink) from elsewhere does not install the victim', async () => {
    await kmsgTcp(kport, ATTACKER.ip, '[talos] install successful')
    await kmsgTcp(kport, VICTIM_OTHER, '[talos] install successful')
    assert.equal(await publishEvent(sport, VICTIM_OTHER, xid(1_787_000_000, 4), 'machine.MachineStatusEvent', RUNNING_READY), 0)
    await kmsgUdp(kport, VICTIM.ip, '[talos] install successful')
    await kmsgUdp(kport, ATTACKER.ip, '[talos] install successful')
    assert.equal(await publishEvent(sport, ATTACKER.ip, xid(1_787_000_000, 1), 'machine.MachineStatusEvent', RUNNING_READY), 0)
    assert.equal(await publishEvent(sport, NOBODY, xid(1_787_000_000, 2), 'machine.MachineStatusEvent', RUNNING_READY), 0)
    await new Promise((r) => setTimeout(r, 1500))
    assert.equal(await showState(cwd, 'victim'), 'provisioning')
    const metrics = (await get(base, '/metrics', VICTIM.ip)).body
    assert.match(metrics, /rackboot_security_events_total\{kind="feedback-unbound"\} [1-9]/)
    // The address that fetched the config in this boot: its event counts.
    assert.equal(await publishEvent(sport, VICTIM.ip, xid(1_787_000_000, 3), 'machine.MachineStatusEvent', RUNNING_READY), 0)
    assert.equal(await waitState(cwd, 'victim', 'installed'), 'installed')
  })

  await t.test('after install the config token is void, even from the victim\'s own address', async () => {
    const res = await get(base, configPath, VICTIM.ip)
    assert.equal(res.status, 403)
    assert.match(res.body, /void/)
  })

  await t.test('forged discovery reports: no agent token for a claimed machine; a token is one report from its machine; an empty wipe keeps it out of the pool', async () => {
    const claimed = await script(ATTACKER.ip, `mac=${dash(RELEASED.mac)}`)
    assert.doesNotMatch(claimed.body, /rackboot\.token=/)
    const real = await script(RELEASED.ip, `mac=${dash(RELEASED.mac)}`)
    const token = /rackboot\.token=(\w+)/.exec(real.body)?.[1]
    assert.ok(token, real.body)
    // The token leaks (it is on the console): from the attacker's address it is refused.
    assert.equal((await post(base, '/api/v1/agent/report', ATTACKER.ip, token!, { wiped: [] })).status, 403)
    // From the machine itself, a wipe that names none of its disks does not return it to the pool.
    const empty = await post(base, '/api/v1/agent/report', RELEASED.ip, token!, { wiped: [] })
    assert.equal(empty.status, 200, empty.body)
    assert.equal(JSON.parse(empty.body).state, 'released')
    // One report per boot: the same token again is refused.
    assert.equal((await post(base, '/api/v1/agent/report', RELEASED.ip, token!, { wiped: ['sda', 'sdb'] })).status, 403)
    const again = /rackboot\.token=(\w+)/.exec((await script(RELEASED.ip, `mac=${dash(RELEASED.mac)}`)).body)![1]!
    const full = await post(base, '/api/v1/agent/report', RELEASED.ip, again, { wiped: ['sda', 'sdb'], disks: [{ name: 'sda', sizeBytes: 480e9 }, { name: 'sdb', sizeBytes: 4e12 }] })
    assert.equal(JSON.parse(full.body).state, 'ready')
  })

  await t.test('the attacker\'s own machine: its agent token cannot report for another machine or rewrite it', async () => {
    const own = await script(ATTACKER.ip, `mac=${dash(ATTACKER.mac)}`)
    const token = /rackboot\.token=(\w+)/.exec(own.body)?.[1]
    assert.ok(token, own.body)
    const victimId = JSON.parse(rackboot(['machines', 'show', 'victim', '--json', '--data-dir', join(cwd, 'data')], { cwd }).stdout).id as string
    const res = await post(base, '/api/v1/agent/report', ATTACKER.ip, token!, { machineId: victimId, disks: [{ name: 'sdz', sizeBytes: 1 }], smbios: { uuid: '00000000-0000-4000-8000-000000000000' } })
    assert.equal(res.status, 403)
    const shown = JSON.parse(rackboot(['machines', 'show', 'victim', '--json', '--data-dir', join(cwd, 'data')], { cwd }).stdout)
    assert.equal(shown.uuid, VICTIM.uuid)
    assert.deepEqual(shown.nics.map((n: { mac: string }) => n.mac), [VICTIM.mac])
    assert.deepEqual(shown.hardware.disks.map((d: { name: string }) => d.name), ['sda', 'nvme0n1'])
  })

  await t.test('a flood of claimed MACs from one address creates no machines', async () => {
    const before = JSON.parse(rackboot(['machines', 'list', '--json', '--data-dir', join(cwd, 'data')], { cwd }).stdout).items.length as number
    // The CLI above blocked this process for seconds (spawnSync): pooled keep-alive sockets the server closed
    // meanwhile are not noticed yet. A fresh client, as a flooder would be.
    await agents.get(ATTACKER.ip)?.close()
    agents.delete(ATTACKER.ip)
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => script(ATTACKER.ip, `mac=02-00-00-99-${(i >> 8).toString(16).padStart(2, '0')}-${(i & 255).toString(16).padStart(2, '0')}`)))
    assert.ok(results.every((r) => r.status === 200 && /refused/.test(r.body)))
    const after = JSON.parse(rackboot(['machines', 'list', '--json', '--data-dir', join(cwd, 'data')], { cwd }).stdout).items.length as number
    assert.equal(after, before)
  })
})
