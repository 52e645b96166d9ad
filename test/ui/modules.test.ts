import { test } from 'node:test'
import assert from 'node:assert/strict'

// The page's pure modules (no DOM): the event-stream parser and the reading of boot events into phases. They are
// browser ES modules without types, so they are loaded by URL.
const load = (name: string) => import(new URL(`../../src/http/ui/static/js/${name}.js`, import.meta.url).href)

test('sse parser: events, ids, comments and retry across arbitrary chunk boundaries and line endings', async () => {
  const { createSseParser } = await load('sse')
  const text = 'retry: 2000\n: stream from seq 41\n\nid: 42\nevent: machine.state\ndata: {"seq":42}\n\n'
    + 'id: 43\r\nevent: boot.dhcp\r\ndata: line one\r\ndata: line two\r\n\r\n'
    + ': keepalive\r\rdata:no-space\r\r'
    + 'event: shutdown\ndata: {}\n\n'
    + 'data: incomplete'
  // Every split of the text into two chunks, and one character at a time, must read the same.
  const read = (chunks: string[]) => {
    const out: unknown[] = []
    const feed = createSseParser({
      onEvent: (e: unknown) => out.push(e),
      onComment: (c: string) => out.push(`comment ${c}`),
      onRetry: (ms: number) => out.push(`retry ${ms}`),
    })
    for (const c of chunks) feed(c)
    return out
  }
  const expected = [
    'retry 2000', 'comment stream from seq 41',
    { id: '42', event: 'machine.state', data: '{"seq":42}' },
    { id: '43', event: 'boot.dhcp', data: 'line one\nline two' },
    'comment keepalive',
    { id: '43', event: 'message', data: 'no-space' },
    { id: '43', event: 'shutdown', data: '{}' },
  ]
  assert.deepEqual(read([text]), expected)
  assert.deepEqual(read([...text]), expected)
  for (let i = 1; i < text.length; i++) assert.deepEqual(read([text.slice(0, i), text.slice(i)]), expected, `split at ${i}`)
})

const ev = (seq: number, type: string, data: Record<string, unknown> = {}, message = type) =>
  ({ seq, machineId: 'm-1', type, at: new Date(1_700_000_000_000 + seq * 1000).toISOString(), message, data })

test('phases: each event type lands in its boot step, failures are told from successes', async () => {
  const { classify } = await load('phases')
  const c = (type: string, data: Record<string, unknown> = {}) => {
    const r = classify(ev(1, type, data))
    return `${r.phase}:${r.status}`
  }
  assert.equal(c('boot.dhcp', { reply: 'offer', ipxe: false }), 'dhcp:ok')
  assert.equal(c('boot.dhcp', { reply: 'nak' }), 'dhcp:fail')
  assert.equal(c('boot.dhcp', { reply: 'none' }), 'dhcp:warn')
  assert.equal(c('boot.tftp', { ok: true }), 'tftp:ok')
  assert.equal(c('boot.tftp', { ok: false, aborted: false, error: 'timeout' }), 'tftp:fail')
  assert.equal(c('boot.tftp', { ok: false, aborted: true }), 'tftp:warn')
  assert.equal(c('boot.script', { decision: 'install' }), 'script:ok')
  assert.equal(c('boot.script', { blocked: true }), 'script:fail')
  assert.equal(c('boot.asset', { path: 'talos/v1.13.9/amd64/vmlinuz', status: 200, complete: true }), 'kernel:ok')
  assert.equal(c('boot.asset', { path: 'talos/v1.13.9/amd64/initramfs.xz', status: 404 }), 'initramfs:fail')
  assert.equal(c('boot.asset', { path: 'agent/agent.img', status: 200, complete: false }), 'initramfs:warn')
  assert.equal(c('boot.agent', {}), 'agent:ok')
  assert.equal(c('boot.agent', { wipeFailed: ['sda'] }), 'agent:fail')
  assert.equal(c('boot.config', { status: 200 }), 'config:ok')
  assert.equal(c('boot.config', { status: 403 }), 'config:fail')
  assert.equal(c('boot.config', { status: 503 }), 'config:fail')
  assert.equal(c('boot.talos', { type: 'machine.ConfigLoadErrorEvent' }), 'talos:fail')
  assert.equal(c('boot.talos', { hint: 'installing' }), 'install:progress')
  assert.equal(c('machine.state', { from: 'provisioning', to: 'installed' }), 'install:ok')
  assert.equal(c('machine.state', { from: 'new', to: 'discovered' }), 'null:info')
  assert.equal(c('power', { ok: false, error: 'timeout' }), 'null:fail')
})

test('boot progress: the newest boot starts at the firmware DHCP exchange and stops at its last failed step', async () => {
  const { bootProgress } = await load('phases')
  const events = [
    ev(1, 'machine.created'),
    ev(2, 'boot.dhcp', { reply: 'offer', ipxe: false }), ev(3, 'boot.dhcp', { reply: 'ack', ipxe: false }),
    ev(4, 'boot.tftp', { ok: true }), ev(5, 'boot.dhcp', { reply: 'ack', ipxe: true }),
    ev(6, 'boot.script', { decision: 'discovery' }), ev(7, 'boot.asset', { path: 'agent/vmlinuz', status: 200 }),
    ev(8, 'boot.asset', { path: 'agent/agent.img', status: 200 }), ev(9, 'boot.agent', {}),
    ev(10, 'machine.state', { from: 'new', to: 'discovered' }),
    // Second boot: installs, and Talos's config fetch is refused.
    ev(11, 'boot.dhcp', { reply: 'offer', ipxe: false }), ev(12, 'boot.dhcp', { reply: 'ack', ipxe: false }),
    ev(13, 'boot.tftp', { ok: false, aborted: true }), ev(14, 'boot.tftp', { ok: true }),
    ev(15, 'boot.dhcp', { reply: 'ack', ipxe: true }), ev(16, 'boot.script', { decision: 'install' }),
    ev(17, 'boot.asset', { path: 'talos/v1/amd64/vmlinuz', status: 200 }), ev(18, 'boot.asset', { path: 'talos/v1/amd64/initramfs.xz', status: 200 }),
    ev(19, 'boot.config', { status: 403 }, 'config refused'), ev(20, 'power', { state: 'on' }),
  ]
  const p = bootProgress(events)
  assert.equal(p.start, 10, 'the second DISCOVER')
  assert.deepEqual(p.path, ['dhcp', 'tftp', 'script', 'kernel', 'initramfs', 'config', 'talos', 'install'])
  assert.equal(p.steps.tftp.status, 'ok', 'a retried transfer that worked is ok')
  assert.equal(p.last.phase, 'config')
  assert.equal(p.failed.message, 'config refused')
  assert.equal(p.steps.talos, undefined)

  // The first boot alone: the discovery path, ending well.
  const first = bootProgress(events.slice(0, 10))
  assert.equal(first.start, 1)
  assert.deepEqual(first.path, ['dhcp', 'tftp', 'script', 'kernel', 'initramfs', 'agent'])
  assert.equal(first.failed, null)
  assert.equal(first.last.phase, 'agent')

  // Without DHCP on the timeline (ProxyDHCP elsewhere, or a machine chain-loaded from another server): from the script.
  const noDhcp = bootProgress(events.filter((e) => e.type !== 'boot.dhcp' && e.type !== 'boot.tftp'))
  assert.equal(noDhcp.last.phase, 'config')
  assert.equal(noDhcp.failed.seq, 19)
  assert.deepEqual(bootProgress([ev(1, 'machine.created')]), { start: -1, path: ['dhcp', 'tftp', 'script'], steps: {}, last: null, failed: null, waiting: null })
})
