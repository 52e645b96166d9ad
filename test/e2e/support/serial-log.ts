// The serial console of a guest as timed lines: every line remembers when its first byte arrived (ms since the VM
// started), so boot phases can be timed from markers, and tests can wait for a marker. Matching is done on text
// with ANSI escapes and carriage returns removed (OVMF and GRUB draw with them).
import { appendFileSync } from 'node:fs'

export interface SerialLine {
  /** ms after VM start when the line's first byte arrived. */
  atMs: number
  text: string
}

export interface SerialMatch {
  atMs: number
  line: string
  match: RegExpExecArray
}

// CSI sequences, charset selections, other two-byte escapes.
const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][0-9A-Za-z]|\x1b[=>78cDEHM]/g

export function cleanSerial(text: string): string {
  return text.replace(ANSI, '').replace(/\r/g, '')
}

interface Waiter {
  re: RegExp
  partial: boolean
  resolve(m: SerialMatch): void
}

export class SerialLog {
  private readonly lines: SerialLine[] = []
  private partial = false
  private raw = ''
  private waiters = new Set<Waiter>()

  constructor(
    private readonly startedAt: () => number,
    private readonly file?: string,
  ) {}

  /** Feeds bytes from the guest. */
  push(chunk: Buffer | string, now = Date.now()): void {
    const text = chunk.toString()
    this.raw += text
    if (this.file) {
      try {
        appendFileSync(this.file, text)
      } catch {
        // the log file is a convenience; the in-memory copy is what tests read
      }
    }
    const atMs = now - this.startedAt()
    const parts = text.split('\n')
    const touched: SerialLine[] = []
    parts.forEach((part, i) => {
      const last = this.lines.at(-1)
      if (i === 0 && this.partial && last) {
        last.text += cleanSerial(part)
        touched.push(last)
      } else if (part !== '' || i < parts.length - 1) {
        const line = { atMs, text: cleanSerial(part) }
        this.lines.push(line)
        touched.push(line)
      }
    })
    this.partial = !text.endsWith('\n')
    const last = this.lines.at(-1)
    for (const w of [...this.waiters]) {
      for (const line of touched) {
        // A line still being written may match too early ("config failed" before " empty config (HTTP 204)").
        if (!w.partial && this.partial && line === last) continue
        const m = new RegExp(w.re.source, w.re.flags.replace('g', '')).exec(line.text)
        if (m) {
          this.waiters.delete(w)
          w.resolve({ atMs: line.atMs, line: line.text, match: m })
          break
        }
      }
    }
  }

  /** The first line matching `re`, or null; `complete` leaves out a last line still being written. */
  find(re: RegExp, options: { complete?: boolean } = {}): SerialMatch | null {
    const r = new RegExp(re.source, re.flags.replace('g', ''))
    const lines = options.complete && this.partial ? this.lines.slice(0, -1) : this.lines
    for (const line of lines) {
      const m = r.exec(line.text)
      if (m) return { atMs: line.atMs, line: line.text, match: m }
    }
    return null
  }

  /** Every line matching `re`. */
  findAll(re: RegExp): SerialMatch[] {
    const r = new RegExp(re.source, re.flags.replace('g', ''))
    const out: SerialMatch[] = []
    for (const line of this.lines) {
      const m = r.exec(line.text)
      if (m) out.push({ atMs: line.atMs, line: line.text, match: m })
    }
    return out
  }

  /**
   * Resolves at the first complete line (already seen or still to come) that matches; with `partial`, a line still
   * being written counts too (prompts without a newline). The caller handles timeouts.
   */
  next(re: RegExp, options: { partial?: boolean } = {}): { promise: Promise<SerialMatch>; cancel(): void } {
    const partial = options.partial ?? false
    const seen = this.find(re, { complete: !partial })
    if (seen) return { promise: Promise.resolve(seen), cancel: () => undefined }
    let waiter!: Waiter
    const promise = new Promise<SerialMatch>((resolve) => {
      waiter = { re, partial, resolve }
      this.waiters.add(waiter)
    })
    return { promise, cancel: () => this.waiters.delete(waiter) }
  }

  /** Cleaned text. */
  text(): string {
    return this.lines.map((l) => l.text).join('\n')
  }

  /** Bytes as the guest sent them. */
  rawText(): string {
    return this.raw
  }

  /** The last `n` cleaned lines (for error messages). */
  tail(n = 30): string {
    return this.lines
      .slice(-n)
      .map((l) => `[${(l.atMs / 1000).toFixed(1)}s] ${l.text}`)
      .join('\n')
  }

  allLines(): readonly SerialLine[] {
    return this.lines
  }
}
