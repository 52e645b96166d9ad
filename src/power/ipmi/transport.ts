// One UDP socket to one BMC, with request/answer exchanges that retransmit on loss until a deadline, or, for
// requests a BMC would carry out twice, send once and wait a bounded time for the answer.
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
  /**
   * false: send one copy, never another, and wait answerWaitFor(retransmitMs), bounded by the deadline, for its
   * answer. For requests that are not idempotent: ipmi_sim and many BMCs do not de-duplicate by rqSeq, so a
   * retransmitted Chassis Control is a second power cycle. No answer then is a timeout that says it may have run.
   */
  retransmit?: boolean
  /** Called immediately before the first copy leaves (never for retransmissions, never when nothing is sent). */
  onSend?: () => void
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

/**
 * The answer wait of a request sent once: 4 x retransmitMs (the longest interval a retransmitted request waits
 * between copies, 4 s by default), and at least 2 s. A BMC answers Chassis Control after acting on it (ipmi_sim
 * runs its handler first, ~40 ms; real BMCs may sequence power for a second or two), and giving up early turns an
 * answer that was coming into an unknown outcome, which the manager must then resolve by reading the power state
 * and may not retry. The call's deadline still bounds it.
 */
export function answerWaitFor(retransmitMs: number): number {
  return Math.max(2000, 4 * retransmitMs)
}

export class UdpChannel {
  private readonly socket: Socket
  private waiter: ((datagram: Buffer) => void) | null = null
  private lastError: Error | null = null
  private refusals = 0
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
    // ICMP port unreachable surfaces here on a connected socket; keep it for the timeout message and retry on
    // (one can be a fluke), counting them: every copy refused means nothing listens there.
    this.socket.on('error', (err) => {
      this.lastError = err
      if ((err as NodeJS.ErrnoException).code === 'ECONNREFUSED') this.refusals++
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
      throw new PowerError('unreachable', `cannot reach BMC ${this.label} (${x.what} not sent): ${e.code ?? e.message}`,
        { cause: err, notRun: true, details: { bmc: this.label, step: x.what } })
    }
    const deadline = x.deadline ?? this.opts.deadline
    const signal = this.opts.signal
    const once = x.retransmit === false
    const started = Date.now()
    const refusedBefore = this.refusals
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw this.timeoutError(x, started, attempt, true)
      const now = Date.now()
      if (now >= deadline || (once && attempt > 0)) throw this.timeoutError(x, started, attempt, false)
      const wait = Math.min(once ? answerWaitFor(this.opts.retransmitMs) : this.opts.retransmitMs * Math.min(2 ** attempt, 4),
        deadline - now)
      const datagram = x.build(attempt)
      // The caller's last moment before the request may reach the BMC (a throw here sends nothing).
      if (attempt === 0) x.onSend?.()
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
      // Two copies, each answered by the host's "port unreachable": a dead service, not a slow one; say so now
      // rather than at the deadline (a dead BMC used to cost the whole budget).
      if (!once && attempt >= 1 && this.refusals - refusedBefore > attempt) {
        throw new PowerError('unreachable', `BMC ${this.label} refused ${x.what}: nothing answers on UDP port ` +
          `${this.opts.port} (ICMP port unreachable to ${attempt + 1} copies; wrong port, or IPMI over LAN disabled?)`,
        // Refused outright: a wrong port or a disabled service does not come back in seconds, so not retried.
        { notRun: true, retryable: false, details: { bmc: this.label, step: x.what } })
      }
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

  /** `copies`: how many copies of this request left (0: it never did, so the BMC cannot have acted on it). */
  private timeoutError(x: ExchangeOptions<unknown>, started: number, copies: number, aborted: boolean): PowerError {
    const ms = Date.now() - started
    const what = x.what
    const hint = this.lastError ? ` (${(this.lastError as NodeJS.ErrnoException).code ?? this.lastError.message})` : ''
    const details = { bmc: this.label, step: what, ms, sent: this.sent, copies }
    if (copies === 0) {
      const why = aborted ? 'the call was aborted' : 'the time allowed was used up by the steps before it'
      return new PowerError('timeout', `${what} not sent to BMC ${this.label}: ${why}${hint}`, { details, notRun: true })
    }
    if (x.retransmit === false) {
      const waited = aborted ? `gave up waiting (aborted) for BMC ${this.label}'s answer to ${what} after ${ms} ms`
        : `no answer from BMC ${this.label} to ${what} after ${ms} ms`
      return new PowerError('timeout', `${waited}${hint}; it may have been carried out (sent once, not repeated)`, {
        details: { ...details, maybeRun: true },
      })
    }
    const waited = aborted ? `gave up waiting (aborted) for BMC ${this.label} to answer` : `no answer from BMC ${this.label} for`
    return new PowerError('timeout', `${waited} ${what} after ${ms} ms${hint}`, { details })
  }
}
