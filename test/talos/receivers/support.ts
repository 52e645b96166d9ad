// Helpers the receiver tests share.
import assert from 'node:assert/strict'
import { setTimeout as sleep } from 'node:timers/promises'

/** One kernel log record as Talos marshals it (sender_jsonlines.go: fields, then msg, talos-time, talos-level). */
export const kmsg = (seq: number, msg: string): string =>
  JSON.stringify({ clock: 1_000_000 + seq * 10, facility: 'kern', priority: 'info', seq, msg, 'talos-time': '2026-08-21T10:00:00.123456789Z', 'talos-level': 'info' })

/** Polls `check` every 5 ms until it holds; fails naming `what` after `ms`. */
export async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`)
    await sleep(5)
  }
}
