// One UDP socket to one BMC, with request/answer exchanges that retransmit on loss until a deadline.
import { createSocket, type Socket } from 'node:dgram'
import { isIPv6 } from 'node:net'
import { PowerError } from '../errors.js'

export interface ExchangeOptions<T> {
  /** Says what is being waited for, in the timeout error ("Open Session", "Get Chassis Status"). */
  what: string
  /** Builds the datagram for attempt n (0-based): in-session retransmits need a fresh session sequence number. */
  build: (attempt: number) => Buffer
  /** Returns the answer when the datagram is the one awaited, undefined to keep waiting (it is dropped). */
  accept: (datagram: Buffer) => T | undefined
  /** Overrides the channel deadline (Close Session uses a short budget of its own). */
  deadline?: number
}

export interface UdpChannelOptions {
  host: string
  port: number
  /** Absolute time (Date.now()) by which every exchange must be done. */
  deadline: number
  /** First retransmission interval; doubles per attempt up to 4x. */
  retransmitMs: number
  signal?: AbortSignal
}

export class UdpChannel {
  private readonly socket: Socket
  private waiter: ((datagram: Buffer) => void) | null = null
  private lastError: Error | null = null
  private closed = false
  private pending = 0
  private connected = false
  private readonly ready: Promise<void>
  readonly label: string
  /** Datagrams that arrived with nobody waiting for them or that `accept` refused. */
  dropped = 0
  /** Datagrams sent, first tries and retransmissions. */
  sent = 0
  /** Of those, retransmissions (an answer did not come in time). */
  retransmitted = 0

  constructor(private readonly opts: UdpChannelOptions) {
    this.label = `${opts.host}:${opts.port}`
    this.socket = createSocket(isIPv6(opts.host) ? 'udp6' : 'udp4')
    this.socket.on('message', (msg) => {
      if (this.waiter) this.waiter(msg)
      else this.dropped++
    })
    // ICMP port unreachable surfaces here on a connected socket; keep it for the timeout message and retry on.
    this.socket.on('error', (err) => {
      this.lastError = err
    })
    this.ready = new Promise((resolve, reject) => {
      this.socket.once('connect', () => {
        this.connected = true
        resolve()
      })
      this.socket.once('error', (err) => reject(err))
      try {
        this.socket.connect(opts.port, opts.host)
      } catch (err) {
        reject(err)
      }
    })
    this.ready.catch(() => {})
  }

  get deadline(): number {
    return this.opts.deadline
  }

  get aborted(): boolean {
    return this.opts.signal?.aborted ?? false
  }

  async exchange<T>(x: ExchangeOptions<T>): Promise<T> {
    try {
      await this.ready
    } catch (err) {
      const e = err as NodeJS.ErrnoException
      throw new PowerError('unreachable', `cannot reach BMC ${this.label}: ${e.code ?? e.message}`, { cause: err })
    }
    const deadline = x.deadline ?? this.opts.deadline
    const signal = this.opts.signal
    const started = Date.now()
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw this.timeoutError(x.what, started, 'aborted')
      const now = Date.now()
      if (now >= deadline) throw this.timeoutError(x.what, started)
      const wait = Math.min(this.opts.retransmitMs * Math.min(2 ** attempt, 4), deadline - now)
      const datagram = x.build(attempt)
      const answer = await new Promise<{ value: T } | null>((resolve) => {
        let timer: NodeJS.Timeout | undefined
        const finish = (result: { value: T } | null): void => {
          clearTimeout(timer)
          signal?.removeEventListener('abort', onAbort)
          this.waiter = null
          resolve(result)
        }
        const onAbort = (): void => finish(null)
        this.waiter = (msg) => {
          let value: T | undefined
          try {
            value = x.accept(msg)
          } catch {
            value = undefined
          }
          if (value === undefined) this.dropped++
          else finish({ value })
        }
        timer = setTimeout(() => finish(null), wait)
        signal?.addEventListener('abort', onAbort, { once: true })
        this.sent++
        if (attempt > 0) this.retransmitted++
        this.socket.send(datagram, (err) => {
          if (err) this.lastError = err
        })
      })
      if (answer) return answer.value
    }
  }

  /** Sends without waiting for an answer (a RAKP3 that reports an error to the BMC). */
  sendOnly(datagram: Buffer): void {
    if (this.closed) return
    const send = (): void => {
      this.pending++
      this.socket.send(datagram, () => {
        this.pending--
        if (this.closed && this.pending === 0) this.release()
      })
    }
    // Synchronously when connected: callers close the channel right after, and close waits for `pending`.
    if (this.connected) send()
    else this.ready.then(() => { if (!this.closed) send() }, () => {})
  }

  /** Closes the socket once a sendOnly datagram still in flight has left (closing would cancel it). */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.waiter = null
    if (this.pending === 0) this.release()
  }

  private release(): void {
    try {
      this.socket.close()
    } catch {
      // already closed
    }
  }

  private timeoutError(what: string, started: number, why?: string): PowerError {
    const ms = Date.now() - started
    const hint = this.lastError ? ` (${(this.lastError as NodeJS.ErrnoException).code ?? this.lastError.message})` : ''
    const verb = why === 'aborted' ? 'aborted waiting' : 'no answer'
    return new PowerError('timeout', `${verb} from BMC ${this.label} for ${what} after ${ms} ms${hint}`, {
      details: { bmc: this.label, step: what, ms, sent: this.sent },
    })
  }
}
