// Removing the network namespaces of test runs that died before their teardown (support/netns-sweep.ts): the
// decision alone (runs anywhere), then the real sweep on namespaces made here (root and `ip` only).
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { run, skipUnlessNetns, waitFor } from '../support/netns.js'
import {
  NETNS_DIR, OWNER_DIR, UNOWNED_LIMIT_MS, markOwned, ownerAlive, ownerOf, planSweep, sweepStaleNamespaces, type Owner, type SeenNamespace,
} from './support/netns-sweep.js'

const MIN = 60_000
const live: Owner = { pid: 100, start: '5000' }
const dead: Owner = { pid: 200, start: '6000' }
const isAlive = (o: Owner) => o.pid === live.pid && o.start === live.start
const seen = (name: string, o: Partial<SeenNamespace> = {}): SeenNamespace => ({ name, present: true, owner: null, ageMs: MIN, busy: false, ...o })
const plan = (list: SeenNamespace[]) => Object.fromEntries(planSweep(list, isAlive).map((v) => [v.name, v.action]))

test('a namespace whose owner is gone is removed; one whose owner lives is kept, however old or busy', () => {
  assert.deepEqual(plan([
    seen('rb-br-aaaaaa', { owner: dead, busy: true }),
    seen('rb-srv-aaaaaa', { owner: dead, ageMs: 0 }),
    seen('rb-br-bbbbbb', { owner: live, ageMs: 10 * UNOWNED_LIMIT_MS }),
    seen('rb-srv-bbbbbb', { owner: live, ageMs: 10 * UNOWNED_LIMIT_MS, busy: true }),
  ]), { 'rb-br-aaaaaa': 'remove', 'rb-srv-aaaaaa': 'remove', 'rb-br-bbbbbb': 'keep', 'rb-srv-bbbbbb': 'keep' })
})

test('a reused pid is not the owner: the start time must match too', () => {
  assert.deepEqual(plan([seen('rb-br-cccccc', { owner: { pid: live.pid, start: '4999' } })]), { 'rb-br-cccccc': 'remove' })
})

test('a namespace without an owner goes only when older than the limit and empty', () => {
  assert.deepEqual(plan([
    seen('rb-br-dddddd', { ageMs: UNOWNED_LIMIT_MS - 1 }),
    seen('rb-srv-dddddd', { ageMs: UNOWNED_LIMIT_MS + 1 }),
    seen('rb-rly-dddddd', { ageMs: UNOWNED_LIMIT_MS + 1, busy: true }),
  ]), { 'rb-br-dddddd': 'keep', 'rb-srv-dddddd': 'remove', 'rb-rly-dddddd': 'keep' })
})

test("a marker without its namespace is forgotten once its owner is gone (a live owner's may precede its namespace)", () => {
  assert.deepEqual(plan([
    seen('rb-br-eeeeee', { present: false, owner: dead }),
    seen('rb-br-ffffff', { present: false, owner: live }),
    seen('rb-srv-ffffff', { present: false, owner: null }),
  ]), { 'rb-br-eeeeee': 'forget', 'rb-br-ffffff': 'keep', 'rb-srv-ffffff': 'forget' })
})

test('only rb-* namespaces are looked at', () => {
  assert.deepEqual(plan([
    seen('rbgs-c-16799', { ageMs: 10 * UNOWNED_LIMIT_MS }),
    seen('rbprobe0a1b2c3d', { ageMs: 10 * UNOWNED_LIMIT_MS }),
    seen('lab', { owner: dead }),
  ]), {})
})

test('an owner is alive while it runs with the same start time, and not after it exited', async () => {
  const me = ownerOf(process.pid)
  assert.ok(me && me.start, 'this process has a start time')
  assert.equal(ownerAlive(me), true)
  assert.equal(ownerAlive({ pid: process.pid, start: null }), true)
  assert.equal(ownerAlive({ pid: process.pid, start: String(Number(me.start) + 1) }), false)
  const child = spawn('sleep', ['30'])
  const owner = ownerOf(child.pid!)!
  assert.equal(ownerAlive(owner), true)
  child.kill('SIGKILL')
  await new Promise((r) => child.once('exit', r))
  assert.equal(ownerAlive(owner), false)
})

test('the sweep removes a dead run\'s namespace (its processes and its root-namespace veth end too) and keeps a live and a young unowned one', { timeout: 60_000 }, async (t) => {
  if (skipUnlessNetns(t)) return
  const tag = randomBytes(3).toString('hex')
  const names = { dead: `rb-swpd-${tag}`, live: `rb-swpl-${tag}`, unowned: `rb-swpu-${tag}` }
  const rootEnd = `rbswp${tag}`
  const sleepers: ReturnType<typeof spawn>[] = []
  t.after(async () => {
    for (const s of sleepers) s.kill('SIGKILL')
    for (const name of Object.values(names)) {
      await run(['ip', 'netns', 'del', name], { check: false })
      try {
        unlinkSync(join(OWNER_DIR, name))
      } catch {
        // none
      }
    }
    await run(['ip', 'link', 'del', 'dev', rootEnd], { check: false })
  })

  // An owner that has exited: a process started and killed here.
  const gone = spawn('sleep', ['30'])
  const deadOwner = ownerOf(gone.pid!)!
  gone.kill('SIGKILL')
  await new Promise((r) => gone.once('exit', r))

  markOwned(names.dead, deadOwner)
  markOwned(names.live)
  for (const name of Object.values(names)) await run(['ip', 'netns', 'add', name])
  await run(['ip', 'link', 'add', 'name', rootEnd, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', names.dead])
  // What a killed run leaves running inside (QEMU, a daemon); its exit is seen through the `ip netns exec` parent.
  const inside = spawn('ip', ['netns', 'exec', names.dead, 'sleep', '600'], { stdio: 'ignore' })
  sleepers.push(inside)
  const insideExit = new Promise<NodeJS.Signals | null>((r) => inside.once('exit', (_code, signal) => r(signal)))
  await waitFor(async () => (await run(['ip', 'netns', 'pids', names.dead])).stdout.trim() !== '', { what: 'sleep inside the namespace' })

  // Limited to this test's namespaces: others on the machine belong to runs this test knows nothing about.
  const verdicts = await sweepStaleNamespaces({ only: (name) => name.endsWith(`-${tag}`) })
  const mine = Object.fromEntries(verdicts.map((v) => [v.name, v.action]))
  assert.deepEqual(mine, { [names.dead]: 'remove', [names.live]: 'keep', [names.unowned]: 'keep' })

  assert.equal(existsSync(join(NETNS_DIR, names.dead)), false, 'the dead run\'s namespace is gone')
  assert.equal(existsSync(join(OWNER_DIR, names.dead)), false, 'and its marker')
  const ended = await Promise.race([insideExit, new Promise((r) => setTimeout(() => r('still running after 10 s'), 10_000).unref())])
  assert.equal(ended, 'SIGKILL', 'the process inside was ended')
  await waitFor(async () => (await run(['ip', 'link', 'show', 'dev', rootEnd], { check: false })).code !== 0, { what: `${rootEnd} to go with its peer`, timeoutMs: 10_000 })

  assert.equal(existsSync(join(NETNS_DIR, names.live)), true, 'a live owner\'s namespace stays')
  assert.equal(existsSync(join(OWNER_DIR, names.live)), true, 'with its marker')
  assert.equal(existsSync(join(NETNS_DIR, names.unowned)), true, 'a young unowned namespace stays')
})

test('a lab killed before its teardown leaves namespaces that the next sweep removes', { timeout: 60_000 }, async (t) => {
  if (skipUnlessNetns(t)) return
  // A test file's process with a lab (namespaces only, no guest), SIGKILLed as at a time limit: no teardown runs.
  const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', `
    const { createVmLab } = await import('./test/e2e/support/lab.ts')
    const lab = await createVmLab(undefined, {})
    console.log(JSON.stringify([lab.bridgeNs.name, lab.serverNs.name]))
    setInterval(() => {}, 1000)
  `], { cwd: join(import.meta.dirname, '..', '..'), stdio: ['ignore', 'pipe', 'inherit'] })
  let out = ''
  child.stdout!.on('data', (d) => (out += d))
  const exited = new Promise((r) => child.once('exit', r))
  t.after(() => {
    child.kill('SIGKILL')
  })
  const names = await waitFor(() => (out.includes('\n') ? (JSON.parse(out) as string[]) : undefined), { what: 'the lab in the child', timeoutMs: 30_000 })
  t.after(async () => {
    for (const name of names) await run(['ip', 'netns', 'del', name], { check: false })
  })
  const only = (name: string) => names.includes(name)
  assert.deepEqual((await sweepStaleNamespaces({ only })).map((v) => v.action), ['keep', 'keep'], 'kept while the lab\'s process lives')
  child.kill('SIGKILL')
  await exited
  for (const name of names) assert.equal(existsSync(join(NETNS_DIR, name)), true, `${name} left behind`)
  assert.deepEqual((await sweepStaleNamespaces({ only })).map((v) => v.action), ['remove', 'remove'])
  for (const name of names) {
    assert.equal(existsSync(join(NETNS_DIR, name)), false, `${name} removed`)
    assert.equal(existsSync(join(OWNER_DIR, name)), false, `${name}'s marker removed`)
  }
})
