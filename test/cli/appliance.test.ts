import { test } from 'node:test'
import assert from 'node:assert/strict'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { parse } from 'yaml'
import { loadSettings } from '../../src/settings/index.js'
import { REPO } from '../support/cli.js'

// No Docker engine runs on these machines: keep the appliance files honest by reading them.

test('docker-compose.yml: host networking, the capabilities DHCP/TFTP need, data and assets volumes, a health check', () => {
  const compose = parse(readFileSync(join(REPO, 'docker-compose.yml'), 'utf8'))
  const svc = compose.services.rackboot
  assert.equal(svc.network_mode, 'host')
  assert.deepEqual([...svc.cap_add].sort(), ['NET_ADMIN', 'NET_BIND_SERVICE'])
  const volumes: string[] = svc.volumes
  const target = (v: string) => v.split(':')[1]
  assert.ok(volumes.some((v) => target(v) === svc.environment.RACKBOOT_DATA_DIR), 'the data directory is a volume')
  assert.ok(volumes.some((v) => target(v) === svc.environment.RACKBOOT_ASSETS_DIR), 'the assets directory is a volume')
  for (const v of volumes) {
    const source = v.split(':')[0]!
    if (source.startsWith('.')) assert.ok(existsSync(join(REPO, source)), `bind source ${source} exists in the repo`)
    else assert.ok(source in compose.volumes, `named volume ${source} is declared`)
  }
  const health = svc.healthcheck.test.join(' ')
  assert.match(health, new RegExp(`127\\.0\\.0\\.1:${svc.environment.RACKBOOT_HTTP_PORT}/healthz`))
  assert.ok(svc.command.includes('serve'))
  // The settings file the compose file points at is valid.
  const file = join(REPO, 'config', 'rackboot.yaml')
  assert.equal(svc.environment.RACKBOOT_CONFIG, '/etc/rackboot/rackboot.yaml')
  assert.equal(loadSettings({ file, env: {} }).http.port, Number(svc.environment.RACKBOOT_HTTP_PORT))
})

test('Dockerfile: Node 20, copies what exists, runs the CLI, checks /healthz', () => {
  const text = readFileSync(join(REPO, 'Dockerfile'), 'utf8')
  assert.match(text, /^FROM node:20-/m)
  for (const [, sources] of text.matchAll(/^COPY (?!--from)(.+) \S+$/gm)) {
    for (const src of sources!.split(/\s+/)) assert.ok(existsSync(join(REPO, src)), `COPY source ${src} exists`)
  }
  assert.match(text, /ENTRYPOINT \["node", "\/opt\/rackboot\/bin\/rackboot\.mjs"\]/)
  assert.match(text, /HEALTHCHECK[\s\S]*\/healthz/)
  assert.match(text, /npm ci --omit=dev/)
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'))
  assert.ok(pkg.dependencies.tsx, 'tsx is a runtime dependency: the image runs TypeScript sources with --omit=dev')
})
