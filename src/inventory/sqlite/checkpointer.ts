import { createRequire } from 'node:module'
import { Worker } from 'node:worker_threads'
import type SQLite from 'better-sqlite3'

// WAL checkpoints off the event loop. SQLite's automatic checkpoint runs inside whichever commit crosses 1000 WAL
// pages: it copies pages into the database file and fsyncs it, stalling the one thread that also answers DHCP and
// TFTP for tens of milliseconds, long enough in a boot storm for the socket buffers to overflow (the DHCP bench's
// SQLite rounds swung between 1.0x and 1.5x of Kea on exactly that). A worker thread with its own connection runs
// PASSIVE checkpoints, which never block the writer, and the main connection's automatic checkpoint is turned off.
// Should the worker die, the automatic checkpoint comes back, so the WAL cannot grow without bound.

const WORKER = `
const { workerData, parentPort } = require('node:worker_threads')
const Database = require(workerData.module)
const db = new Database(workerData.file)
db.pragma('busy_timeout = 1000')
const checkpoint = () => { try { db.pragma('wal_checkpoint(PASSIVE)') } catch {} }
const timer = setInterval(checkpoint, workerData.intervalMs)
parentPort.on('message', (m) => {
  if (m !== 'stop') return
  clearInterval(timer)
  checkpoint()
  db.close()
  parentPort.close()
})
`

export interface Checkpointer {
  stop(): Promise<void>
}

export function startCheckpointer(main: SQLite.Database, file: string, intervalMs = 1000): Checkpointer {
  const module = createRequire(import.meta.url).resolve('better-sqlite3')
  const worker = new Worker(WORKER, { eval: true, workerData: { module, file, intervalMs } })
  worker.unref()
  main.pragma('wal_autocheckpoint = 0')
  let stopping = false
  const fallBack = (): void => {
    if (!stopping && main.open) main.pragma('wal_autocheckpoint = 1000')
  }
  worker.on('error', fallBack)
  worker.on('exit', fallBack)
  return {
    async stop() {
      stopping = true
      worker.ref() // keep the process up until the worker has finished its last checkpoint
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()))
      worker.postMessage('stop')
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000).unref())])
      await worker.terminate()
      if (main.open) main.pragma('wal_autocheckpoint = 1000')
    },
  }
}
