// Redfish VirtualMedia (src/power/redfish/virtual-media.ts) against sushy-emulator in fake mode (OpenStack's Redfish
// emulator: it really downloads the image on InsertMedia), with rackboot's own /media/rackboot.iso route as the image
// server; and against small stubs for what sushy does not do (VirtualMedia only on the manager, no InsertMedia
// action, a BMC that accepts an insert and drops it, no CD drive).
import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pino } from 'pino'
import { Agent } from 'undici'
import { createBootIsoProvider } from '../../src/assets/virtual-media.js'
import { buildApp } from '../../src/http/index.js'
import type { Inventory } from '../../src/inventory/index.js'
import type { Lifecycle } from '../../src/lifecycle/index.js'
import { createMetricsRegistry } from '../../src/metrics.js'
import { isPowerError } from '../../src/power/errors.js'
import { RedfishClient } from '../../src/power/redfish/client.js'
import { ejectVirtualMedia, findVirtualCd, insertVirtualMedia, type VirtualMediaContext } from '../../src/power/redfish/virtual-media.js'
import { startSushy, sushyMissing } from './fixtures/sushy.js'
import { createPowerManager } from '../../src/power/index.js'
import { bmcRecord } from '../support/bmc.js'

function contextFor(t: TestContext, url: string, systemPath: string, username = 'admin', password = 'password'): VirtualMediaContext {
  const agent = new Agent()
  t.after(() => agent.close())
  const client = new RedfishClient({ baseUrl: new URL(url), username, password, agent })
  return { client, systemPath, label: client.label, verifyIntervalMs: 10, taskPollMs: 10 }
}

/** rackboot's ISO route on loopback, serving `bytes` as a user's ISO; records what was asked. */
async function isoServer(t: TestContext, bytes: Buffer): Promise<{ url: string; hits: { method: string; status: number; range: string | null }[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'rb-vm-redfish-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  writeFileSync(join(dir, 'own.iso'), bytes)
  const app = await buildApp({
    inventory: {} as Inventory, lifecycle: { record() {} } as unknown as Lifecycle, registry: createMetricsRegistry(),
    log: pino({ level: 'silent' }), version: 'test',
    virtualMedia: { provider: createBootIsoProvider({ iso: join(dir, 'own.iso'), outDir: dir }), serverUrl: 'http://127.0.0.1' },
  })
  const hits: { method: string; status: number; range: string | null }[] = []
  app.addHook('onResponse', async (request, reply) => {
    hits.push({ method: request.method, status: reply.statusCode, range: request.headers.range ?? null })
  })
  const base = await app.listen({ host: '127.0.0.1', port: 0 })
  t.after(() => app.close())
  return { url: `${base}/media/rackboot.iso`, hits }
}

const ejects = (output: string) => (output.match(/POST \S+\/VirtualMedia\/Cd\/Actions\/VirtualMedia\.EjectMedia/g) ?? []).length
const inserts = (output: string) => (output.match(/POST \S+\/VirtualMedia\/Cd\/Actions\/VirtualMedia\.InsertMedia/g) ?? []).length

test('sushy-emulator: insert the ISO (the BMC downloads it from rackboot), read it back, insert again (eject first), eject', async (t) => {
  const missing = sushyMissing({ auth: true })
  if (missing) {
    console.error(`# SKIP: ${missing}`)
    return t.skip(missing)
  }
  const sushy = await startSushy({ t, auth: { username: 'admin', password: 'sushy-pw' } })
  const iso = await isoServer(t, randomBytes(1024 * 1024 + 7))
  const ctx = contextFor(t, sushy.url, sushy.systemPath, 'admin', 'sushy-pw')
  const raw = async () => {
    const res = await fetch(`${sushy.url}${sushy.systemPath}/VirtualMedia/Cd`, { headers: { authorization: `Basic ${Buffer.from('admin:sushy-pw').toString('base64')}` } })
    return (await res.json()) as { Image: string; Inserted: boolean; WriteProtected: boolean }
  }

  assert.equal((await fetch(`${sushy.url}${sushy.systemPath}`)).status, 401, 'the fixture\'s Basic auth is on')
  const empty = await findVirtualCd(ctx, AbortSignal.timeout(10_000))
  assert.deepEqual(empty, { path: `${sushy.systemPath}/VirtualMedia/Cd`, image: null, inserted: false, writeProtected: false })

  let sent = 0
  const inserted = await insertVirtualMedia(ctx, iso.url, AbortSignal.timeout(30_000), () => sent++)
  assert.equal(sent, 1, 'onSend once, before the insert')
  assert.deepEqual(inserted, { path: `${sushy.systemPath}/VirtualMedia/Cd`, image: iso.url, inserted: true, writeProtected: true })
  assert.deepEqual(await raw(), { ...(await raw()), Image: iso.url, Inserted: true, WriteProtected: true }, 'sushy itself says so')
  assert.deepEqual(iso.hits.filter((h) => h.method === 'GET').map((h) => h.status), [200], 'the BMC downloaded the ISO from rackboot')
  assert.equal(ejects(sushy.output()), 0, 'nothing was in the drive: no eject')

  // Something is inserted: it is ejected first, then the new image goes in.
  const again = await insertVirtualMedia(ctx, `${iso.url}?v=2`, AbortSignal.timeout(30_000))
  assert.equal(again.image, `${iso.url}?v=2`)
  assert.equal(ejects(sushy.output()), 1)
  assert.equal(inserts(sushy.output()), 2)

  const ejected = await ejectVirtualMedia(ctx, AbortSignal.timeout(10_000))
  assert.equal(ejected.inserted, false)
  assert.equal((await raw()).Inserted, false)
  assert.equal(ejects(sushy.output()), 2)
  // Already empty: nothing is sent.
  assert.equal((await ejectVirtualMedia(ctx, AbortSignal.timeout(10_000))).inserted, false)
  assert.equal(ejects(sushy.output()), 2)
})

test('sushy-emulator: an image the BMC cannot fetch is a refusal that names the BMC and proves nothing ran', async (t) => {
  const missing = sushyMissing()
  if (missing) {
    console.error(`# SKIP: ${missing}`)
    return t.skip(missing)
  }
  const sushy = await startSushy({ t })
  const iso = await isoServer(t, randomBytes(4096))
  const ctx = contextFor(t, sushy.url, sushy.systemPath)
  const bad = iso.url.replace('/media/rackboot.iso', '/media/nothing.iso')
  await assert.rejects(insertVirtualMedia(ctx, bad, AbortSignal.timeout(30_000)), (err: unknown) => {
    assert.ok(isPowerError(err, 'rejected'), String(err))
    assert.ok(err.notRun, 'a 4xx proves the insert was not carried out')
    assert.match(err.message, new RegExp(`BMC 127\\.0\\.0\\.1:${sushy.port}`))
    assert.match(err.message, /404/)
    return true
  })
  assert.equal((await findVirtualCd(ctx, AbortSignal.timeout(10_000))).inserted, false)
})

// ---- stubs: what sushy does not do --------------------------------------------------------------------------------

interface StubMember {
  Id: string
  MediaTypes?: string[]
  Image: string | null
  Inserted?: boolean
  WriteProtected?: boolean
  Actions?: Record<string, { target: string }>
}

interface StubOptions {
  /** VirtualMedia on the manager only (Redfish before 2021.1). */
  onManager?: boolean
  members: StubMember[]
  /** Answers 204 to a PATCH and keeps the old values. */
  dropsPatch?: boolean
  /** InsertMedia refuses the optional Inserted/WriteProtected with 400 (Supermicro X12). */
  onlyImage?: boolean
}

async function stubBmc(t: TestContext, o: StubOptions) {
  const sys = '/redfish/v1/Systems/1'
  const collection = o.onManager ? '/redfish/v1/Managers/bmc/VirtualMedia' : `${sys}/VirtualMedia`
  const requests: { method: string; path: string; body: unknown }[] = []
  const memberPath = (m: StubMember) => `${collection}/${m.Id}`
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    let data = ''
    req.on('data', (c) => (data += c))
    req.on('end', () => {
      const path = req.url!.replace(/\/$/, '')
      const body = data ? JSON.parse(data) : null
      requests.push({ method: req.method!, path, body })
      const json = (status: number, doc?: unknown) => {
        res.writeHead(status, doc ? { 'content-type': 'application/json' } : {})
        res.end(doc ? JSON.stringify(doc) : undefined)
      }
      if (req.method === 'GET' && path === '/redfish/v1') return json(200, { '@odata.id': '/redfish/v1/', Systems: { '@odata.id': '/redfish/v1/Systems' } })
      if (req.method === 'GET' && path === sys) {
        return json(200, { '@odata.id': sys, ...(o.onManager ? {} : { VirtualMedia: { '@odata.id': collection } }), Links: { ManagedBy: [{ '@odata.id': '/redfish/v1/Managers/bmc' }] } })
      }
      if (req.method === 'GET' && path === '/redfish/v1/Managers/bmc') {
        return json(200, { '@odata.id': '/redfish/v1/Managers/bmc', ...(o.onManager ? { VirtualMedia: { '@odata.id': collection } } : {}) })
      }
      if (req.method === 'GET' && path === collection) return json(200, { Members: o.members.map((m) => ({ '@odata.id': memberPath(m) })) })
      const member = o.members.find((m) => path === memberPath(m) || path.startsWith(`${memberPath(m)}/`))
      if (!member) return json(404, { error: { code: 'Base.1.8.ResourceMissingAtURI', message: `no ${path}` } })
      if (req.method === 'GET') return json(200, { '@odata.id': memberPath(member), ...member })
      if (req.method === 'PATCH') {
        if (!o.dropsPatch) Object.assign(member, body)
        return json(204)
      }
      if (req.method === 'POST' && path.endsWith('InsertMedia') && member.Actions?.['#VirtualMedia.InsertMedia']) {
        if (o.onlyImage && Object.keys(body).some((k) => k !== 'Image')) {
          return json(400, { error: { code: 'Base.1.8.GeneralError', '@Message.ExtendedInfo': [{ MessageId: 'Base.1.8.ActionParameterUnknown', Message: 'WriteProtected is not supported' }] } })
        }
        Object.assign(member, { Image: body.Image, Inserted: body.Inserted ?? true, WriteProtected: body.WriteProtected ?? true })
        return json(204)
      }
      return json(405, { error: { code: 'Base.1.8.ActionNotSupported', message: 'no such action' } })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.after(() => new Promise<void>((r) => server.close(() => r())))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  return { url, sys, requests, members: o.members, changes: () => requests.filter((r) => r.method !== 'GET') }
}

const IMAGE = 'http://198.18.7.1:8080/media/rackboot.iso'

test('stub: VirtualMedia on the manager, the CD member by MediaTypes, PATCH where the BMC has no InsertMedia action', async (t) => {
  const bmc = await stubBmc(t, {
    onManager: true,
    members: [
      { Id: 'USB', MediaTypes: ['USBStick'], Image: null, Inserted: false },
      { Id: 'CD1', MediaTypes: ['DVD'], Image: 'http://old/x.iso', Inserted: true },
    ],
  })
  const ctx = contextFor(t, bmc.url, bmc.sys)
  let sent = 0
  const state = await insertVirtualMedia(ctx, IMAGE, AbortSignal.timeout(5000), () => sent++)
  assert.equal(sent, 1)
  assert.deepEqual(state, { path: '/redfish/v1/Managers/bmc/VirtualMedia/CD1', image: IMAGE, inserted: true, writeProtected: null })
  // No actions: the old image is ejected by PATCH, then the new one PATCHed in; the USB slot is never touched.
  assert.deepEqual(bmc.changes().map((r) => [r.method, r.path, r.body]), [
    ['PATCH', '/redfish/v1/Managers/bmc/VirtualMedia/CD1', { Image: null, Inserted: false }],
    ['PATCH', '/redfish/v1/Managers/bmc/VirtualMedia/CD1', { Image: IMAGE, Inserted: true }],
  ])
  assert.equal((await ejectVirtualMedia(ctx, AbortSignal.timeout(5000))).inserted, false)
  assert.deepEqual(bmc.changes().at(-1)?.body, { Image: null, Inserted: false })
})

test('stub: an InsertMedia that refuses Inserted/WriteProtected gets Image alone', async (t) => {
  const actions = { '#VirtualMedia.InsertMedia': { target: '/redfish/v1/Systems/1/VirtualMedia/Cd/Actions/VirtualMedia.InsertMedia' } }
  const bmc = await stubBmc(t, { onlyImage: true, members: [{ Id: 'Cd', MediaTypes: ['CD', 'DVD'], Image: null, Inserted: false, Actions: actions }] })
  let sent = 0
  const state = await insertVirtualMedia(contextFor(t, bmc.url, bmc.sys), IMAGE, AbortSignal.timeout(5000), () => sent++)
  assert.equal(state.image, IMAGE)
  assert.equal(sent, 1)
  assert.deepEqual(bmc.changes().map((r) => r.body), [{ Image: IMAGE, Inserted: true, WriteProtected: true }, { Image: IMAGE }])
})

test('stub: an insert the BMC accepts and drops is not-applied, naming the fields; no CD drive is unsupported', async (t) => {
  const bmc = await stubBmc(t, { dropsPatch: true, members: [{ Id: 'Cd', MediaTypes: ['CD'], Image: null, Inserted: false }] })
  const ctx = contextFor(t, bmc.url, bmc.sys)
  await assert.rejects(insertVirtualMedia(ctx, IMAGE, AbortSignal.timeout(5000)), (err: unknown) => {
    assert.ok(isPowerError(err, 'not-applied'), String(err))
    assert.match(err.message, new RegExp(`^BMC ${ctx.label.replace(/\./g, '\\.')} `))
    assert.match(err.message, /Image is null, not "http:\/\/198\.18\.7\.1:8080\/media\/rackboot\.iso"/)
    assert.match(err.message, /Inserted is false/)
    return true
  })
  assert.equal(bmc.requests.filter((r) => r.method === 'GET' && r.path.endsWith('/Cd')).length, 1 + 3, 'found once, read back three times')

  const stuck = await stubBmc(t, { dropsPatch: true, members: [{ Id: 'Cd', MediaTypes: ['CD'], Image: IMAGE, Inserted: true }] })
  await assert.rejects(ejectVirtualMedia(contextFor(t, stuck.url, stuck.sys), AbortSignal.timeout(5000)), (err: unknown) => {
    assert.ok(isPowerError(err, 'not-applied'), String(err))
    assert.match(err.message, /eject but the read-back says Inserted is true/)
    return true
  })

  const noCd = await stubBmc(t, { members: [{ Id: 'Floppy', MediaTypes: ['Floppy', 'USBStick'], Image: null }] })
  await assert.rejects(insertVirtualMedia(contextFor(t, noCd.url, noCd.sys), IMAGE, AbortSignal.timeout(5000)), (err: unknown) => {
    assert.ok(isPowerError(err, 'unsupported'), String(err))
    assert.match(err.message, /no virtual CD\/DVD drive \(its virtual media: Floppy \(Floppy\/USBStick\)\)/)
    return true
  })
  assert.deepEqual(noCd.changes(), [], 'nothing was sent')
})

test('sushy-emulator: `power media-boot` through the power manager: insert, next boot CD, power on, verified; tidied after the boot', async (t) => {
  const missing = sushyMissing({ auth: true })
  if (missing) {
    console.error(`# SKIP: ${missing}`)
    return t.skip(missing)
  }
  const sushy = await startSushy({ t, auth: { username: 'admin', password: 'sushy-pw' } })
  const iso = await isoServer(t, randomBytes(64 * 1024))
  const clearMarks: boolean[] = []
  const power = createPowerManager({
    bmcs: {
      get: async (id) => bmcRecord({ machineId: id, type: 'redfish', address: sushy.url, bootMethod: 'virtual-media' }),
      credentials: async () => ({ username: 'admin', password: 'sushy-pw' }),
      setClearOverrideAfterBoot: async (_id, value) => void clearMarks.push(value),
    },
    log: pino({ level: 'silent' }), mediaUrl: async () => iso.url,
    settings: { timeoutMs: 20_000, minRebootIntervalMs: 0, verifyTimeoutMs: 10_000, verifyIntervalMs: 250, sessionIdleMs: 0 },
  })
  t.after(() => power.stop())
  const booted = await power.netbootNow('m1', { mode: 'uefi' })
  assert.equal(booted.method, 'virtual-media')
  assert.equal(booted.readback.device, 'cd')
  assert.deepEqual([booted.previous, booted.action, booted.verified], ['off', 'on', true])
  assert.equal(inserts(sushy.output()), 1)
  assert.deepEqual(iso.hits.filter((h) => h.method === 'GET').map((h) => h.status), [200], 'the BMC fetched the ISO')
  assert.deepEqual(clearMarks, [true], 'marked: eject and clear once the machine has network-booted')
  // What the after-boot tidy does (src/lifecycle/after-boot.ts): eject, clear the override.
  await power.ejectMedia('m1')
  const cleared = await power.setBootDevice('m1', { device: 'none' })
  assert.equal(cleared.enabled, false)
  assert.equal(ejects(sushy.output()), 1)
  assert.deepEqual(clearMarks, [true, false])
})
