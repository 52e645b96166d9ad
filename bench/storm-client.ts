// The simulated machines of `npm run bench -- storm`, in a process of their own inside the client network namespace
// (so the CPU it burns is not the server's, and its sockets have the machines' own addresses): one job on stdin,
// one JSON result on stdout. `node --import tsx bench/storm-client.ts < job.json`
//
//   dhcp  DORA per MAC as iPXE's own DHCP does it (option 77 "iPXE", 93 x64 UEFI, 60 PXEClient, 97 uuid), relayed:
//         this namespace is the rack's relay (giaddr), so the server answers unicast to it on port 67. Retransmits
//         as iPXE does (1, 2, 4, 8 s), then gives up.
//   http  one request per item, a new TCP connection each (agent: false, as iPXE opens one per download), from the
//         machine's leased address (localAddress); or, for the API caller, a keep-alive pool from one address.
import { createSocket, type Socket } from 'node:dgram'
import { Agent, request, type IncomingMessage } from 'node:http'
import { randomInt } from 'node:crypto'

export interface DhcpJob {
  kind: 'dhcp'
  server: string
  giaddr: string
  concurrency: number
  clients: { mac: string; uuid: string }[]
}

export interface DhcpOutcome {
  mac: string
  ip: string | null
  /** Boot file URL (option 67, else the BOOTP file field). */
  file: string | null
  ms: number
  retransmits: number
  error: string | null
}

export interface HttpItem {
  method: 'GET' | 'HEAD' | 'POST'
  url: string
  local?: string
  headers?: Record<string, string>
  body?: string
  /** Return this many characters of the body (scripts, API answers, a config's head); asset bodies are only counted. */
  keep?: number
}

export interface HttpJob {
  kind: 'http'
  concurrency: number
  /** A keep-alive pool of `concurrency` connections (the API caller), instead of a new connection per request. */
  keepAlive?: boolean
  items: HttpItem[]
}

export interface HttpOutcome {
  status: number
  ms: number
  bytes: number
  error: string | null
  body?: string
}

export interface ClientResult<T> {
  wallMs: number
  cpuMs: number
  outcomes: T[]
}

// ---------------------------------------------------------------------------------------------------------------
// DHCP

const RETRANSMIT_MS = [1000, 2000, 4000, 8000]
const PRL = [1, 3, 6, 7, 12, 15, 17, 26, 43, 60, 66, 67, 119, 128, 129, 130, 131, 132, 133, 134, 135, 175, 203]

const ipBytes = (ip: string): number[] => ip.split('.').map(Number)
const opt = (code: number, data: Buffer | number[]): Buffer => {
  const d = Buffer.isBuffer(data) ? data : Buffer.from(data)
  return Buffer.concat([Buffer.from([code, d.length]), d])
}

/** A UUID as iPXE puts it in option 97: GUID order, the first three fields little-endian (iPXE's uuid_mangle). */
function wireUuid(uuid: string): Buffer {
  const b = Buffer.from(uuid.replaceAll('-', ''), 'hex')
  b.subarray(0, 4).reverse()
  b.subarray(4, 6).reverse()
  b.subarray(6, 8).reverse()
  return b
}

/** A relayed DISCOVER or REQUEST with the options iPXE sends. */
function dhcpPacket(type: 1 | 3, xid: number, c: { mac: string; uuid: string }, giaddr: string, req?: { ip: string; server: string }): Buffer {
  const head = Buffer.alloc(240)
  head[0] = 1 // BOOTREQUEST
  head[1] = 1 // Ethernet
  head[2] = 6
  head[3] = 1 // hops: one relay
  head.writeUInt32BE(xid, 4)
  head.writeUInt16BE(0x8000, 10) // iPXE sets the broadcast flag
  Buffer.from(ipBytes(giaddr)).copy(head, 24)
  const mac = Buffer.from(c.mac.split(':').map((h) => parseInt(h, 16)))
  mac.copy(head, 28)
  Buffer.from([99, 130, 83, 99]).copy(head, 236)
  const options = [
    opt(53, [type]),
    opt(57, [0x05, 0xc0]), // 1472
    opt(93, [0, 7]), // x64 UEFI
    opt(94, [1, 3, 10]),
    opt(60, Buffer.from('PXEClient:Arch:00007:UNDI:003010')),
    opt(77, Buffer.from('iPXE')),
    opt(61, Buffer.concat([Buffer.from([1]), mac])),
    opt(97, Buffer.concat([Buffer.from([0]), wireUuid(c.uuid)])),
    opt(55, PRL),
    ...(req ? [opt(50, ipBytes(req.ip)), opt(54, ipBytes(req.server))] : []),
    Buffer.from([255]),
  ]
  const packet = Buffer.concat([head, ...options])
  return packet.length >= 300 ? packet : Buffer.concat([packet, Buffer.alloc(300 - packet.length)])
}

interface Reply {
  type: number
  yiaddr: string
  server: string | null
  file: string | null
  /** Option 56: why a NAK was sent. */
  message: string | null
}

function parseReply(b: Buffer): { xid: number; reply: Reply } | null {
  if (b.length < 240 || b[0] !== 2 || b.readUInt32BE(236) !== 0x63825363) return null
  const o = new Map<number, Buffer>()
  for (let i = 240; i < b.length && b[i] !== 255;) {
    if (b[i] === 0) {
      i++
      continue
    }
    const len = b[i + 1] ?? 0
    o.set(b[i]!, b.subarray(i + 2, i + 2 + len))
    i += 2 + len
  }
  const ip = (x: Buffer | undefined) => (x && x.length === 4 ? [...x].join('.') : null)
  const fileField = b.toString('latin1', 108, 236).replace(/\0.*$/s, '')
  return {
    xid: b.readUInt32BE(4),
    reply: {
      type: o.get(53)?.[0] ?? 0,
      yiaddr: [...b.subarray(16, 20)].join('.'),
      server: ip(o.get(54)),
      file: o.get(67)?.toString('latin1').replace(/\0+$/, '') || fileField || null,
      message: o.get(56)?.toString('latin1') ?? null,
    },
  }
}

/** DHCP exchanges in flight by xid; each waits for one reply type. */
function createExchanges(socket: Socket, server: string) {
  const waiting = new Map<number, { want: number; done: (r: Reply | null) => void }>()
  socket.on('message', (msg) => {
    const p = parseReply(msg)
    const w = p && waiting.get(p.xid)
    if (!p || !w) return
    if (p.reply.type !== w.want && p.reply.type !== 6) return // 6: NAK ends it too
    waiting.delete(p.xid)
    w.done(p.reply)
  })
  /** Sends until a reply of type `want` comes, retransmitting on iPXE's schedule; null when none came. */
  const ask = async (xid: number, packet: Buffer, want: number): Promise<{ reply: Reply | null; retransmits: number }> => {
    for (let attempt = 0; attempt < RETRANSMIT_MS.length; attempt++) {
      const reply = await new Promise<Reply | null>((resolve) => {
        const timer = setTimeout(() => {
          waiting.delete(xid)
          resolve(null)
        }, RETRANSMIT_MS[attempt])
        waiting.set(xid, { want, done: (r) => (clearTimeout(timer), resolve(r)) })
        socket.send(packet, 67, server)
      })
      if (reply) return { reply, retransmits: attempt }
    }
    return { reply: null, retransmits: RETRANSMIT_MS.length - 1 }
  }
  return { ask }
}

async function dora(ex: ReturnType<typeof createExchanges>, job: DhcpJob, c: DhcpJob['clients'][number]): Promise<DhcpOutcome> {
  const xid = randomInt(1, 2 ** 32 - 1)
  const t0 = performance.now()
  const offer = await ex.ask(xid, dhcpPacket(1, xid, c, job.giaddr), 2)
  const fail = (error: string, retransmits: number): DhcpOutcome => ({ mac: c.mac, ip: null, file: null, ms: performance.now() - t0, retransmits, error })
  if (!offer.reply) return fail('no offer', offer.retransmits)
  if (offer.reply.type !== 2 || !offer.reply.server) return fail('bad offer', offer.retransmits)
  const ack = await ex.ask(xid, dhcpPacket(3, xid, c, job.giaddr, { ip: offer.reply.yiaddr, server: offer.reply.server }), 5)
  const retransmits = offer.retransmits + ack.retransmits
  if (!ack.reply) return fail('no ack', retransmits)
  if (ack.reply.type !== 5) return fail(`nak${ack.reply.message ? `: ${ack.reply.message}` : ''}`, retransmits)
  return { mac: c.mac, ip: ack.reply.yiaddr, file: ack.reply.file, ms: performance.now() - t0, retransmits, error: null }
}

async function runDhcp(job: DhcpJob): Promise<DhcpOutcome[]> {
  const socket = createSocket({ type: 'udp4', recvBufferSize: 8 << 20 })
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject)
    socket.bind(67, '0.0.0.0', () => resolve())
  })
  try {
    const ex = createExchanges(socket, job.server)
    return await pool(job.clients, job.concurrency, (c) => dora(ex, job, c))
  } finally {
    socket.close()
  }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP

function once(item: HttpItem, agent: Agent | false): Promise<HttpOutcome> {
  const t0 = performance.now()
  return new Promise((resolve) => {
    let settled = false
    const finish = (o: Omit<HttpOutcome, 'ms'>) => {
      if (settled) return
      settled = true
      resolve({ ...o, ms: performance.now() - t0 })
    }
    const req = request(item.url, {
      method: item.method,
      agent,
      ...(item.local ? { localAddress: item.local } : {}),
      headers: { ...(item.body !== undefined ? { 'content-type': 'application/json' } : {}), ...item.headers },
      timeout: 60_000,
    }, (res: IncomingMessage) => {
      const chunks: Buffer[] = []
      let bytes = 0
      res.on('data', (d: Buffer) => {
        bytes += d.length
        if (item.keep && bytes - d.length < item.keep) chunks.push(d)
      })
      res.on('end', () => {
        const status = res.statusCode ?? 0
        const length = Number(res.headers['content-length'] ?? NaN)
        // A body that ends short of its Content-Length is a cut download, whatever the status said.
        const short = item.method !== 'HEAD' && Number.isFinite(length) && bytes < length
        finish({ status, bytes, error: short ? 'short body' : null, ...(item.keep ? { body: Buffer.concat(chunks).toString().slice(0, item.keep) } : {}) })
      })
      res.on('error', (err: NodeJS.ErrnoException) => finish({ status: res.statusCode ?? 0, bytes, error: err.code ?? err.message }))
    })
    req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })))
    req.on('error', (err: NodeJS.ErrnoException) => finish({ status: 0, bytes: 0, error: err.code ?? err.message }))
    req.end(item.body)
  })
}

async function runHttp(job: HttpJob): Promise<HttpOutcome[]> {
  const agent = job.keepAlive ? new Agent({ keepAlive: true, maxSockets: job.concurrency }) : false
  try {
    return await pool(job.items, job.concurrency, (item) => once(item, agent))
  } finally {
    if (agent) agent.destroy()
  }
}

/** Runs `fn` over `items`, `concurrency` at a time; results in item order. */
async function pool<I, O>(items: I[], concurrency: number, fn: (item: I) => Promise<O>): Promise<O[]> {
  const out = new Array<O>(items.length)
  let next = 0
  await Promise.all(Array.from({ length: Math.min(concurrency, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!)
    }
  }))
  return out
}

async function main(): Promise<void> {
  let text = ''
  for await (const chunk of process.stdin) text += chunk
  const job = JSON.parse(text) as DhcpJob | HttpJob
  const c0 = process.cpuUsage()
  const t0 = performance.now()
  const outcomes = job.kind === 'dhcp' ? await runDhcp(job) : await runHttp(job)
  const wallMs = performance.now() - t0
  const cpu = process.cpuUsage(c0)
  process.stdout.write(JSON.stringify({ wallMs, cpuMs: (cpu.user + cpu.system) / 1000, outcomes }))
}

await main()
