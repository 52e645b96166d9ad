import assert from 'node:assert/strict'
import { createServer } from 'node:http'
import { connect, type AddressInfo, type Socket } from 'node:net'
import { test } from 'node:test'
import { resetOnPeerEof } from '../../src/http/peer-eof.js'

// What GRUB does (lab.md): fetch over HTTP/1.1, then end its side. The server must reset, not leave a closing
// socket behind.

async function server(t: { after(fn: () => Promise<void>): void }, keepAliveTimeout = 5_000) {
  const srv = createServer({ keepAliveTimeout }, (req, res) => {
    const body = Buffer.alloc(Number(new URL(req.url!, 'http://x').searchParams.get('bytes') ?? 100), 0x61)
    res.end(body)
  })
  resetOnPeerEof(srv)
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()))
  t.after(() => new Promise<void>((r) => srv.close(() => r())))
  return { srv, port: (srv.address() as AddressInfo).port }
}

function talk(port: number, path: string, endAfter: 'response' | 'request' | 'never'): Promise<{ body: number; reset: boolean; ended: boolean }> {
  return new Promise((resolve, reject) => {
    const s: Socket = connect(port, '127.0.0.1')
    let got = Buffer.alloc(0)
    let reset = false
    let ended = false
    s.on('end', () => { ended = true })
    s.on('connect', () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\n`)
      if (endAfter === 'request') s.end()
    })
    s.on('data', (d) => {
      got = Buffer.concat([got, d])
      const head = got.indexOf('\r\n\r\n')
      const len = Number(/content-length: (\d+)/i.exec(got.toString('latin1'))?.[1] ?? -1)
      if (endAfter === 'response' && head >= 0 && got.length - head - 4 === len) s.end()
    })
    s.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') reset = true
      else reject(err)
    })
    s.on('close', () => {
      const head = got.indexOf('\r\n\r\n')
      resolve({ body: head >= 0 ? got.length - head - 4 : -1, reset, ended })
    })
  })
}

test('a client that ends its side after its response is reset, and no server socket is left', async (t) => {
  const { srv, port } = await server(t)
  const r = await talk(port, '/?bytes=1000', 'response')
  assert.equal(r.body, 1000)
  assert.equal(r.reset, true, 'RST, not FIN')
  const open = await new Promise<number>((res, rej) => srv.getConnections((e, n) => (e ? rej(e) : res(n))))
  assert.equal(open, 0)
})

test('an idle keep-alive connection the client never closes is reset at the timeout, not left in FIN-WAIT-2', async (t) => {
  // GRUB leaves its config file's connection open; a FIN at the keep-alive timeout would be acknowledged and the
  // server socket would wait 60 s for GRUB's FIN on a port GRUB's next boot reuses.
  const { srv, port } = await server(t, 300)
  const started = Date.now()
  const r = await talk(port, '/?bytes=500', 'never')
  assert.equal(r.body, 500)
  assert.equal(r.reset, true, 'RST at the keep-alive timeout')
  assert.equal(r.ended, false, 'no FIN from the server')
  assert.ok(Date.now() - started >= 250, 'not before the keep-alive timeout')
  const open = await new Promise<number>((res, rej) => srv.getConnections((e, n) => (e ? rej(e) : res(n))))
  assert.equal(open, 0)
})
