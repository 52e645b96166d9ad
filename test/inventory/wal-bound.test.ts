// The WAL stays bounded under continuous writes, and bounding it never blocks the event loop.
//
// Before: the server's connection had SQLite's automatic checkpoint off and a worker ran PASSIVE checkpoints; under
// writes that never stop, a PASSIVE checkpoint never catches up with the end of the log, so the log never restarted
// and the -wal file grew ~10 MB/s. RACKBOOT_WAL_TEST_SECONDS shortens the run for development (CI: the full 60 s).
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { sql } from 'kysely'
import { openSqliteInventory } from '../../src/inventory/index.js'
import type { Lease } from '../../src/inventory/types.js'
import { describeStalls, watchEventLoop } from './loop-stall.js'

const SECONDS = Number(process.env.RACKBOOT_WAL_TEST_SECONDS ?? 60)
const WAL_BOUND = 64 * 1024 * 1024
const MAX_LOOP_DELAY_MS = 200

const mac = (n: number, prefix = '02') => `${prefix}:${[3, 2, 1, 0].map((k) => ((n >>> (8 * k)) & 255).toString(16).padStart(2, '0')).join(':')}:00`.slice(0, 17)
const walSize = (file: string) => {
  try {
    return statSync(`${file}-wal`).size
  } catch {
    return 0
  }
}

test(`${SECONDS} s of continuous machine, event and lease writes: the WAL stays under 64 MiB and the event loop is never held ${MAX_LOOP_DELAY_MS} ms`, { timeout: (SECONDS + 60) * 1000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rb-wal-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  const file = join(dir, 'rackboot.db')
  // RACKBOOT_WAL_TEST_PASSIVE_ONLY=1: the checkpointer as it was (PASSIVE only), to see this test fail.
  const passiveOnly = process.env.RACKBOOT_WAL_TEST_PASSIVE_ONLY === '1'
  // syncBusyMs 0: were the server's connection ever to meet a lock the checkpointer holds, it would show as a retry.
  const inv = await openSqliteInventory({ file, backgroundCheckpoints: true, syncBusyMs: 0, ...(passiveOnly ? { checkpoints: { escalate: false } } : {}) })
  let closed = false
  t.after(() => (closed ? undefined : inv.close()))
  const putMany = (inv.leases as unknown as { putMany(l: Lease[]): Promise<void> }).putMany

  let maxWal = 0
  const sampler = setInterval(() => (maxWal = Math.max(maxWal, walSize(file))), 25)
  const stopWatch = watchEventLoop()

  // What /boot.ipxe and DHCP do: a new machine, its boot event, and every fourth time a batch of 16 lease writes, at
  // RATE a second (≈ 15 MB/s of WAL, above the 9.8 MB/s of the report), or as fast as the machine goes if slower. Paced
  // rather than flat out so that the event loop delay measures blocking, not a loop that never leaves the CPU.
  const RATE = 120
  const started = Date.now()
  const end = started + SECONDS * 1000
  let machines = 0
  let leases = 0
  let due = performance.now()
  while (Date.now() < end) {
    const ahead = due - performance.now()
    if (ahead > 1) {
      await new Promise<void>((r) => setTimeout(r, ahead))
      continue
    }
    due = Math.max(due + 1000 / RATE, performance.now() - 100)
    const m = await inv.machines.create({ serial: `SN${machines}`, nics: [{ mac: mac(machines), name: 'eth0', boot: true }], labels: { rack: `r${machines % 40}` } }, Date.now())
    await inv.events.append({ machineId: m.id, type: 'boot.script', at: Date.now(), message: 'served /boot.ipxe', data: { ip: `10.1.${(machines >> 8) & 255}.${machines & 255}`, firmware: 'uefi' } })
    machines++
    if (machines % 4 === 0) {
      const now = Date.now()
      await putMany(Array.from({ length: 16 }, (_, i) => {
        const k = (leases + i) % 60_000
        return { ip: `10.2.${k >> 8}.${k & 255}`, mac: mac(k, '0a'), clientId: null, subnet: '10.2.0.0/16', state: 'bound' as const, hostname: null, expiresAt: now + 3_600_000, updatedAt: now }
      }))
      leases += 16
    }
    await new Promise<void>((r) => setImmediate(r)) // a server's writes arrive from I/O callbacks
  }
  clearInterval(sampler)
  const loop = stopWatch()
  maxWal = Math.max(maxWal, walSize(file))
  const stats = inv.checkpointStats()
  assert.ok(stats, 'background checkpoints are on')
  t.diagnostic(`${machines} machines, ${machines} events, ${leases} lease writes in ${((Date.now() - started) / 1000).toFixed(0)} s; max WAL ${(Math.max(maxWal, stats.maxWalBytes) / 1048576).toFixed(1)} MiB; `
    + `checkpoints: ${stats.passive} passive, ${stats.truncate} truncate (${stats.truncateBusy} busy), longest pause of queries ${stats.maxPauseMs.toFixed(0)} ms; `
    + describeStalls(loop))

  const busy = inv.busyStats()
  t.diagnostic(`the server's connection met a lock ${busy.retries} times`)
  assert.ok(machines > 40 * SECONDS, `the loop wrote at a high rate (${machines} machines)`)
  if (!passiveOnly) assert.ok(stats.truncate >= 1, 'the log was restarted')
  assert.equal(busy.retries, 0, 'the checkpointer never made the server wait for a lock')
  assert.ok(Math.max(maxWal, stats.maxWalBytes) < WAL_BOUND, `the WAL stayed under 64 MiB (max ${(Math.max(maxWal, stats.maxWalBytes) / 1048576).toFixed(1)} MiB)`)
  assert.ok(loop.maxHeldMs < MAX_LOOP_DELAY_MS, `the event loop was never held ${MAX_LOOP_DELAY_MS} ms (${describeStalls(loop)})`)

  // Nothing written was lost, and the database is sound.
  assert.equal(await inv.machines.count(), machines)
  const events = (await sql<{ n: number }>`select count(*) as n from events`.execute(inv.db)).rows[0]!.n
  assert.equal(events, machines)
  closed = true
  await inv.close()
  const again = await openSqliteInventory({ file })
  t.after(() => again.close())
  assert.deepEqual((await sql<{ integrity_check: string }>`pragma integrity_check`.execute(again.db)).rows, [{ integrity_check: 'ok' }])
  assert.equal(await again.machines.count(), machines)
})
