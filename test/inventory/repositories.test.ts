import { test, type TestContext } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openSqliteInventory, isRackbootErrorCode } from './helpers.js'
import pg from 'pg'
import { sql } from 'kysely'
import { eachBackend, inventoryBackends, pgCluster, skipped, type Backend } from '../support/backends.js'

const NOW = 1_700_000_000_000
const backends = inventoryBackends()


eachBackend('machines: create, look up by MAC, uuid, serial and name', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const m = await inv.machines.create(
    { name: 'r12-u07', serial: 'CZ2D1R0A7', uuid: '8C3F5A7E-1B2D-4C6E-9F01-23456789ABCD', nics: [{ mac: '3C-EC-EF-12-34-56', name: 'eno1', boot: true }], labels: { zone: 'a' } },
    NOW,
  )
  assert.equal(m.state, 'new')
  assert.equal(m.uuid, '8c3f5a7e-1b2d-4c6e-9f01-23456789abcd')
  assert.deepEqual(m.nics, [{ mac: '3c:ec:ef:12:34:56', name: 'eno1', boot: true }])
  assert.equal((await inv.machines.byMac('3cecef123456'))?.id, m.id)
  assert.equal((await inv.machines.byUuid('8c3f5a7e-1b2d-4c6e-9f01-23456789abcd'))?.id, m.id)
  assert.equal((await inv.machines.bySerial('CZ2D1R0A7'))?.id, m.id)
  assert.equal((await inv.machines.byName('r12-u07'))?.id, m.id)
  assert.equal(await inv.machines.byMac('00:00:00:00:00:01'), null)
})

eachBackend('machines: a duplicate serial matches nobody; a duplicate name or MAC is a conflict', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  await inv.machines.create({ serial: 'To Be Filled By O.E.M.', nics: [{ mac: '02:00:00:00:00:01', name: null, boot: true }], name: 'a' }, NOW)
  await inv.machines.create({ serial: 'To Be Filled By O.E.M.' }, NOW)
  assert.equal(await inv.machines.bySerial('To Be Filled By O.E.M.'), null)
  await assert.rejects(inv.machines.create({ name: 'a' }, NOW), (e) => isRackbootErrorCode(e, 'RB_ERR_CONFLICT'))
  await assert.rejects(
    inv.machines.create({ nics: [{ mac: '02:00:00:00:00:01', name: null, boot: true }] }, NOW),
    (e) => isRackbootErrorCode(e, 'RB_ERR_CONFLICT'),
  )
  assert.equal(await inv.machines.count(), 2, 'a failed create leaves nothing behind')
})

eachBackend('machines: list filters by state, labels, text and pages with a cursor', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  for (let i = 0; i < 25; i++) {
    const mac = `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`
    await inv.machines.create({ name: `node-${i}`, serial: `SER${i}`, labels: { rack: i % 2 ? 'r1' : 'r2' }, nics: [{ mac, name: null, boot: true }], state: i < 5 ? 'ready' : 'new' }, NOW)
  }
  assert.equal((await inv.machines.list({ state: 'ready' })).items.length, 5)
  assert.equal(await inv.machines.count({ labels: { rack: 'r1' } }), 12)
  assert.deepEqual((await inv.machines.list({ text: 'ser17' })).items.map((m) => m.name), ['node-17'])
  assert.deepEqual((await inv.machines.list({ text: '02:00:00:00:01:0a' })).items.map((m) => m.name), ['node-10'])
  assert.deepEqual((await inv.machines.list({ text: 'node_1' })).items.map((m) => m.name), [], "'_' is literal, not a wildcard")
  const seen = new Set<string>()
  let after: string | undefined
  let pages = 0
  do {
    const page = await inv.machines.list({ limit: 10, ...(after ? { after } : {}) })
    page.items.forEach((m) => seen.add(m.id))
    after = page.next ?? undefined
    pages++
  } while (after)
  assert.equal(seen.size, 25)
  assert.equal(pages, 3)
})

eachBackend('machines: setState only moves from the expected state', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const m = await inv.machines.create({ name: 'x' }, NOW)
  assert.equal(await inv.machines.setState(m.id, 'ready', 'provisioning', NOW + 1), false)
  assert.equal(await inv.machines.setState(m.id, 'new', 'discovered', NOW + 1), true)
  const after = await inv.machines.get(m.id)
  assert.equal(after?.state, 'discovered')
  assert.equal(after?.stateChangedAt, NOW + 1)
})

eachBackend('hardware facts are stored and deleting a machine removes its NICs, hardware and BMC', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const m = await inv.machines.create({ nics: [{ mac: '02:00:00:00:00:09', name: null, boot: true }] }, NOW)
  await inv.machines.setHardware(m.id, { cpu: { cores: 32 }, memory: { totalBytes: 2 ** 38 }, disks: [{ name: 'nvme0n1', sizeBytes: 1e12, type: 'nvme' }] }, NOW)
  await inv.bmcs.put(m.id, { type: 'ipmi', address: '198.18.5.5', username: 'ADMIN', password: 'hunter2' })
  assert.equal((await inv.machines.get(m.id))?.hardware?.cpu?.cores, 32)
  assert.equal(await inv.machines.delete(m.id), true)
  assert.equal(await inv.machines.byMac('02:00:00:00:00:09'), null)
  assert.equal(await inv.bmcs.get(m.id), null)
})

eachBackend('BMC passwords are sealed at rest with the key file and readable only through credentials()', async (t, backend) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-inv-'))
  const file = join(dir, 'rackboot.db')
  const keyFile = join(dir, 'secret.key')
  const sqlite = backend.name === 'sqlite'
  const inv = sqlite ? await openSqliteInventory({ file, secretKeyFile: keyFile }) : await backend.open({ secretKeyFile: keyFile })
  const m = await inv.machines.create({ name: 'b' }, NOW)
  const bmc = await inv.bmcs.put(m.id, { type: 'redfish', address: '198.18.5.6', username: 'root', password: 'S3cr3t-pa55' })
  assert.equal(bmc.hasPassword, true)
  assert.equal(JSON.stringify(bmc).includes('S3cr3t'), false)
  assert.deepEqual(await inv.bmcs.credentials(m.id), { username: 'root', password: 'S3cr3t-pa55', kg: null })
  await inv.bmcs.put(m.id, { type: 'redfish', address: '198.18.5.7', username: 'root' })
  assert.equal((await inv.bmcs.credentials(m.id))?.password, 'S3cr3t-pa55', 'an update without a password keeps it')
  // An IPMI K_G is a secret too: sealed, never in the record, only through credentials().
  const kg = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678'
  const ipmi = await inv.bmcs.put(m.id, { type: 'ipmi', address: '198.18.5.7', username: 'root', kg, kgRef: 'env:KG' })
  assert.deepEqual([ipmi.hasKg, ipmi.kgRef, JSON.stringify(ipmi).includes(kg)], [true, 'env:KG', false])
  assert.equal((await inv.bmcs.credentials(m.id))?.kg?.toString('hex'), kg)
  await inv.bmcs.put(m.id, { type: 'redfish', address: '198.18.5.7', username: 'root' })
  if (!sqlite) {
    // PostgreSQL: no file to read; what its tables hold is what a dump or a replica would.
    const rows = JSON.stringify(await inv.db.selectFrom('bmcs').selectAll().execute())
    assert.equal(rows.includes('S3cr3t-pa55'), false, 'the password is not in the database')
    assert.equal(rows.includes('a1b2c3d4e5f6'), false, 'nor the K_G')
  }
  await inv.close()
  assert.equal(statSync(keyFile).mode & 0o777, 0o600)
  if (sqlite) {
    const raw = readFileSync(file)
    assert.equal(raw.includes(Buffer.from('S3cr3t-pa55')), false, 'the password is not in the database file')
    assert.equal(raw.includes(Buffer.from('a1b2c3d4e5f6')), false, 'nor the K_G')
  }
  const again = sqlite ? await openSqliteInventory({ file, secretKeyFile: keyFile }) : await backend.open({ url: (inv as { url?: string }).url!, secretKeyFile: keyFile })
  t.after(() => again.close())
  assert.equal((await again.bmcs.credentials(m.id))?.password, 'S3cr3t-pa55')
})

eachBackend('leases and reservations', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  await inv.leases.put({ ip: '198.18.0.10', mac: '02:00:00:00:00:01', clientId: null, subnet: '198.18.0.0/24', state: 'bound', hostname: null, expiresAt: NOW + 1000, updatedAt: NOW })
  await inv.leases.put({ ip: '198.18.0.11', mac: '02:00:00:00:00:02', clientId: '01020000000002', subnet: '198.18.0.0/24', state: 'offered', hostname: null, expiresAt: NOW + 10, updatedAt: NOW })
  assert.equal((await inv.leases.byClient('02:00:00:00:00:01', null))?.ip, '198.18.0.10')
  assert.equal((await inv.leases.byClient('ff:ff:ff:ff:ff:ff', '01020000000002'))?.ip, '198.18.0.11')
  assert.equal((await inv.leases.activeIn('198.18.0.0/24', NOW + 100)).length, 1)
  assert.equal(await inv.leases.expire(NOW + 100), 1)
  assert.equal((await inv.leases.byIp('198.18.0.11'))?.state, 'expired')
  const m = await inv.machines.create({ name: 'r' }, NOW)
  await inv.reservations.setForMachine(m.id, [{ ip: '198.18.0.50', mac: '02:00:00:00:00:50', clientId: null, hostname: 'r' }])
  assert.equal((await inv.reservations.byMac('02:00:00:00:00:50'))?.machineId, m.id)
  await assert.rejects(
    inv.reservations.put({ ip: '198.18.0.51', mac: '02:00:00:00:00:50', clientId: null, hostname: null, machineId: null }),
    (e) => isRackbootErrorCode(e, 'RB_ERR_CONFLICT'),
  )
})

eachBackend('a lease write keeps or moves the address: same client updates its state and times, another client takes the whole row', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const base = { ip: '198.18.0.20', mac: '02:00:00:00:00:21', clientId: '01020000000021', subnet: '198.18.0.0/24', hostname: null } as const
  const put = (l: Parameters<typeof inv.leases.put>[0]) => ('putMany' in inv.leases ? (inv.leases as { putMany(ls: typeof l[]): Promise<void> }).putMany([l]) : inv.leases.put(l))
  await put({ ...base, state: 'offered', expiresAt: NOW + 30, updatedAt: NOW })
  await put({ ...base, state: 'bound', hostname: 'n1', expiresAt: NOW + 3600, updatedAt: NOW + 1 })
  assert.deepEqual(await inv.leases.byIp(base.ip), { ...base, state: 'bound', hostname: 'n1', expiresAt: NOW + 3600, updatedAt: NOW + 1 })
  // Another client (MAC, client id, even subnet) takes the address: every column is the new lease's.
  const moved = { ip: base.ip, mac: '02:00:00:00:00:22', clientId: null, subnet: '198.18.0.0/23', state: 'offered', hostname: null, expiresAt: NOW + 60, updatedAt: NOW + 2 } as const
  await put(moved)
  assert.deepEqual(await inv.leases.byIp(base.ip), moved)
  assert.equal(await inv.leases.byClient('02:00:00:00:00:21', '01020000000021'), null, 'the old client holds nothing')
  assert.equal((await inv.leases.byClient('02:00:00:00:00:22', null))?.ip, base.ip)
  // Only the client id differs: still a move.
  await put({ ...moved, clientId: '01020000000022', updatedAt: NOW + 3 })
  assert.equal((await inv.leases.byIp(base.ip))?.clientId, '01020000000022')
  assert.equal((await inv.leases.list({ mac: '02:00:00:00:00:21' })).length, 0)
})

eachBackend('lease writes share the connection safely: batched, rolled back with a failed transaction, never inside another caller\'s transaction', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const lease = (i: number, state: 'offered' | 'bound' = 'bound') => ({ ip: `198.18.1.${i}`, mac: `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`, clientId: null, subnet: '198.18.1.0/24', state, hostname: null, expiresAt: NOW + 1000, updatedAt: NOW })
  const putMany = (inv.leases as unknown as { putMany(l: unknown[]): Promise<void> }).putMany
  await putMany(Array.from({ length: 50 }, (_, i) => lease(i + 1)))
  await putMany([lease(1, 'offered')])
  assert.equal((await inv.leases.list({ subnet: '198.18.1.0/24' })).length, 50)
  assert.equal((await inv.leases.byIp('198.18.1.1'))?.state, 'offered', 'a second write of an address updates it')
  // Inside an inventory transaction the write joins it, and goes when it rolls back.
  await assert.rejects(
    inv.transaction(async (tx) => {
      await tx.leases.put(lease(200))
      throw new Error('abort')
    }),
    /abort/,
  )
  assert.equal(await inv.leases.byIp('198.18.1.200'), null)
  // A write from outside waits for another caller's open transaction instead of landing inside it.
  let release!: () => void
  const held = new Promise<void>((r) => (release = r))
  const tx = inv.transaction(async (txInv) => {
    await txInv.machines.create({ name: 'held' }, NOW)
    await held
    throw new Error('rolled back')
  })
  await new Promise((r) => setTimeout(r, 10))
  const outside = inv.leases.put(lease(201))
  await new Promise((r) => setTimeout(r, 10))
  release()
  await assert.rejects(tx, /rolled back/)
  await outside
  assert.equal((await inv.leases.byIp('198.18.1.201'))?.state, 'bound', 'the outside write survives the other transaction\'s rollback')
})

test('background checkpoints: the main connection never checkpoints, a worker copies the WAL into the database', async (t) => {
  const { mkdtempSync, statSync, rmSync } = await import('node:fs')
  const { tmpdir } = await import('node:os')
  const { join } = await import('node:path')
  const dir = mkdtempSync(join(tmpdir(), 'rb-ckpt-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'rackboot.db')
  const inv = await openSqliteInventory({ file, backgroundCheckpoints: true })
  let closed = false
  t.after(() => (closed ? undefined : inv.close()))
  const { sql } = await import('kysely')
  const pragma = async (q: string) => (await sql.raw(`pragma ${q}`).execute(inv.db)).rows[0] as Record<string, number>
  assert.equal((await pragma('wal_autocheckpoint')).wal_autocheckpoint, 0)
  await new Promise((r) => setTimeout(r, 1500)) // the migrations' pages reach the file first
  const before = statSync(file).size
  const putMany = (inv.leases as unknown as { putMany(l: unknown[]): Promise<void> }).putMany
  for (let b = 0; b < 20; b++) {
    await putMany(Array.from({ length: 500 }, (_, i) => ({ ip: `10.${b}.${i >> 8}.${i & 255}`, mac: `02:00:00:${b.toString(16).padStart(2, '0')}:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, clientId: null, subnet: '10.0.0.0/8', state: 'bound', hostname: null, expiresAt: NOW + 1000, updatedAt: NOW })))
  }
  assert.ok(statSync(`${file}-wal`).size > 1_000_000, 'the writes went to the WAL')
  const deadline = Date.now() + 5000
  while (statSync(file).size <= before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
  assert.ok(statSync(file).size > before + 500_000, `the worker copied the WAL into the database (${before} -> ${statSync(file).size})`)
  closed = true
  await inv.close()
  const again = await openSqliteInventory({ file })
  t.after(() => again.close())
  assert.equal((await again.leases.list({ subnet: '10.0.0.0/8' })).length, 10_000)
})

eachBackend('events append in order and trim per machine', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  for (let i = 0; i < 10; i++) await inv.events.append({ machineId: 'm-1', type: 'boot.dhcp', at: NOW + i, message: `e${i}`, data: { i } })
  await inv.events.append({ machineId: 'm-2', type: 'boot.dhcp', at: NOW, message: 'other', data: {} })
  const all = await inv.events.list({ machineId: 'm-1' })
  assert.deepEqual(all.map((e) => e.data.i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
  assert.deepEqual((await inv.events.list({ machineId: 'm-1', since: all[7]!.seq })).map((e) => e.message), ['e8', 'e9'])
  assert.deepEqual((await inv.events.list({ machineId: 'm-1', limit: 3, newest: true })).map((e) => e.message), ['e7', 'e8', 'e9'], 'the tail, oldest first')
  assert.deepEqual((await inv.events.list({ machineId: 'm-2', limit: 1, newest: true })).map((e) => e.message), ['other'])
  assert.equal(await inv.events.trim('m-1', 3), 7)
  assert.deepEqual((await inv.events.list({ machineId: 'm-1' })).map((e) => e.message), ['e7', 'e8', 'e9'])
  assert.equal((await inv.events.list({ machineId: 'm-2' })).length, 1)
})

eachBackend('tokens: only a hash is stored; verify, expiry and revoke', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const { token, secret } = await inv.tokens.create({ name: 'capi', scopes: ['read', 'provision'] }, NOW)
  assert.match(secret, /^rbk_/)
  assert.equal((await inv.tokens.verify(secret, NOW + 1))?.id, token.id)
  assert.equal(await inv.tokens.verify(secret + 'x', NOW + 1), null)
  const rows = await inv.db.selectFrom('api_tokens').selectAll().execute()
  assert.equal(JSON.stringify(rows).includes(secret), false)
  const exp = await inv.tokens.create({ name: 'short', scopes: ['read'], expiresAt: NOW + 10 }, NOW)
  assert.equal(await inv.tokens.verify(exp.secret, NOW + 10), null)
  assert.equal(await inv.tokens.revoke('capi', NOW + 2), true)
  assert.equal(await inv.tokens.verify(secret, NOW + 3), null)
  await assert.rejects(inv.tokens.create({ name: 'short', scopes: ['read'] }, NOW), (e) => isRackbootErrorCode(e, 'RB_ERR_CONFLICT'))
})

eachBackend('transaction: all or nothing', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  await assert.rejects(
    inv.transaction(async (tx) => {
      await tx.machines.create({ name: 'one' }, NOW)
      await tx.machines.create({ name: 'one' }, NOW)
    }),
    (e) => isRackbootErrorCode(e, 'RB_ERR_CONFLICT'),
  )
  assert.equal(await inv.machines.count(), 0)
  await inv.transaction(async (tx) => {
    await tx.machines.create({ name: 'two' }, NOW)
  })
  assert.equal(await inv.machines.count(), 1)
})

eachBackend('boot tokens: one machine, one purpose, a limited time; only a hash is stored', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const m = await inv.machines.create({ name: 'bt' }, NOW)
  const secret = await inv.bootTokens.issue({ machineId: m.id, purpose: 'agent', clientIp: '198.18.0.9', ttlMs: 1000 }, NOW)
  assert.match(secret, /^[A-Za-z0-9]{32}$/)
  assert.equal(await inv.bootTokens.verify(secret, 'config', NOW), null, 'wrong purpose')
  const ok = await inv.bootTokens.verify(secret, 'agent', NOW + 10)
  assert.equal(ok?.machineId, m.id)
  assert.equal(ok?.clientIp, '198.18.0.9')
  assert.equal(await inv.bootTokens.verify(secret, 'agent', NOW + 1000), null, 'expired')
  assert.equal(await inv.bootTokens.verify('${uuid}', 'agent', NOW), null)
  const rows = await inv.db.selectFrom('boot_tokens').selectAll().execute()
  assert.equal(JSON.stringify(rows).includes(secret), false)
  assert.equal(await inv.bootTokens.purge(NOW + 1000), 1)
})

eachBackend('profiles keep their install-disk selector, machines their network; null clears, an update without them keeps them', async (t, backend) => {
  const inv = await backend.open()
  t.after(() => inv.close())
  const base = { name: 'w', description: null, talosVersion: 'v1.13.9', arch: 'amd64' as const, schematic: null, kernelArgs: [], baseConfig: null, patches: [], managedBy: null }
  const selector = { type: ['ssd' as const, 'nvme' as const], size: { min: '400GB', max: 2e12 }, model: 'Micron_*', prefer: 'largest' as const }
  assert.deepEqual((await inv.profiles.put({ ...base, installDisk: selector }, NOW)).installDisk, selector)
  assert.deepEqual((await inv.profiles.get('w'))?.installDisk, selector)
  assert.equal((await inv.profiles.put(base, NOW)).installDisk, null, 'put replaces the whole profile: no selector given, none kept')
  assert.equal((await inv.profiles.list())[0]?.installDisk, null)

  const network = {
    addresses: [
      { link: 'eno1', addresses: ['198.18.0.20/24', 'fd00::20/64'], gateway: '198.18.0.1', mtu: 9000 },
      { mac: '3c:ec:ef:12:34:56', addresses: ['198.19.0.20/24'] },
    ],
    nameservers: ['198.18.0.53'],
  }
  const m = await inv.machines.create({ name: 'static', network }, NOW)
  assert.deepEqual(m.network, network)
  const plain = await inv.machines.create({ name: 'dhcp' }, NOW)
  assert.equal(plain.network, null)
  assert.deepEqual((await inv.machines.update(m.id, { rack: 'r1' }, NOW + 1)).network, network, 'an update that does not name it keeps it')
  assert.deepEqual((await inv.machines.list({ text: 'static' })).items[0]?.network, network)
  assert.deepEqual((await inv.queries.scanMachines({ text: 'static' })).items[0]?.network, network)
  assert.equal((await inv.machines.update(m.id, { network: null }, NOW + 2)).network, null)
  const raw = await inv.db.selectFrom('machines').select('network').where('id', '=', m.id).executeTakeFirstOrThrow()
  assert.equal(raw.network, null)
})

test('PostgreSQL: text sorts by code point, as on SQLite, whatever the database\'s own collation [postgres]', async (t) => {
  const backend = backends.find((b) => b.name === 'postgres')!
  if (await skipped(t, backend)) return
  const cluster = await pgCluster()
  if ('skip' in cluster) return
  // A database whose default collation ignores case and punctuation, as one made with en_US.UTF-8 would.
  const name = `icu${process.pid}`
  const admin = new pg.Client({ connectionString: cluster.url('postgres') })
  await admin.connect()
  try {
    await admin.query(`CREATE DATABASE "${name}" TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'`)
  } catch (err) {
    t.skip(`no ICU collation to test with: ${(err as Error).message}`)
    return
  } finally {
    await admin.end()
  }
  const inv = await backend.open({ url: cluster.url(name) })
  t.after(() => inv.close())
  const probe = await sql<{ lt: boolean }>`select 'B' < 'a' as lt`.execute(inv.db)
  assert.equal(probe.rows[0]!.lt, false, 'the database\'s own collation puts a before B')

  const names = ['r1-u10', 'r10-u1', 'B', 'a', 'r1-u2', 'Zed', '_x', 'zed-2']
  for (const [i, n] of names.entries()) await inv.machines.create({ name: n, serial: n.toUpperCase(), rack: n, nics: [{ mac: `02:00:00:00:0${i}:0a`, name: null, boot: true }] }, NOW + i)
  const byCodeUnit = (list: string[]) => [...list].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
  for (const key of ['name', 'rack', 'serial'] as const) {
    for (const desc of [false, true]) {
      const seen: string[] = []
      let after: string | undefined
      do {
        const page = await inv.queries.scanMachines({ sort: { key, desc }, limit: 3, ...(after ? { after } : {}) })
        seen.push(...page.items.map((m) => m[key]!))
        after = page.next ?? undefined
      } while (after)
      const want = byCodeUnit(names.map((n) => (key === 'serial' ? n.toUpperCase() : n)))
      assert.deepEqual(seen, desc ? want.reverse() : want, `sort ${desc ? '-' : ''}${key}`)
    }
  }
  const ids = (await inv.machines.list({ limit: 3 })).items.map((m) => m.id)
  assert.deepEqual(ids, byCodeUnit(ids))
  // Free text folds ASCII case, as SQLite's lower() and LIKE do.
  assert.deepEqual((await inv.machines.list({ text: 'ZED' })).items.map((m) => m.name).sort(), ['Zed', 'zed-2'])
  assert.deepEqual((await inv.queries.scanMachines({ text: 'ZED' })).items.map((m) => m.name).sort(), ['Zed', 'zed-2'])
  for (const c of ['b', 'A', '_c']) await inv.classes.put({ name: c, description: null, selectors: [], profile: null, patches: [], managedBy: null }, NOW)
  assert.deepEqual((await inv.classes.list()).map((c) => c.name), ['A', '_c', 'b'])
})
