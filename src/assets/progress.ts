// A text progress bar for long CLI work (downloads). On a terminal it redraws one line; otherwise it prints a
// line every 10 % so CI logs stay readable.

export interface Progress {
  update(done: number): void
  finish(message?: string): void
}

function mib(n: number): string {
  return (n / 1048576).toFixed(1)
}

export function createProgress(label: string, total: number | null, stream: NodeJS.WriteStream = process.stderr): Progress {
  const start = Date.now()
  const tty = stream.isTTY === true
  let lastDecile = -1
  let lastDraw = 0
  const line = (done: number) => {
    const secs = Math.max((Date.now() - start) / 1000, 0.001)
    const rate = `${mib(done / secs)} MiB/s`
    if (total && total > 0) {
      const frac = Math.min(done / total, 1)
      const width = 30
      const filled = Math.round(frac * width)
      return `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${mib(done)}/${mib(total)} MiB ${rate}`
    }
    return `${label} ${mib(done)} MiB ${rate}`
  }
  return {
    update(done) {
      if (tty) {
        const now = Date.now()
        if (now - lastDraw < 100) return
        lastDraw = now
        stream.write(`\r${line(done)}\x1b[K`)
        return
      }
      const decile = total ? Math.floor((done / total) * 10) : -1
      if (decile > lastDecile) {
        lastDecile = decile
        stream.write(line(done) + '\n')
      }
    },
    finish(message) {
      stream.write(`${tty ? '\r' : ''}${message ?? label + ' done'}${tty ? '\x1b[K' : ''}\n`)
    },
  }
}
