import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import type SQLite from 'better-sqlite3'

// WAL checkpoints off the event loop, and a WAL that stays bounded however fast the server writes.
//
// SQLite's automatic checkpoint runs inside whichever commit crosses 1000 WAL pages: it copies pages into the
// database file and fsyncs it, stalling the one thread that also answers DHCP and TFTP for tens of milliseconds, long
// enough in a boot storm for the socket buffers to overflow (the DHCP bench's SQLite rounds swung between 1.0x and
// 1.5x of Kea on exactly that). So the main connection's automatic checkpoint is off and a worker thread with its own
// connection checkpoints.
//
// PASSIVE checkpoints alone let the WAL grow without bound (~10 MB/s under continuous writes, 35 GB an hour of DHCP).
// A checkpoint only copies frames; the file is reused from its start ("the log restarts") only when a writer begins
// a transaction at a moment when *every* frame in it has been copied and no reader still uses it (sqlite.org/wal.html,
// "Checkpoint starvation"; wal.c walRestartLog: the writer checks, when its transaction starts, that the backfill
// has reached the end of the log). SQLite's own automatic checkpoint runs inside the committing connection, so no
// write can land while it runs: it always finishes the log, and the next write restarts it. A PASSIVE checkpoint in
// another connection runs while the server keeps appending: it copies every frame that was there when it started
// (measured: log == checkpointed, every second), but by then newer frames are behind it, every time, so no write ever
// starts on a fully copied log and the log never restarts; the file only grows. And when the writes stop and the log
// does restart, a WAL file is reused, never shrunk, without journal_size_limit: it kept its high-water size.
//
// So: PASSIVE every `intervalMs`, which never blocks the writer and keeps the database file nearly current; and once
// the WAL file passes `walLimitBytes` (checked every `tickMs`), the worker asks the main thread to pause its
// connection (driver.exclusive: queries queue asynchronously, the event loop keeps running), runs TRUNCATE, which
// copies the few frames written since the last PASSIVE, waits (in the worker, up to `escalationBusyMs`) for readers
// of other processes, resets the log and truncates the file to zero, then lets the main thread go on. The pause is the
// cost of one small checkpoint (tens of milliseconds; up to ~150 ms on a loaded 2-CPU machine), paid by the queries
// queued meanwhile, never by the event loop. With the default 16 MiB the file peaked at ~19 MiB under 15 MB/s.
// `journal_size_limit` on the main connection also trims the file when the log restarts on its own (light load).
// A reader in another process that holds one snapshot for a long time still stops any restart (SQLite cannot reuse
// frames a reader may need): the worker reports it and the main thread warns.
//
// Should the worker die, the automatic checkpoint comes back, so the WAL cannot grow without bound.

// The pause handshake, in a SharedArrayBuffer so that it works even while the main thread never turns its event loop
// (a long chain of awaited writes): the worker asks (REQUESTED, and a message for an idle main thread); the main
// thread grants it the next time a query asks for the connection, or on the message, whichever comes first
// (QUEUED: driver.exclusive is waiting for the connection; GRANTED: it holds it); the worker checkpoints and sets
// IDLE, which ends the pause.
const IDLE = 0
const REQUESTED = 1
const QUEUED = 2
const GRANTED = 3

const WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const { statSync } = require('node:fs')
const Database = require(workerData.module)
const { file, intervalMs, tickMs, walLimitBytes, escalationBusyMs, passiveBusyMs, synchronous, escalate, state } = workerData
const [IDLE, REQUESTED, GRANTED] = [${IDLE}, ${REQUESTED}, ${GRANTED}]
const db = new Database(file)
db.pragma('busy_timeout = ' + passiveBusyMs)
db.pragma('synchronous = ' + synchronous)
const walBytes = () => { try { return statSync(file + '-wal').size } catch { return 0 } }
const checkpoint = (mode) => {
  const started = performance.now()
  const before = walBytes()
  let result
  try {
    const r = db.pragma('wal_checkpoint(' + mode + ')')[0]
    result = { busy: r.busy, log: r.log, checkpointed: r.checkpointed }
  } catch (err) {
    result = { busy: 1, log: -1, checkpointed: -1, error: String(err && err.message || err) }
  }
  parentPort.postMessage({ type: 'checkpoint', mode, walBytesBefore: before, walBytesAfter: walBytes(), ms: performance.now() - started, ...result })
  return result
}
const endPause = () => { Atomics.store(state, 0, IDLE); Atomics.notify(state, 0) }
let lastPassive = 0
let nextEscalation = 0
let running = false
let stopping = false
let finish = null
async function granted() {
  Atomics.store(state, 0, REQUESTED)
  parentPort.postMessage({ type: 'pause' })
  for (;;) {
    const now = Atomics.load(state, 0)
    if (now === GRANTED) return true
    if (stopping) return false
    await Atomics.waitAsync(state, 0, now, 100).value
  }
}
async function tick() {
  if (running || stopping) return
  running = true
  try {
    const now = Date.now()
    if (escalate && walBytes() >= walLimitBytes && now >= nextEscalation) {
      checkpoint('PASSIVE') // the bulk, while the server keeps writing
      lastPassive = Date.now()
      if (!(await granted())) return endPause()
      let r
      db.pragma('busy_timeout = ' + escalationBusyMs)
      try { r = checkpoint('TRUNCATE') } finally {
        db.pragma('busy_timeout = ' + passiveBusyMs)
        endPause()
      }
      // Busy: another process holds the write lock or an old snapshot. Do not pause the server again at once.
      nextEscalation = r.busy ? Date.now() + Math.max(intervalMs, 1000) : 0
    } else if (now - lastPassive >= intervalMs) {
      checkpoint('PASSIVE')
      lastPassive = Date.now()
    }
  } finally {
    running = false
    if (finish) finish()
  }
}
const timer = setInterval(tick, tickMs)
parentPort.on('message', (m) => {
  if (m !== 'stop') return
  stopping = true
  clearInterval(timer)
  finish = () => {
    finish = null
    checkpoint('PASSIVE')
    endPause()
    db.close()
    parentPort.close()
  }
  if (!running) finish()
})
`

// ES2024 (Node 16+), not in the TypeScript lib this project targets.
const waitAsync = (Atomics as unknown as {
  waitAsync(array: Int32Array, index: number, value: number, timeoutMs?: number): { async: boolean; value: Promise<string> | string }
}).waitAsync

export interface CheckpointResult {
  mode: 'PASSIVE' | 'TRUNCATE'
  /** SQLite's answer: 1 when the checkpoint could not finish (a writer or reader in the way). */
  busy: number
  /** Frames in the WAL and frames copied into the database, as wal_checkpoint() reports them (-1 on error). */
  log: number
  checkpointed: number
  walBytesBefore: number
  walBytesAfter: number
  ms: number
  error?: string
}

export interface CheckpointStats {
  passive: number
  truncate: number
  /** TRUNCATE checkpoints that could not restart the log (another process's lock or snapshot). */
  truncateBusy: number
  /** The longest the main connection was paused for a TRUNCATE, ms. */
  maxPauseMs: number
  /** Largest WAL file size seen before a checkpoint, bytes. */
  maxWalBytes: number
  last: CheckpointResult | null
}

export interface Checkpointer {
  stats(): CheckpointStats
  /** Called whenever a query asks for the main connection: grants a pause the worker asked for. Cheap. */
  poll(): void
  stop(): Promise<void>
}

export interface CheckpointerOptions {
  /** Pauses the main connection for `fn` (no query of this process runs meanwhile): driver.exclusive. */
  pause: <T>(fn: () => Promise<T>) => Promise<T>
  /** PASSIVE checkpoint period (ms). */
  intervalMs?: number
  /** How often the WAL size is looked at (ms). */
  tickMs?: number
  /** WAL size that makes the worker restart the log with a TRUNCATE checkpoint (bytes). */
  walLimitBytes: number
  /** How long the TRUNCATE may wait for other processes' locks, holding the server paused (ms). */
  escalationBusyMs?: number
  /** PRAGMA synchronous of the worker's connection. */
  synchronous?: 'normal' | 'full'
  /** Longest the main thread stays paused if the worker never says it is done (ms). */
  maxPauseMs?: number
  /** Tests only: PASSIVE only, never TRUNCATE (the behaviour before the WAL was bounded). */
  escalate?: boolean
  warn?: (message: string) => void
  /** Every checkpoint's result (metrics, tests). */
  onCheckpoint?: (result: CheckpointResult) => void
}

export function startCheckpointer(main: SQLite.Database, file: string, options: CheckpointerOptions): Checkpointer {
  const module = createRequire(import.meta.url).resolve('better-sqlite3')
  const intervalMs = options.intervalMs ?? 1000
  const workerData = {
    module,
    file,
    intervalMs,
    tickMs: options.tickMs ?? 100,
    walLimitBytes: options.walLimitBytes,
    escalationBusyMs: options.escalationBusyMs ?? 250,
    passiveBusyMs: 1000,
    synchronous: options.synchronous ?? 'normal',
    escalate: options.escalate ?? true,
  }
  const maxPauseMs = options.maxPauseMs ?? 5000
  const state = new Int32Array(new SharedArrayBuffer(4))
  const worker = new Worker(WORKER, { eval: true, workerData: { ...workerData, state } })
  worker.unref()
  main.pragma('wal_autocheckpoint = 0')

  const stats: CheckpointStats = { passive: 0, truncate: 0, truncateBusy: 0, maxPauseMs: 0, maxWalBytes: 0, last: null }
  let stopping = false
  let exited = false
  let lastWarning = 0

  const onCheckpoint = (r: CheckpointResult): void => {
    stats.last = r
    stats.maxWalBytes = Math.max(stats.maxWalBytes, r.walBytesBefore)
    if (r.mode === 'PASSIVE') stats.passive++
    else {
      stats.truncate++
      if (r.busy) {
        stats.truncateBusy++
        const now = Date.now()
        if (r.walBytesAfter > 4 * options.walLimitBytes && now - lastWarning > 60_000) {
          lastWarning = now
          options.warn?.(`the write-ahead log ${file}-wal is ${(r.walBytesAfter / 1048576).toFixed(0)} MiB and cannot be restarted: `
            + 'another process holds the write lock or keeps a read transaction open (a long export, a backup, an sqlite3 shell)')
        }
      }
    }
    options.onCheckpoint?.(r)
  }

  /** Holds the main connection (queued queries wait) until the worker is done, or maxPauseMs. */
  const pauseWhileCheckpointing = async (): Promise<void> => {
    if (stopping || exited) return void Atomics.store(state, 0, IDLE)
    const started = performance.now()
    Atomics.store(state, 0, GRANTED)
    Atomics.notify(state, 0)
    while (Atomics.load(state, 0) === GRANTED && !exited && performance.now() - started < maxPauseMs) {
      await waitAsync(state, 0, GRANTED, Math.min(100, maxPauseMs)).value
    }
    stats.maxPauseMs = Math.max(stats.maxPauseMs, performance.now() - started)
    Atomics.store(state, 0, IDLE)
  }
  const poll = (): void => {
    if (Atomics.compareExchange(state, 0, REQUESTED, QUEUED) === REQUESTED) void options.pause(pauseWhileCheckpointing).catch(() => {})
  }

  worker.on('message', (m: { type: string } & Partial<CheckpointResult>) => {
    if (m.type === 'checkpoint') onCheckpoint(m as CheckpointResult)
    else if (m.type === 'pause') poll()
  })
  const fallBack = (): void => {
    exited = true
    if (!stopping && main.open) main.pragma('wal_autocheckpoint = 1000')
  }
  worker.on('error', fallBack)
  worker.on('exit', fallBack)
  return {
    stats: () => ({ ...stats }),
    poll,
    async stop() {
      stopping = true
      if (!exited) {
        worker.ref() // keep the process up until the worker has finished its last checkpoint
        const gone = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
        worker.postMessage('stop')
        await Promise.race([gone, new Promise((r) => setTimeout(r, 5000).unref())])
        await worker.terminate()
      }
      if (main.open) main.pragma('wal_autocheckpoint = 1000')
    },
  }
}
