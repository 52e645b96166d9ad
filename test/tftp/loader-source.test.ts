// Loaders over rackboot's TFTP: iPXE's from <assets>/ipxe, GRUB netboot images from <assets>/grub, GRUB's own
// requests (grub/grub.cfg, grub/grub.cfg-01-<mac>) still answered by the GRUB config handler, and a "file not
// found" for a loader network boot offers says what fetches it.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdir, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { silentLogger } from '../../src/log.js'
import { createMetricsRegistry } from '../../src/metrics.js'
import { createGrubTftp } from '../../src/tftp/grub-source.js'
import { createTftpServer, type TftpTransferInfo } from '../../src/tftp/index.js'
import { withNotFoundHints } from '../../src/tftp/loader-hints.js'
import { createLoaderSource } from '../../src/tftp/loader-source.js'
import { ErrorCode, encodeRequest, Opcode } from '../../src/tftp/packet.js'
import { DEFAULT_SETTINGS, expectError, RawClient, tempDir, waitFor } from './support.js'

async function setup(t: { after(fn: () => Promise<void>): void }, opts: { grubDir?: boolean } = {}) {
  const assets = await tempDir(t, 'rb-loader-tftp-')
  await mkdir(join(assets, 'ipxe'))
  await writeFile(join(assets, 'ipxe', 'ipxe.efi'), 'IPXE-EFI')
  if (opts.grubDir !== false) {
    await mkdir(join(assets, 'grub'))
    await writeFile(join(assets, 'grub', 'grubnetaa64.efi'), 'GRUB-AA64')
  }
  const { source, ipxeFiles } = createLoaderSource({ assetsDir: assets })
  const grub = createGrubTftp({
    config: async (mac) => `# config for ${mac}\n`,
    bootstrap: () => '# bootstrap\n',
    files: ipxeFiles,
  })
  grub.attach(source)
  const finished: TftpTransferInfo[] = []
  const hint = (path: string) => (path === 'grubnetx64.efi' ? 'run rackboot assets fetch grub' : null)
  const server = createTftpServer({
    settings: DEFAULT_SETTINGS, source, log: silentLogger(), metrics: createMetricsRegistry(),
    observer: grub.quiet(withNotFoundHints({ transferFinished: (i) => void finished.push(i) }, hint)),
  })
  const { port } = await server.start()
  t.after(() => server.stop())
  const client = await RawClient.open(t)
  const get = async (file: string) => (await client.download(port, file)).data.toString()
  return { assets, port, client, get, finished }
}

test('GRUB images come from grub/, everything else from ipxe/, and GRUB\'s configs from the GRUB handler', async (t) => {
  const s = await setup(t)
  assert.equal(await s.get('grubnetaa64.efi'), 'GRUB-AA64')
  assert.equal(await s.get('/grubnetaa64.efi'), 'GRUB-AA64')
  assert.equal(await s.get('grub/grubnetaa64.efi'), 'GRUB-AA64')
  assert.equal(await s.get('ipxe.efi'), 'IPXE-EFI')
  // GRUB's prefix is /grub: its per-machine config and the bootstrap are unchanged.
  assert.equal(await s.get('grub/grub.cfg-01-52-54-00-1a-b0-01'), '# config for 52-54-00-1a-b0-01\n')
  assert.equal(await s.get('grub/grub.cfg'), '# bootstrap\n')
  // An iPXE loader is not looked for in grub/, nor a GRUB image's neighbours.
  await writeFile(join(s.assets, 'grub', 'undionly.kpxe'), 'WRONG')
  s.client.send(encodeRequest(Opcode.RRQ, 'undionly.kpxe', 'octet'), s.port)
  expectError(await s.client.next(), ErrorCode.FILE_NOT_FOUND)
})

test('no grub/ directory yet: a GRUB image is simply not found, with the fix on the timeline', async (t) => {
  const s = await setup(t, { grubDir: false })
  s.client.send(encodeRequest(Opcode.RRQ, 'grubnetx64.efi', 'octet'), s.port)
  const r = await s.client.next()
  // The client sees the plain TFTP error; the fix is for the timeline (and the person reading it).
  expectError(r, ErrorCode.FILE_NOT_FOUND, /^File not found$/)
  await waitFor(() => s.finished.length === 1)
  assert.equal(s.finished[0]!.error, 'File not found: run rackboot assets fetch grub')
  // A file that is no loader keeps its bare error.
  s.client.send(encodeRequest(Opcode.RRQ, 'nothing.txt', 'octet'), s.port)
  expectError(await s.client.next(), ErrorCode.FILE_NOT_FOUND)
  await waitFor(() => s.finished.length === 2)
  assert.equal(s.finished[1]!.error, 'File not found')
})
