// Splits a TCP byte stream into newline-terminated lines while holding at most `maxLineBytes` of an unfinished
// line: a longer line is reported once as too long and skipped up to its newline, so a client that never sends a
// newline costs constant memory.
const NEWLINE = 0x0a

export interface LineSink {
  line(text: string): void
  tooLong(): void
}

export class LineSplitter {
  private pending: Buffer[] = []
  private pendingBytes = 0
  private skipping = false

  constructor(
    private readonly maxLineBytes: number,
    private readonly sink: LineSink,
  ) {}

  /** Bytes held for the unfinished line. */
  get buffered(): number {
    return this.pendingBytes
  }

  /** At end of stream: drops an unfinished line; true when one was held (a too-long one was already reported). */
  end(): boolean {
    const had = this.pendingBytes > 0
    this.pending = []
    this.pendingBytes = 0
    this.skipping = false
    return had
  }

  push(chunk: Buffer): void {
    let pos = 0
    while (pos < chunk.length) {
      const nl = chunk.indexOf(NEWLINE, pos)
      const end = nl < 0 ? chunk.length : nl
      const length = end - pos
      if (!this.skipping && this.pendingBytes + length > this.maxLineBytes) {
        this.pending = []
        this.pendingBytes = 0
        this.skipping = true
        this.sink.tooLong()
      }
      if (nl < 0) {
        // Copy: a slice would keep the whole socket chunk alive for a few bytes.
        if (!this.skipping && length > 0) {
          this.pending.push(Buffer.from(chunk.subarray(pos, end)))
          this.pendingBytes += length
        }
        return
      }
      if (this.skipping) {
        this.skipping = false
      } else {
        const part = chunk.subarray(pos, end)
        const bytes = this.pending.length === 0 ? part : Buffer.concat([...this.pending, part])
        this.pending = []
        this.pendingBytes = 0
        this.sink.line(bytes.toString('utf8'))
      }
      pos = nl + 1
    }
  }
}
