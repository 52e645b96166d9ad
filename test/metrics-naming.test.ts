import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createDhcpMetrics } from '../src/dhcp/metrics.js'
import { createEventBus } from '../src/events/bus.js'
import { openSqliteInventory } from '../src/inventory/index.js'
import { createLifecycle } from '../src/lifecycle/index.js'
import { silentLogger } from '../src/log.js'
import { createMetricsRegistry } from '../src/metrics.js'
import { registerDatabaseMetrics } from '../src/inventory/metrics.js'
import type { OpenedInventory } from '../src/inventory/index.js'
import { createEventSinkMetrics, createKernelLogMetrics } from '../src/talos/receivers/metrics.js'
import { startServe, tempCwd } from './support/cli.js'

// Issue 17, "Metrics": Prometheus naming (units in the name, `_total` on counters, `_ratio` for 0..1), Node's process
// metrics under their standard unprefixed names (stock dashboards), machines per state, boot-step counters.

/** Every way a metric in this exposition breaks the naming rules, one line each. */
function namingProblems(exposition: string): string[] {
  const problems: string[] = []
  for (const m of exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    const [, name, type] = m as unknown as [string, string, string]
    // Node's default metrics keep prom-client's standard names (some gauges among them end in _total): only checked
    // for not carrying our prefix.
    if (/^(process|nodejs)_/.test(name)) continue
    if (!name.startsWith('rackboot_')) { problems.push(`${name}: not rackboot_ nor a default process_/nodejs_ metric`); continue }
    if (/^rackboot_(process|nodejs)_/.test(name)) problems.push(`${name}: a default metric under our prefix breaks stock dashboards`)
    if (type === 'counter' && !name.endsWith('_total')) problems.push(`${name}: a counter must end in _total`)
    if (type !== 'counter' && name.endsWith('_total')) problems.push(`${name}: only counters end in _total (${type})`)
    if (/_(utili[sz]ation|fraction|share|percent|percentage|ratio)(_|$)/.test(name) && !name.endsWith('_ratio')) problems.push(`${name}: a 0..1 value ends in _ratio`)
    if (/_(ms|millis|milliseconds|us|microseconds|ns|nanoseconds|minutes|hours|days|kb|mb|gb|kib|mib|gib|kilobytes|megabytes|percent)(_|$)/.test(name)) {
      problems.push(`${name}: not a base unit (seconds, bytes, ratio)`)
    }
    if ((type === 'histogram' || type === 'summary') && !/_(seconds|bytes|ratio)$/.test(name)) problems.push(`${name}: a ${type} names its unit`)
  }
  return problems
}

test('the naming check itself catches each broken rule', () => {
  const bad = [
    '# TYPE rackboot_dhcp_pool_utilisation gauge',
    '# TYPE rackboot_boot_steps counter',
    '# TYPE rackboot_machines_total gauge',
    '# TYPE rackboot_process_cpu_seconds_total counter',
    '# TYPE rackboot_nodejs_eventloop_lag_seconds gauge',
    '# TYPE rackboot_http_request_duration_ms histogram',
    '# TYPE rackboot_http_requests histogram',
    '# TYPE http_requests_total counter',
  ].join('\n')
  const problems = namingProblems(bad)
  for (const name of ['rackboot_dhcp_pool_utilisation:', 'rackboot_boot_steps:', 'rackboot_machines_total:', 'rackboot_process_cpu_seconds_total:', 'rackboot_nodejs_eventloop_lag_seconds:', 'rackboot_http_request_duration_ms:', 'rackboot_http_requests:', 'http_requests_total:']) {
    assert.ok(problems.some((p) => p.startsWith(name)), `${name} not flagged: ${problems.join('; ')}`)
  }
  assert.deepEqual(namingProblems('# TYPE rackboot_dhcp_pool_utilisation_ratio gauge\n# TYPE nodejs_active_handles_total gauge\n# TYPE rackboot_x_seconds histogram'), [])
})

test('serve: /metrics follows the naming rules, with Node metrics unprefixed, machines per state and boot steps', async (t) => {
  const cwd = tempCwd()
  const port = 20000 + Math.floor(Math.random() * 20000)
  const server = await startServe(['--set', `http.port=${port}`, '--set', 'http.listen=127.0.0.1', '--set', 'tftp.port=0', '--set', 'tftp.listen=127.0.0.1', '--set', 'talos.eventsSinkPort=0', '--set', 'talos.kernelLogPort=0'], { cwd })
  t.after(() => server.stop())
  const res = await fetch(`http://127.0.0.1:${port}/metrics`)
  assert.equal(res.status, 200)
  const text = await res.text()
  assert.deepEqual(namingProblems(text), [])
  // The stock Node.js dashboards' names.
  for (const name of ['process_cpu_seconds_total', 'process_resident_memory_bytes', 'process_start_time_seconds', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes', 'nodejs_gc_duration_seconds']) {
    assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} missing`)
  }
  assert.doesNotMatch(text, /^rackboot_(process|nodejs)_/m)
  // The SQLite backend's own counters (checkpoints, another process's lock).
  for (const name of ['rackboot_sqlite_checkpoints_total', 'rackboot_sqlite_busy_total', 'rackboot_sqlite_busy_wait_seconds_total', 'rackboot_sqlite_wal_max_bytes']) {
    assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} missing`)
  }
  assert.match(text, /^rackboot_machines\{state="new"\} 0$/m)
  assert.match(text, /^rackboot_machines\{state="ready"\} 0$/m)
  for (const step of ['dhcp', 'tftp', 'script', 'asset', 'agent', 'config', 'talos']) {
    assert.match(text, new RegExp(`^rackboot_boot_steps_total\\{step="${step}"\\} 0$`, 'm'), `boot step ${step} not exported`)
  }
  // Its log in a pipe is JSON lines (a terminal would get pino-pretty).
  const lines = server.output().split('\n').filter(Boolean)
  assert.ok(lines.length > 0)
  for (const line of lines) assert.doesNotThrow(() => JSON.parse(line), line)
})

test('metrics of servers off by default (DHCP, Talos receivers) follow the rules; the pool share is _ratio', async () => {
  const registry = createMetricsRegistry()
  createDhcpMetrics(registry, () => [{ subnet: '198.18.1.0/24', used: 1, total: 4 }])
  createEventSinkMetrics(registry)
  createKernelLogMetrics(registry)
  const text = await registry.metrics()
  assert.deepEqual(namingProblems(text), [])
  assert.match(text, /^rackboot_dhcp_pool_utilisation_ratio\{subnet="198.18.1.0\/24"\} 0.25$/m)
})

test('rackboot_boot_steps_total counts the boot steps lifecycle records, by step, and nothing else', async (t) => {
  const inventory = await openSqliteInventory({ file: ':memory:' })
  t.after(() => inventory.close())
  const registry = createMetricsRegistry()
  const lifecycle = createLifecycle({ inventory, bus: createEventBus(), log: silentLogger(), registry })
  lifecycle.record('m-1', 'boot.dhcp', 'DHCP discover → offer')
  lifecycle.record('m-1', 'boot.script', 'boot script: discovery')
  lifecycle.record('m-1', 'boot.script', 'boot script: install')
  lifecycle.record('m-1', 'boot.failure', 'missed the install deadline')
  lifecycle.record('m-1', 'power', 'power on')
  const values = Object.fromEntries((await registry.getSingleMetric('rackboot_boot_steps_total')!.get()).values.map((v) => [v.labels.step, v.value]))
  assert.deepEqual(values, { dhcp: 1, tftp: 0, script: 2, asset: 0, agent: 0, config: 0, talos: 0 })
  // A second lifecycle on the same registry (tests, tools) shares the counter rather than failing to register.
  createLifecycle({ inventory, bus: createEventBus(), log: silentLogger(), registry }).record(null, 'boot.talos', 'installing')
  assert.match(await registry.metrics(), /^rackboot_boot_steps_total\{step="talos"\} 1$/m)
})

test('database metrics follow the backend\'s running totals (PostgreSQL: conflicts retried, pool connections)', async () => {
  const registry = createMetricsRegistry()
  const totals = { retries: 3, failures: 0 }
  const pool = { totalCount: 4, idleCount: 1, waitingCount: 2 }
  registerDatabaseMetrics(registry, { backend: 'postgres', location: 'postgres://db', retryStats: () => ({ ...totals }), pool } as unknown as OpenedInventory)
  let text = await registry.metrics()
  assert.deepEqual(namingProblems(text), [])
  assert.match(text, /^rackboot_postgres_transaction_conflicts_total\{outcome="retried"\} 3$/m)
  assert.match(text, /^rackboot_postgres_pool_connections\{state="busy"\} 3$/m)
  assert.match(text, /^rackboot_postgres_pool_connections\{state="waiting"\} 2$/m)
  totals.retries = 5
  totals.failures = 1
  text = await registry.metrics()
  assert.match(text, /^rackboot_postgres_transaction_conflicts_total\{outcome="retried"\} 5$/m, 'a scrape adds what happened since the last')
  assert.match(text, /^rackboot_postgres_transaction_conflicts_total\{outcome="failed"\} 1$/m)
})
