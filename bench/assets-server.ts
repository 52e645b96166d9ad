// One HTTP server for bench/assets.bench.ts, in a process of its own so its CPU time can be read from /proc and it
// does not share an event loop with the clients: `node --import tsx bench/assets-server.ts KIND DIR`, where KIND is
// rackboot (the real app: buildApp with the asset routes), node (a plain createReadStream server, Node's defaults),
// or static (@fastify/static's send, what /assets used before issue 15). Prints {"port":N} and serves until killed.
import { createReadStream, statSync } from 'node:fs'
import { createServer } from 'node:http'
import { join } from 'node:path'
import { pipeline } from 'node:stream'
import fastifyStatic from '@fastify/static'
import Fastify from 'fastify'
import { buildApp } from '../src/http/index.js'
import { createDownloadGate } from '../src/http/download-gate.js'
import type { Inventory } from '../src/inventory/index.js'
import type { BootService, Lifecycle } from '../src/lifecycle/index.js'
import { silentLogger } from '../src/log.js'
import { createMetricsRegistry } from '../src/metrics.js'

const [kind, dir] = process.argv.slice(2) as [string, string]

async function listen(): Promise<number> {
  if (kind === 'rackboot') {
    const app = await buildApp({
      inventory: {} as Inventory, lifecycle: { record() {} } as unknown as Lifecycle, registry: createMetricsRegistry(), log: silentLogger(), version: 'bench',
      boot: {
        service: {} as BootService, gate: createDownloadGate({ limit: 100_000, holdMs: 60_000 }), assetsDir: dir, publicUrl: '',
        hold: { seconds: 30, maxSeconds: 300 }, agent: { after: 'reboot', kernelArgs: { amd64: [], arm64: [] } },
      },
      // A boot storm comes from many addresses; here every client is 127.0.0.1.
      limits: { maxConnectionsPerAddress: 100_000 },
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    return (app.server.address() as { port: number }).port
  }
  if (kind === 'static') {
    const app = Fastify({ logger: false, keepAliveTimeout: 5_000 })
    await app.register(fastifyStatic, { root: dir, prefix: '/assets/', cacheControl: false })
    await app.listen({ host: '127.0.0.1', port: 0 })
    return (app.server.address() as { port: number }).port
  }
  if (kind === 'node') {
    const server = createServer((req, res) => {
      const path = join(dir, decodeURIComponent((req.url ?? '/').split('?')[0]!.replace(/^\/assets\//, '')))
      let size: number
      try {
        size = statSync(path).size
      } catch {
        res.writeHead(404).end()
        return
      }
      res.writeHead(200, { 'Content-Length': size, 'Content-Type': 'application/octet-stream' })
      if (req.method === 'HEAD') return void res.end()
      pipeline(createReadStream(path), res, () => undefined)
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return (server.address() as { port: number }).port
  }
  throw new Error(`unknown server kind ${kind}`)
}

const port = await listen()
process.stdout.write(`${JSON.stringify({ port })}\n`)
