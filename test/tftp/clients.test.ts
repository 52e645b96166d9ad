// rackboot's TFTP server against real clients on loopback: tftp-hpa, busybox tftp, atftp, curl. Every download is
// compared by checksum with the file served.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { join } from 'node:path'
import { writeFile, readFile } from 'node:fs/promises'
import { findProgram, makeFiles, metricValue, run, sha256File, startServer, tempDir, waitFor } from './support.js'

const MiB = 1024 * 1024
const SIZES = { 'zero.bin': 0, 'b512.bin': 512, 'b1468.bin': 1468, 'f2m.bin': 2 * MiB, 'f40m.bin': 40 * MiB }

const tftpHpa = findProgram('tftp')
const atftp = findProgram('atftp')
const curl = findProgram('curl')
const busybox = findProgram('busybox')

test('real TFTP clients download intact files', { timeout: 600_000 }, async (t) => {
  const root = await tempDir(t, 'rb-tftp-root-')
  const out = await tempDir(t, 'rb-tftp-out-')
  const sums = await makeFiles(root, SIZES)
  // Every client here is 127.0.0.1, where on a network they would be machines of their own: the per-address limit
  // (flood.test.ts) is raised for the parallel downloads below.
  const srv = await startServer(t, { root, settings: { maxTransfersPerClient: 64 } })
  const host = '127.0.0.1'
  const port = String(srv.port)

  async function check(label: string, file: keyof typeof SIZES, dest: string, r: { code: number | null; stderr: string; stdout: string }) {
    assert.equal(r.code, 0, `${label} ${file}: exit ${r.code}: ${r.stderr}${r.stdout}`)
    assert.equal(await sha256File(dest), sums[file], `${label} ${file}: checksum`)
  }

  await t.test('tftp-hpa, no options (512-byte blocks; 40 MiB rolls the block number over)', { skip: tftpHpa ? false : 'tftp (tftp-hpa) not installed' }, async () => {
    for (const file of ['zero.bin', 'b512.bin', 'f2m.bin', 'f40m.bin'] as const) {
      const dest = join(out, `hpa-${file}`)
      await check('tftp-hpa', file, dest, await run(tftpHpa!, [host, port, '-m', 'binary', '-c', 'get', file, dest]))
    }
  })

  await t.test('tftp-hpa netascii', { skip: tftpHpa ? false : 'tftp (tftp-hpa) not installed' }, async () => {
    const text = 'line one\nline two\r\nbare cr\rend\n'.repeat(300)
    await writeFile(join(root, 'text.txt'), text)
    const dest = join(out, 'text.txt')
    const r = await run(tftpHpa!, [host, port, '-m', 'netascii', '-c', 'get', 'text.txt', dest])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(await readFile(dest, 'latin1'), text, 'the client turns netascii back into the original text')
  })

  await t.test('busybox tftp with blksize (tftp-hpa\'s client has no blksize option)', { skip: busybox ? false : 'busybox not installed' }, async () => {
    for (const file of ['zero.bin', 'b1468.bin', 'f2m.bin'] as const) {
      const dest = join(out, `bb-${file}`)
      await check('busybox', file, dest, await run(busybox!, ['tftp', '-g', '-b', '1468', '-r', file, '-l', dest, host, port]))
    }
  })

  await t.test('atftp with blksize, lock-step', { skip: atftp ? false : 'atftp not installed' }, async () => {
    for (const file of ['zero.bin', 'b1468.bin', 'f2m.bin', 'f40m.bin'] as const) {
      const dest = join(out, `atftp-${file}`)
      await check('atftp', file, dest, await run(atftp!, ['--option', 'blksize 1468', '-g', '-r', file, '-l', dest, host, port]))
    }
  })

  await t.test('atftp with blksize and windowsize', { skip: atftp ? false : 'atftp not installed' }, async () => {
    for (const file of ['zero.bin', 'b1468.bin', 'f2m.bin', 'f40m.bin'] as const) {
      const dest = join(out, `atftp-w8-${file}`)
      await check('atftp ws8', file, dest, await run(atftp!, ['--option', 'blksize 1468', '--option', 'windowsize 8', '-g', '-r', file, '-l', dest, host, port]))
    }
    // 512-byte blocks and a window: the block number rolls over in the middle of windows.
    const dest = join(out, 'atftp-w16-512-f40m.bin')
    await check('atftp 512 ws16', 'f40m.bin', dest, await run(atftp!, ['--option', 'blksize 512', '--option', 'windowsize 16', '-g', '-r', 'f40m.bin', '-l', dest, host, port]))
  })

  await t.test('curl tftp:// with --tftp-blksize', { skip: curl ? false : 'curl not installed' }, async () => {
    // zero.bin is left out: curl rejects tsize 0 in an OACK by design ("invalid tsize"), from tftpd-hpa too.
    for (const file of ['b1468.bin', 'f2m.bin', 'f40m.bin'] as const) {
      const dest = join(out, `curl-${file}`)
      await check('curl', file, dest, await run(curl!, ['-sS', '--tftp-blksize', '1468', '-o', dest, `tftp://${host}:${port}/${file}`]))
    }
    const dest = join(out, 'curl-512-b512.bin')
    await check('curl 512', 'b512.bin', dest, await run(curl!, ['-sS', '-o', dest, `tftp://${host}:${port}/b512.bin`]))
  })

  await t.test('errors reach the clients: missing file, path escape', { skip: curl && tftpHpa ? false : 'curl or tftp-hpa not installed' }, async () => {
    const r1 = await run(curl!, ['-sS', '-o', join(out, 'nope'), `tftp://${host}:${port}/does-not-exist`])
    assert.equal(r1.code, 68, `curl exit 68 is CURLE_TFTP_NOTFOUND (ERROR 1); got ${r1.code}: ${r1.stderr}`)
    const r2 = await run(tftpHpa!, [host, port, '-m', 'binary', '-c', 'get', '../etc/passwd', join(out, 'passwd')], 30_000)
    assert.match(r2.stdout + r2.stderr, /Error code 2/)
  })

  await t.test('many transfers at once', { skip: curl && atftp ? false : 'curl or atftp not installed' }, async () => {
    const jobs: Promise<void>[] = []
    for (let i = 0; i < 24; i++) {
      const dest = join(out, `par-${i}.bin`)
      const r = i % 2 === 0
        ? run(curl!, ['-sS', '--tftp-blksize', '1468', '-o', dest, `tftp://${host}:${port}/f2m.bin`])
        : run(atftp!, ['--option', 'blksize 1468', '--option', 'windowsize 8', '-g', '-r', 'f2m.bin', '-l', dest, host, port])
      jobs.push(r.then((res) => check(`parallel ${i}`, 'f2m.bin', dest, res)))
    }
    await Promise.all(jobs)
  })

  // Every transfer reported to the observer (the boot timeline) with its outcome.
  await waitFor(() => srv.server.stats().activeTransfers === 0)
  const ok = srv.finished.filter((f) => f.ok)
  assert.ok(ok.length > 0)
  for (const f of ok) {
    assert.equal(f.client.address, '127.0.0.1')
    assert.equal(f.bytes, SIZES[f.file.replace(/^\//, '') as keyof typeof SIZES] ?? f.bytes)
  }
  assert.ok(srv.finished.some((f) => !f.ok && f.error === 'File not found'))
  assert.equal(await metricValue(srv.metrics, 'rackboot_tftp_transfers_finished_total', { result: 'ok' }), ok.length)
})

test('listen "::": IPv4 and IPv6 clients both download, each answered from the address it asked (tftp-hpa -6, curl)', { timeout: 120_000 }, async (t) => {
  const ipv6 = (await run('ip', ['-6', 'addr', 'show', 'dev', 'lo'])).stdout.includes('::1/128')
  if (!ipv6) return t.skip('no ::1 on lo (IPv6 disabled here): cannot test TFTP over IPv6')
  const root = await tempDir(t, 'rb-tftp6-root-')
  const out = await tempDir(t, 'rb-tftp6-out-')
  const sums = await makeFiles(root, { 'f2m.bin': 2 * MiB })
  const srv = await startServer(t, { root, settings: { listen: '::' } })
  assert.equal(srv.address, '::')
  const port = String(srv.port)
  if (tftpHpa) {
    // tftp-hpa takes answers only from the address it asked: a reply from another one would fail the transfer.
    for (const [flag, host] of [['-6', '::1'], ['-4', '127.0.0.1']] as const) {
      const dest = join(out, `hpa${flag}.bin`)
      const r = await run(tftpHpa, [flag, host, port, '-m', 'binary', '-c', 'get', 'f2m.bin', dest])
      assert.equal(r.code, 0, `tftp-hpa ${flag}: ${r.stderr}${r.stdout}`)
      assert.equal(await sha256File(dest), sums['f2m.bin'], `tftp-hpa ${flag}: checksum`)
    }
  } else t.diagnostic('tftp (tftp-hpa) not installed: the IPv6 download is checked with curl only')
  if (curl) {
    const dest = join(out, 'curl6.bin')
    const r = await run(curl, ['-sS', '--tftp-blksize', '1428', '-o', dest, `tftp://[::1]:${port}/f2m.bin`])
    assert.equal(r.code, 0, `curl over IPv6: ${r.stderr}`)
    assert.equal(await sha256File(dest), sums['f2m.bin'])
  }
  await waitFor(() => srv.finished.length >= (tftpHpa ? 2 : 0) + (curl ? 1 : 0))
  const clients = srv.finished.map((f) => f.client.address).sort()
  assert.ok(clients.includes('::1'), `an IPv6 client, named as such: ${clients.join(', ')}`)
  assert.ok(!clients.some((a) => a.startsWith('::ffff:')), `IPv4 clients keep their IPv4 names: ${clients.join(', ')}`)
  assert.ok(srv.finished.every((f) => f.ok), 'every transfer complete')
})
