// Inventory files through the API: POST /inventory/import (files in the body, the local import's checks and
// report), GET /inventory/export (files in the answer); admin to import, read to export; bounded bodies.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import {
  exportInventory, importInventory, InventoryFileError, loadInventoryFiles, openSqliteInventory, type InventoryProblem,
} from '../../src/inventory/index.js'
import { checkSelector } from '../../src/matching/index.js'
import { TEST_CA_PEM, tempDir } from '../inventory/helpers.js'
import { apiSetup, type ApiSetup } from './support/app.js'

const EXAMPLE = join(import.meta.dirname, '..', '..', 'inventory')

/** Every file under `dir` as {path, content}, paths relative and / separated. */
function filesOf(dir: string, under = ''): { path: string; content: string }[] {
  return readdirSync(join(dir, under)).sort().flatMap((name) => {
    const rel = under ? `${under}/${name}` : name
    return statSync(join(dir, rel)).isDirectory() ? filesOf(dir, rel) : [{ path: rel, content: readFileSync(join(dir, rel), 'utf8') }]
  })
}

function post(s: ApiSetup, payload: unknown, scope: 'admin' | 'provision' | 'read' = 'admin') {
  return s.app.inject({ method: 'POST', url: '/api/v1/inventory/import', headers: s.auth(scope), payload: payload as object })
}

/** What the local command's loader reports for these files written under a directory, named relative to it. */
function localProblems(files: Record<string, string>, withDatabase?: (dir: string) => Promise<void>): Promise<InventoryProblem[]> {
  const dir = tempDir('rb-api-inv-')
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true })
    writeFileSync(join(dir, path), content)
  }
  const rename = (p: InventoryProblem) => ({ ...p, file: relative(dir, join(process.cwd(), p.file)) })
  return (async () => {
    try {
      loadInventoryFiles(dir, { checkSelector })
      await withDatabase?.(dir)
      assert.fail('the local import took these files')
    } catch (err) {
      if (!(err instanceof InventoryFileError)) throw err
      return err.problems.map(rename)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })()
}

test('the example inventory: the same report as the local import; again, all unchanged; a dry run changes nothing', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const files = filesOf(EXAMPLE)
  assert.ok(files.length >= 3)

  // The local command's report, on a database of its own.
  const local = await openSqliteInventory({ file: ':memory:' })
  t.after(() => local.close())
  const want = await importInventory(local, loadInventoryFiles(EXAMPLE, { checkSelector }), { now: Date.now() })

  const dry = await post(s, { files, dryRun: true })
  assert.equal(dry.statusCode, 200, dry.body)
  assert.equal(dry.json().dryRun, true)
  assert.match(dry.json().summary, /^\(dry run\) \d+ created, 0 updated, 0 deleted, 0 unchanged$/)
  assert.ok(dry.json().lines.every((l: string) => / would be created$/.test(l)), dry.json().lines.join('\n'))
  assert.equal(await s.inventory.machines.count(), 0, 'a dry run writes nothing')

  const r = await post(s, { files })
  assert.equal(r.statusCode, 200, r.body)
  const report = r.json()
  const strip = (cs: { kind: string; name: string; action: string; fields?: string[] | null }[]) => cs.map((c) => ({ kind: c.kind, name: c.name, action: c.action, fields: c.fields ?? null }))
  assert.deepEqual(strip(report.changes), strip(want.changes))
  // The same machines warned about, for the same references (the API's wording: the caller sends secrets).
  const refs = (ws: string[]) => ws.map((w) => /^machine (\S+): BMC password not set: .*?(RACKBOOT_\w+)/.exec(w)?.slice(1).join(' ') ?? w)
  assert.deepEqual(refs(report.warnings), refs(want.warnings))
  assert.equal(report.warnings.length, 3)
  assert.equal(report.files, 3)
  const created = want.changes.length
  assert.deepEqual(report.counts, { created, updated: 0, deleted: 0, unchanged: 0 })
  assert.equal(report.summary, `${created} created, 0 updated, 0 deleted, 0 unchanged`)
  assert.ok(report.lines.includes('machine r12-u02 created'), report.lines.join('\n'))
  assert.ok(report.changes.filter((c: any) => c.kind === 'machine').every((c: any) => typeof c.id === 'string'))
  assert.equal(await s.inventory.machines.count(), want.changes.filter((c) => c.kind === 'machine').length)

  const again = (await post(s, { files })).json()
  assert.deepEqual(again.changes, [])
  assert.equal(again.summary, `0 created, 0 updated, 0 deleted, ${created} unchanged`)

  // On the timeline, by whom.
  await s.timeline.flush()
  const m = await s.inventory.machines.byName('r12-u02')
  const events = await s.inventory.events.list({ machineId: m!.id })
  assert.match(events[0]!.message, /created by inventory import \(token root\)/)
  assert.ok((await s.inventory.events.list({ types: ['inventory.imported'] })).length >= 1)
})

test('files a document refers to (baseConfigFile, caFile) are found among the files sent, relative to it', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const files = [
    { path: 'profiles/p.yaml', content: 'profiles:\n  - name: worker\n    talosVersion: v1.13.9\n    baseConfigFile: ../base/worker.yaml\n' },
    // A YAML file that is not an inventory document: marked, or it would be read as one (as a directory import would).
    { path: 'base/worker.yaml', content: 'version: v1alpha1\nmachine:\n  type: worker\n', kind: 'referenced' },
    { path: 'certs/ca.pem', content: TEST_CA_PEM },
    { path: 'racks/r1.yaml', content: 'machines:\n  - name: rf-1\n    serial: RF1\n    profile: worker\n    bmc:\n      type: redfish\n      address: https://10.30.1.1\n      caFile: ../certs/ca.pem\n' },
  ]
  const r = await post(s, { files })
  assert.equal(r.statusCode, 200, r.body)
  assert.equal(r.json().files, 2)
  assert.equal((await s.inventory.profiles.get('worker'))?.baseConfig, 'version: v1alpha1\nmachine:\n  type: worker\n')
  const m = await s.inventory.machines.byName('rf-1')
  assert.match((await s.inventory.bmcs.get(m!.id))!.caPem!, /BEGIN CERTIFICATE/)

  // Not among them: the local command's message.
  const missing = await post(s, { files: [{ path: 'racks/r1.yaml', content: files[3]!.content.replace('../certs/ca.pem', '../certs/nope.pem') }] })
  assert.equal(missing.statusCode, 400)
  assert.deepEqual(missing.json().details, [{ file: 'racks/r1.yaml', line: 8, column: 15, field: 'machines[0].bmc.caFile', message: 'cannot read ../certs/nope.pem: ENOENT' }])
  // Nothing outside the files sent: no climbing out, no absolute paths to the server's disk.
  for (const ref of ['../../etc/hostname', '/etc/hostname']) {
    const out = await post(s, { files: [{ path: 'p.yaml', content: `profiles:\n  - name: leak\n    baseConfigFile: ${ref}\n` }] })
    assert.equal(out.statusCode, 400, ref)
    assert.equal(out.json().details[0].message, `cannot read ${ref}: ENOENT`)
  }
})

test('bad files: 400 with details [{file, line, column, field, message}] exactly as the local import gives them; nothing written', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const cases: Record<string, string>[] = [
    // YAML syntax, schema (unknown field, wrong type, enum), duplicates across files, a selector that does not parse.
    { 'racks/bad.yaml': 'machines:\n  - name: a\n    serial: [unclosed\n' },
    { 'racks/a.yaml': 'machines:\n  - name: a\n    serial: S1\n    colour: red\n  - name: b\n    serial: S2\n    unit: twelve\n', 'racks/b.yaml': 'machines:\n  - name: a\n    serial: S3\n    arch: sparc\n' },
    { 'classes.yaml': 'classes:\n  - name: c\n    selectors:\n      - "memory.gigs > 1"\n' },
  ]
  for (const files of cases) {
    const want = await localProblems(files)
    const r = await post(s, { files: Object.entries(files).map(([path, content]) => ({ path, content })) })
    assert.equal(r.statusCode, 400, r.body)
    assert.equal(r.json().error, 'RB_ERR_INVENTORY_FILE')
    assert.deepEqual(r.json().details, want)
    const p = want[0]!
    assert.ok(r.json().message.startsWith(`${p.file}:${p.line}:${p.column}: ${p.field}: ${p.message}`), r.json().message)
  }
  // Found while reconciling (a profile neither the files nor the database have): same shape, at its line.
  const files = { 'racks/r1.yaml': 'machines:\n  - name: a\n    serial: S1\n    profile: nope\n' }
  const want = await localProblems(files, async (dir) => {
    const local = await openSqliteInventory({ file: ':memory:' })
    try {
      await importInventory(local, loadInventoryFiles(dir, { checkSelector }), { now: 1 })
    } finally {
      await local.close()
    }
  })
  const r = await post(s, { files: [{ path: 'racks/r1.yaml', content: files['racks/r1.yaml'] }] })
  assert.equal(r.statusCode, 400)
  assert.deepEqual(r.json().details, want)
  assert.deepEqual(want, [{ file: 'racks/r1.yaml', line: 4, column: 14, field: 'machines[0].profile', message: "unknown profile 'nope'" }])
  assert.equal(await s.inventory.machines.count(), 0)
})

test('scopes: import needs admin, export read', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const files = [{ path: 'm.yaml', content: 'machines:\n  - name: a\n    serial: S1\n' }]
  for (const scope of ['read', 'provision'] as const) {
    const r = await post(s, { files }, scope)
    assert.equal(r.statusCode, 403, scope)
    assert.equal(r.json().details.required, 'admin')
  }
  assert.equal(await s.inventory.machines.count(), 0)
  assert.equal((await s.app.inject({ url: '/api/v1/inventory/export', headers: s.auth('read') })).statusCode, 200)
  assert.equal((await s.app.inject({ url: '/api/v1/inventory/export' })).statusCode, 401)
})

test('bounds: 2,000 files, 32 MiB of body (413, said plainly), paths inside the import, something to import', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const many = Array.from({ length: 2001 }, (_, i) => ({ path: `m${i}.yaml`, content: `machines:\n  - name: m${i}\n    serial: S${i}\n` }))
  let r = await post(s, { files: many })
  assert.equal(r.statusCode, 400)
  assert.equal(r.json().error, 'RB_ERR_VALIDATION')
  assert.match(r.json().message, /2000/)
  r = await post(s, { files: many.slice(0, 2000) })
  assert.equal(r.statusCode, 200, 'exactly 2000 files is fine')
  assert.equal(r.json().counts.created, 2000)

  const big = 'x'.repeat(33 * 1024 * 1024)
  r = await post(s, { files: [{ path: 'm.yaml', content: `machines: []\n# ${big}\n` }] })
  assert.equal(r.statusCode, 413)
  assert.equal(r.json().error, 'RB_ERR_VALIDATION')
  assert.equal(r.json().message, 'the import is larger than 32 MiB (the request body, JSON): import the files in parts, or split big ones')
  assert.deepEqual(r.json().details, { limitBytes: 32 * 1024 * 1024, maxFiles: 2000 })
  // Under the limit but above the server's usual 4 MiB: accepted.
  r = await post(s, { files: [{ path: 'm.yaml', content: `machines: []\n# ${'x'.repeat(8 * 1024 * 1024)}\n` }] })
  assert.equal(r.statusCode, 200, r.body.slice(0, 300))

  for (const [path, why] of [['../m.yaml', /no empty, \. or \.\. parts/], ['/etc/m.yaml', /must be relative/], ['a//m.yaml', /no empty/], ['a\\m.yaml', /use \//]] as const) {
    r = await post(s, { files: [{ path, content: 'machines: []\n' }] })
    assert.equal(r.statusCode, 400, path)
    assert.match(r.json().message, why)
  }
  r = await post(s, { files: [{ path: 'a.yaml', content: 'machines: []\n' }, { path: 'a.yaml', content: 'classes: []\n' }] })
  assert.equal(r.statusCode, 400)
  assert.match(r.json().message, /a\.yaml: given twice/)
  r = await post(s, { files: [{ path: 'notes.txt', content: 'hello' }] })
  assert.equal(r.statusCode, 400)
  assert.match(r.json().message, /none of the files is an inventory document/)
  assert.equal((await post(s, { files: [] })).statusCode, 400)
  assert.equal((await post(s, { files: [{ path: 'a.yaml', content: '' }], force: true })).statusCode, 400)
})

test('export: the files `inventory export DIR` writes; importing them back changes nothing; prune through the API', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  assert.equal((await post(s, { files: filesOf(EXAMPLE) })).statusCode, 200)
  const r = await s.app.inject({ url: '/api/v1/inventory/export', headers: s.auth('read') })
  assert.equal(r.statusCode, 200)
  const exported = r.json()
  assert.deepEqual(exported.files.map((f: any) => f.path), ['profiles.yaml', 'classes.yaml', 'machines.yaml'])
  assert.equal(exported.machines, await s.inventory.machines.count())
  // Byte for byte what the local export writes.
  const dir = tempDir('rb-api-export-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  await exportInventory(s.inventory, dir)
  for (const f of exported.files) assert.equal(f.content, readFileSync(join(dir, f.path), 'utf8'), f.path)

  const back = (await post(s, { files: exported.files })).json()
  assert.deepEqual(back.changes, [])

  // Drop one machine from the files and prune: that one goes, the rest stay.
  const machines = exported.files.find((f: any) => f.path === 'machines.yaml')
  const fewer = machines.content.replace(/\n {2}- name: r12-u02\n(?: {4}.*\n)+/, '\n')
  assert.notEqual(fewer, machines.content)
  const pruned = (await post(s, { files: [{ path: 'machines.yaml', content: fewer }], prune: true, dryRun: true })).json()
  assert.ok(pruned.lines.includes('machine r12-u02 would be deleted'), pruned.lines.join('\n'))
  assert.ok(await s.inventory.machines.byName('r12-u02'), 'dry run')
  const done = (await post(s, { files: [{ path: 'machines.yaml', content: fewer }], prune: true })).json()
  assert.ok(done.counts.deleted >= 1)
  assert.equal(await s.inventory.machines.byName('r12-u02'), null)
})

test('BMC secrets come from the caller (`secrets`), never from the server\'s environment or files', async (t) => {
  const s = await apiSetup()
  t.after(() => s.close())
  const dir = tempDir('rb-api-secret-')
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const serverFile = join(dir, 'server-only.txt')
  writeFileSync(serverFile, 'SERVER-FILE-SECRET\n')
  process.env.RB_TEST_SERVER_ONLY_SECRET = 'SERVER-ENV-SECRET'
  t.after(() => { delete process.env.RB_TEST_SERVER_ONLY_SECRET })
  const rack = (a: string, b: string) => ({
    path: 'racks/x.yaml',
    content: `machines:\n  - name: x1\n    serial: X1\n    bmc: { type: ipmi, address: 192.0.2.201, username: u, passwordFrom: "${a}" }\n`
      + `  - name: x2\n    serial: X2\n    bmc: { type: ipmi, address: 192.0.2.202, username: u, passwordFrom: "${b}" }\n`,
  })
  const password = async (name: string) => {
    const m = await s.inventory.machines.byName(name)
    return (await s.inventory.bmcs.credentials(m!.id))?.password ?? null
  }

  // References to the server's own file and environment are not read: the BMCs get no password, with warnings.
  const refused = await post(s, { files: [rack(`file:${serverFile}`, 'env:RB_TEST_SERVER_ONLY_SECRET')] })
  assert.equal(refused.statusCode, 200, refused.body)
  assert.doesNotMatch(refused.body, /SERVER-(FILE|ENV)-SECRET/)
  assert.equal(refused.json().warnings.filter((w: string) => /was not sent with the import/.test(w)).length, 2)
  assert.equal(await password('x1'), null)
  assert.equal(await password('x2'), null)

  // The caller's values, keyed by the references, are what the BMCs get.
  const given = await post(s, { files: [rack(`file:${serverFile}`, 'env:RB_TEST_SERVER_ONLY_SECRET')], secrets: { [`file:${serverFile}`]: 'from-caller-1', 'env:RB_TEST_SERVER_ONLY_SECRET': 'from-caller-2' } })
  assert.equal(given.statusCode, 200, given.body)
  assert.equal(await password('x1'), 'from-caller-1')
  assert.equal(await password('x2'), 'from-caller-2')
  // A key that is not a reference is refused by the schema.
  assert.equal((await post(s, { files: [rack('env:A', 'env:B')], secrets: { plain: 'x' } })).statusCode, 400)
})
