import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Transfer, toNetascii, netasciiContent, type TransferClock, type TransferResult, type TransferConfig } from '../../src/tftp/transfer.js'
import { bufferContent, type TftpContent } from '../../src/tftp/source.js'
import { Opcode, decode, encodeOack } from '../../src/tftp/packet.js'

function fakeClock() {
  let now = 0
  let nextId = 0
  const timers = new Map<number, { at: number; fn: () => void }>()
  const clock: TransferClock & { advance(ms: number): void; pending(): number } = {
    now: () => now,
    setTimer(fn, ms) {
      timers.set(++nextId, { at: now + ms, fn })
      return nextId
    },
    clearTimer(h) {
      timers.delete(h as number)
    },
    advance(ms) {
      const target = now + ms
      for (;;) {
        let best: [number, { at: number; fn: () => void }] | null = null
        for (const e of timers) if (e[1].at <= target && (best === null || e[1].at < best[1].at)) best = e
        if (best === null) break
        timers.delete(best[0])
        now = best[1].at
        best[1].fn()
      }
      now = target
    },
    pending: () => timers.size,
  }
  return clock
}

const flush = () => new Promise<void>((r) => setImmediate(r))

type Sent = { op: number; block?: number; len?: number; code?: number; message?: string; options?: Map<string, string> }

function harness(content: TftpContent, over: Partial<TransferConfig> = {}) {
  const clock = fakeClock()
  const sent: Sent[] = []
  const payload: Buffer[] = []
  let result: TransferResult | null = null
  const t = new Transfer({
    content,
    blksize: 8,
    windowsize: 1,
    timeoutMs: 1000,
    backoff: true,
    maxRetries: 3,
    oack: null,
    clock,
    chunkBytes: 64,
    send(p) {
      const d = decode(p)
      assert.ok(d.ok)
      const pk = d.packet
      if (pk.op === Opcode.DATA) {
        sent.push({ op: pk.op, block: pk.block, len: pk.data.length })
        payload.push(Buffer.from(pk.data))
      } else if (pk.op === Opcode.ERROR) sent.push({ op: pk.op, code: pk.code, message: pk.message })
      else if (pk.op === Opcode.OACK) sent.push({ op: pk.op, options: pk.options })
      else sent.push({ op: pk.op })
    },
    onFinish(r) {
      assert.equal(result, null, 'onFinish runs once')
      result = r
    },
    ...over,
  })
  return {
    t,
    clock,
    sent,
    payload,
    result: () => result,
    take() {
      return sent.splice(0)
    },
  }
}

const blocks = (s: Sent[]) => s.map((x) => (x.op === Opcode.DATA ? x.block : `op${x.op}`))

test('lock-step: sends each block on its ACK; a size that is a multiple of blksize ends with an empty block', async () => {
  const data = Buffer.from('0123456789abcdef') // exactly 2 blocks of 8
  const h = harness(bufferContent(data))
  h.t.start()
  await flush()
  assert.deepEqual(blocks(h.take()), [1])
  h.t.handleAck(1)
  assert.deepEqual(blocks(h.take()), [2])
  h.t.handleAck(2)
  const last = h.take()
  assert.deepEqual(blocks(last), [3])
  assert.equal(last[0]!.len, 0)
  assert.equal(h.result(), null)
  h.t.handleAck(3)
  const r = h.result()!
  assert.equal(r.ok, true)
  assert.equal(r.bytes, 16)
  assert.equal(Buffer.concat(h.payload).toString(), data.toString())
  assert.equal(h.clock.pending(), 0, 'no timer left behind')
})

test('an empty file is one empty DATA block', async () => {
  const h = harness(bufferContent(Buffer.alloc(0)))
  h.t.start()
  await flush()
  const s = h.take()
  assert.deepEqual(blocks(s), [1])
  assert.equal(s[0]!.len, 0)
  h.t.handleAck(1)
  assert.equal(h.result()?.ok, true)
  assert.equal(h.result()?.bytes, 0)
})

test('with options, the OACK comes first and DATA 1 only after ACK 0', async () => {
  const h = harness(bufferContent('hello'), { oack: encodeOack(new Map([['tsize', '5']])) })
  h.t.start()
  const s = h.take()
  assert.equal(s.length, 1)
  assert.equal(s[0]!.op, Opcode.OACK)
  h.t.handleAck(1) // nonsense before ACK 0: ignored
  assert.equal(h.take().length, 0)
  await flush()
  h.t.handleAck(0)
  await flush()
  assert.deepEqual(blocks(h.take()), [1])
  h.t.handleAck(1)
  assert.equal(h.result()?.ok, true)
})

test('duplicate ACKs never trigger a resend (no sorcerer\'s apprentice)', async () => {
  const h = harness(bufferContent(Buffer.alloc(40, 1)))
  h.t.start()
  await flush()
  h.take()
  h.t.handleAck(1)
  assert.deepEqual(blocks(h.take()), [2])
  h.t.handleAck(1)
  h.t.handleAck(1)
  h.t.handleAck(0)
  assert.deepEqual(h.take(), [], 'duplicate and stale ACKs send nothing')
  h.t.handleAck(2)
  assert.deepEqual(blocks(h.take()), [3])
})

test('timeouts retransmit with backoff, then give up with an ERROR after maxRetries', async () => {
  const h = harness(bufferContent(Buffer.alloc(40, 1)), { maxRetries: 3 })
  h.t.start()
  await flush()
  assert.deepEqual(blocks(h.take()), [1])
  h.clock.advance(999)
  assert.deepEqual(h.take(), [])
  h.clock.advance(1)
  assert.deepEqual(blocks(h.take()), [1], 'first retransmission after 1 s')
  h.clock.advance(1999)
  assert.deepEqual(h.take(), [])
  h.clock.advance(1)
  assert.deepEqual(blocks(h.take()), [1], 'second after 2 s more')
  h.t.handleAck(1) // progress resets the backoff and the retry count
  assert.deepEqual(blocks(h.take()), [2])
  h.clock.advance(1000)
  assert.deepEqual(blocks(h.take()), [2])
  h.clock.advance(2000)
  h.clock.advance(4000)
  assert.deepEqual(blocks(h.take()), [2, 2])
  h.clock.advance(8000)
  const s = h.take()
  assert.equal(s.length, 1)
  assert.equal(s[0]!.op, Opcode.ERROR)
  const r = h.result()!
  assert.equal(r.ok, false)
  assert.equal(r.outcome, 'timeout')
  assert.equal(r.aborted, false)
  assert.equal(r.retransmissions, 5)
  assert.equal(r.bytes, 8)
})

test('a client-chosen timeout is used as is, without backoff', async () => {
  const h = harness(bufferContent(Buffer.alloc(40, 1)), { timeoutMs: 3000, backoff: false })
  h.t.start()
  await flush()
  h.take()
  h.clock.advance(3000)
  assert.deepEqual(blocks(h.take()), [1])
  h.clock.advance(3000)
  assert.deepEqual(blocks(h.take()), [1])
})

test('a client that never ACKs is dropped after unackedRetries, at a fixed interval and without an ERROR', async () => {
  const h = harness(bufferContent(Buffer.alloc(40, 1)), { maxRetries: 5, unackedRetries: 1, unackedTimeoutMs: 1000 })
  h.t.start()
  await flush()
  assert.deepEqual(blocks(h.take()), [1])
  assert.equal(h.t.awaitingFirstAck, true)
  h.clock.advance(1000)
  assert.deepEqual(blocks(h.take()), [1], 'one retransmission after 1 s')
  h.clock.advance(999)
  assert.equal(h.result(), null, 'no backoff: the second interval is 1 s too, not 2')
  h.clock.advance(1)
  assert.deepEqual(h.take(), [], 'nothing sent to a peer that never answered')
  const r = h.result()!
  assert.equal(r.ok, false)
  assert.equal(r.aborted, false)
  assert.equal(r.outcome, 'no-ack')
  assert.equal(r.retransmissions, 1)
  assert.equal(h.clock.pending(), 0)
})

test('before the first ACK a client-chosen timeout is capped; after it, it is used as is', async () => {
  const oack = encodeOack(new Map([['timeout', '255']]))
  const h = harness(bufferContent(Buffer.alloc(40, 1)), { oack, timeoutMs: 255_000, backoff: false, unackedRetries: 1, unackedTimeoutMs: 1000 })
  h.t.start()
  assert.deepEqual(blocks(h.take()), ['op6'])
  h.clock.advance(1000)
  assert.deepEqual(blocks(h.take()), ['op6'], 'the OACK again after 1 s, not 255 s')
  h.t.handleAck(0)
  await flush()
  assert.deepEqual(blocks(h.take()), [1])
  assert.equal(h.t.awaitingFirstAck, false, 'the ACK of the OACK counts')
  h.clock.advance(254_999)
  assert.deepEqual(h.take(), [])
  h.clock.advance(1)
  assert.deepEqual(blocks(h.take()), [1], 'acknowledged once: the client\'s own timeout from now on')
  assert.equal(h.result(), null)
})

test('once the client has ACKed, maxRetries with backoff apply even if it then falls silent', async () => {
  const oack = encodeOack(new Map([['blksize', '8']]))
  const h = harness(bufferContent(Buffer.alloc(40, 1)), { oack, maxRetries: 3, unackedRetries: 0, unackedTimeoutMs: 1000 })
  h.t.start()
  h.take()
  h.t.handleAck(0)
  await flush()
  assert.deepEqual(blocks(h.take()), [1])
  h.clock.advance(1000 + 2000 + 4000)
  assert.deepEqual(blocks(h.take()), [1, 1, 1])
  h.clock.advance(8000)
  const s = h.take()
  assert.equal(s[0]?.op, Opcode.ERROR)
  assert.equal(h.result()!.outcome, 'timeout')
})

test('unackedRetries 0: dropped after the first timeout, without any retransmission', async () => {
  const h = harness(bufferContent(Buffer.alloc(40, 1)), { unackedRetries: 0, unackedTimeoutMs: 300 })
  h.t.start()
  await flush()
  h.take()
  h.clock.advance(300)
  assert.deepEqual(h.take(), [])
  assert.equal(h.result()!.outcome, 'no-ack')
  assert.equal(h.result()!.retransmissions, 0)
})

test('windows: full window per ACK; a partial ACK resends from the block after it; stale ACKs ignored', async () => {
  const h = harness(bufferContent(Buffer.alloc(8 * 20, 7)), { windowsize: 4 }) // 20 full blocks + empty block 21
  h.t.start()
  await flush()
  assert.deepEqual(blocks(h.take()), [1, 2, 3, 4])
  h.t.handleAck(4)
  await flush()
  assert.deepEqual(blocks(h.take()), [5, 6, 7, 8])
  h.t.handleAck(6) // 7 was lost
  assert.deepEqual(blocks(h.take()), [7, 8, 9, 10])
  h.t.handleAck(6) // the client saw 8 from the old window before the new 7: a duplicate
  h.t.handleAck(3) // stale
  assert.deepEqual(h.take(), [])
  h.t.handleAck(10)
  await flush()
  assert.deepEqual(blocks(h.take()), [11, 12, 13, 14])
  h.clock.advance(1000) // the whole window lost
  assert.deepEqual(blocks(h.take()), [11, 12, 13, 14])
  h.t.handleAck(14)
  await flush()
  assert.deepEqual(blocks(h.take()), [15, 16, 17, 18])
  h.t.handleAck(18)
  await flush()
  assert.deepEqual(blocks(h.take()), [19, 20, 21], 'the last window is short')
  h.t.handleAck(21)
  const r = h.result()!
  assert.equal(r.ok, true)
  assert.equal(r.bytes, 160)
  assert.equal(r.retransmissions, 2 + 4)
})

test('an ACK past what was sent is ignored', async () => {
  const h = harness(bufferContent(Buffer.alloc(80, 7)), { windowsize: 2 })
  h.t.start()
  await flush()
  h.take()
  h.t.handleAck(5)
  assert.deepEqual(h.take(), [])
  assert.equal(h.result(), null)
})

test('block numbers roll over past 65535 to 0 and the transfer completes', { timeout: 120_000 }, async () => {
  const total = 70000
  const data = Buffer.alloc(total * 8)
  for (let i = 0; i < total; i++) data.writeUInt32BE(i, i * 8)
  const h = harness(bufferContent(data), { windowsize: 8, chunkBytes: 8 * 1024 })
  h.t.start()
  let wire: number[] = []
  let acks = 0
  for (let guard = 0; guard < 100000 && h.result() === null; guard++) {
    await flush()
    const s = h.take()
    if (s.length === 0) continue
    wire = s.map((x) => x.block!)
    h.t.handleAck(wire[wire.length - 1]!)
    acks++
  }
  const r = h.result()!
  assert.equal(r.ok, true)
  assert.equal(r.bytes, total * 8)
  assert.equal(r.retransmissions, 0)
  const got = Buffer.concat(h.payload)
  assert.ok(got.equals(data), 'content intact across the rollover')
  assert.ok(acks > 8000)
  assert.equal(wire[wire.length - 1], (total + 1) & 0xffff)
})

test('a client ERROR ends the transfer as aborted', async () => {
  const h = harness(bufferContent('abc'), { oack: encodeOack(new Map([['tsize', '3']])) })
  h.t.start()
  h.t.handleError(8, 'User aborted the transfer')
  const r = h.result()!
  assert.equal(r.ok, false)
  assert.equal(r.aborted, true)
  assert.equal(r.outcome, 'client-error')
  assert.match(r.error!, /User aborted/)
  assert.equal(h.clock.pending(), 0)
})

test('content of unknown size ends at the first short read', async () => {
  const data = Buffer.alloc(8 * 9 + 3, 5) // 9 full blocks and 3 bytes; chunks of 8 blocks
  const src = bufferContent(data)
  const h = harness({ size: null, read: src.read, close: src.close })
  h.t.start()
  for (let i = 0; i < 50 && h.result() === null; i++) {
    await flush()
    for (const s of h.take()) if (s.op === Opcode.DATA) h.t.handleAck(s.block!)
  }
  assert.equal(h.result()?.ok, true)
  assert.equal(h.result()?.bytes, data.length)
  assert.ok(Buffer.concat(h.payload).equals(data))
})

test('content of unknown size ends at the first short read, whatever read-ahead finds past it', { timeout: 60_000 }, async () => {
  const data = Buffer.alloc(8 * 9 + 3, 5) // 9 full blocks and 3 bytes; chunks of 8 blocks
  const src = bufferContent(data)
  // Reads finish in reverse order of issue, so a read past the end can complete before the one that finds it.
  let delay = 5
  const read = (o: number, l: number) => new Promise<Buffer>((r) => setTimeout(() => r(src.read(o, l)), (delay = Math.max(0, delay - 1))))
  const h = harness({ size: null, read, close: src.close })
  h.t.start()
  for (let i = 0; i < 200 && h.result() === null; i++) {
    await new Promise((r) => setTimeout(r, 2))
    for (const s of h.take()) if (s.op === Opcode.DATA) h.t.handleAck(s.block!)
  }
  assert.equal(h.result()?.ok, true)
  assert.equal(h.result()?.bytes, data.length)
  assert.ok(Buffer.concat(h.payload).equals(data))
})

test('a read error ends the transfer with an ERROR to the client', async () => {
  const h = harness({ size: 100, read: async () => { throw new Error('EIO') }, close: async () => {} })
  h.t.start()
  await flush()
  await flush()
  const s = h.take()
  assert.equal(s.length, 1)
  assert.equal(s[0]!.op, Opcode.ERROR)
  assert.equal(h.result()?.outcome, 'read-error')
})

test('content that shrinks under the transfer is a read error, not a short file', async () => {
  const h = harness({ size: 100, read: async (o, l) => Buffer.alloc(Math.min(l, 50 - o)), close: async () => {} }, { chunkBytes: 200 })
  h.t.start()
  await flush()
  await flush()
  assert.equal(h.result()?.outcome, 'read-error')
})

test('netascii: LF becomes CR LF, CR becomes CR NUL', async () => {
  assert.deepEqual(toNetascii(Buffer.from('a\nb\rc\r\n')), Buffer.from('a\r\nb\r\0c\r\0\r\n', 'latin1'))
  const plain = Buffer.from('no line ends')
  assert.equal(toNetascii(plain), plain)
  const c = await netasciiContent(bufferContent('x\ny\n'))
  assert.ok(!('tooLarge' in c))
  if ('tooLarge' in c) return
  assert.equal(c.size, 6)
  assert.equal((await c.read(0, 100)).toString('latin1'), 'x\r\ny\r\n')
  assert.deepEqual(await netasciiContent(bufferContent('0123456789'), 5), { tooLarge: true })
})

// Adaptive windows (transfer.ts, "Windows that fit the client"): the pause between bursts is a queue run by hand.
function deferQueue() {
  const q: (() => void)[] = []
  return {
    defer: (fn: () => void) => void q.push(fn),
    /** Runs the queued continuations (and those they queue) one turn at a time; returns the blocks each turn sent. */
    drain(take: () => Sent[]): (string | number | undefined)[][] {
      const turns = [blocks(take())]
      while (q.length > 0) {
        for (const fn of q.splice(0)) fn()
        turns.push(blocks(take()))
      }
      return turns
    },
  }
}

test('adaptive windows: a partial ACK makes later windows go out in bursts the client can take', async () => {
  const d = deferQueue()
  const h = harness(bufferContent(Buffer.alloc(8 * 40, 7)), { windowsize: 4, adaptive: { minTimeoutMs: 50, defer: d.defer } })
  h.t.start()
  await flush()
  assert.deepEqual(blocks(h.take()), [1, 2, 3, 4], 'no loss yet: the whole window at once')
  h.t.handleAck(4)
  await flush()
  assert.deepEqual(blocks(h.take()), [5, 6, 7, 8])
  h.t.handleAck(7) // the client got 3 in a row, lost 8
  assert.deepEqual(d.drain(() => h.take()), [[8, 9], [10, 11]], 'bursts of 2 (one fewer than it took), the rest a turn later')
  h.t.handleAck(11)
  await flush()
  assert.deepEqual(d.drain(() => h.take()), [[12, 13], [14, 15]])
  // A burst of a superseded window never goes out: the ACK moved the transfer on before the loop turned.
  h.t.handleAck(15)
  await flush()
  assert.deepEqual(blocks(h.take()), [16, 17])
  h.t.handleAck(16) // short again (17 was sent): bursts of one, and the queued [18, 19] of the old window is dropped
  assert.deepEqual(d.drain(() => h.take()), [[17], [18], [19], [20]])
  assert.equal(h.result(), null)
})

test('adaptive windows: after a measured round trip a lost tail is resent after minTimeoutMs; early resends are not retries', async () => {
  const h = harness(bufferContent(Buffer.alloc(8 * 40, 7)), { windowsize: 4, maxRetries: 2, adaptive: { minTimeoutMs: 50 } })
  h.t.start()
  await flush()
  h.take()
  h.clock.advance(2) // a 2 ms round trip
  h.t.handleAck(4)
  await flush()
  assert.deepEqual(blocks(h.take()), [5, 6, 7, 8])
  h.clock.advance(49)
  assert.deepEqual(h.take(), [], 'not before the floor')
  h.clock.advance(1)
  assert.deepEqual(blocks(h.take()), [5, 6, 7, 8], 'the window again after 50 ms, not 1 s')
  h.t.handleAck(8)
  await flush()
  assert.deepEqual(blocks(h.take()), [9, 10, 11, 12])
  // The client goes away: early resends at 50, 100, 200, 400, 800 ms, then the counted retries at 1 s and 2 s
  // (maxRetries 2), then the ERROR, as without adaptation plus the early ones.
  const at: number[] = []
  let t = 0
  for (let step = 0; step < 10_000 && h.result() === null; step++) {
    h.clock.advance(1)
    t++
    if (h.take().some((s) => s.op === Opcode.DATA)) at.push(t)
  }
  assert.deepEqual(at, [50, 150, 350, 750, 1550, 2550, 4550])
  const r = h.result()!
  assert.equal(r.outcome, 'timeout')
})

test('adaptive windows stay off for lock-step and for a client-chosen timeout', async () => {
  for (const over of [{ windowsize: 1 }, { windowsize: 4, backoff: false }]) {
    const h = harness(bufferContent(Buffer.alloc(8 * 40, 7)), { ...over, adaptive: { minTimeoutMs: 50 } })
    h.t.start()
    await flush()
    const first = blocks(h.take())
    h.t.handleAck(first[first.length - 1] as number)
    await flush()
    h.take()
    h.clock.advance(999)
    assert.deepEqual(h.take(), [], `no early resend (${JSON.stringify(over)})`)
    h.clock.advance(1)
    assert.ok(h.take().length > 0)
  }
})

test('adaptive windows: the OACK round trip already times the first window', async () => {
  const h = harness(bufferContent(Buffer.alloc(8 * 40, 7)), { windowsize: 4, oack: encodeOack(new Map([['windowsize', '4']])), adaptive: { minTimeoutMs: 50 } })
  h.t.start()
  h.take()
  h.clock.advance(1)
  h.t.handleAck(0)
  await flush()
  assert.deepEqual(blocks(h.take()), [1, 2, 3, 4])
  h.clock.advance(50)
  assert.deepEqual(blocks(h.take()), [1, 2, 3, 4], 'the lost first window again after 50 ms, not 1 s')
})
