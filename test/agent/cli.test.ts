// `rackboot assets build agent`: its progress rendering (the build itself runs in the VM tests' asset setup).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { createProgressDisplay, renderProgress } from '../../src/cli/assets-agent.js'

test('progress lines: a bar with MiB while downloading, the message alone otherwise', () => {
  assert.equal(
    renderProgress({ phase: 'download', message: 'downloading linux-image.deb', done: 35 * 1048576, total: 70 * 1048576 }, 10),
    'downloading [#####.....]  50% 35.0/70.0 MiB downloading linux-image.deb',
  )
  assert.equal(renderProgress({ phase: 'pack', message: 'packing agent.img', done: 3, total: 12 }, 4), 'packing     [#...]  25% 3/12 packing agent.img')
  assert.equal(renderProgress({ phase: 'extract', message: 'unpacking x.deb' }), 'unpacking   unpacking x.deb')
  assert.equal(renderProgress({ phase: 'download', message: 'm', done: 5, total: 0 }), 'downloading m')
})

test('without a terminal: one line per phase and per quarter of the download', () => {
  const lines: string[] = []
  const display = createProgressDisplay({ isTTY: false, write: (s) => (lines.push(s), true) })
  const total = 100
  display.update({ phase: 'resolve', message: 'resolving' })
  for (let done = 0; done <= total; done += 5) display.update({ phase: 'download', message: 'dl', done, total })
  for (let i = 1; i <= 40; i++) display.update({ phase: 'pack', message: 'packing', done: i, total: 40 })
  display.update({ phase: 'done', message: 'built' })
  display.end()
  assert.equal(lines.filter((l) => l.startsWith('downloading')).length, 5, '0, 25, 50, 75, 100 %')
  assert.equal(lines.filter((l) => l.startsWith('packing')).length, 1)
  assert.ok(lines.every((l) => l.endsWith('\n') && !l.includes('\r')))
})

test('on a terminal: one line redrawn in place, a newline per phase', () => {
  let out = ''
  const display = createProgressDisplay({ isTTY: true, columns: 60, write: (s) => ((out += s), true) })
  display.update({ phase: 'download', message: 'dl', done: 0, total: 10 })
  display.update({ phase: 'download', message: 'dl', done: 10, total: 10 })
  display.update({ phase: 'done', message: 'built' })
  display.end()
  assert.ok(out.startsWith('\r'))
  assert.equal(out.split('\n').length - 1, 2, 'newline between phases and at the end')
  assert.ok(out.split('\r').every((seg) => seg.replace('\n', '').length <= 59))
})
