// A tiny HTTP server for end-to-end tests, run as its own process (inside a network namespace when the lab has
// one): serves fixed files and scripted responses and prints every request as a JSON line on stdout.
// Usage: node --import tsx sink-server.ts '<SinkConfig JSON>'
import { createReadStream, statSync } from 'node:fs'
import { createServer } from 'node:http'

export interface SinkResponse {
  status?: number
  /** "${SINK}" in the body is replaced by the sink's own base URL (http://host:port), known only once it listens. */
  body?: string
  bodyBase64?: string
  headers?: Record<string, string>
}

export interface SinkRoute {
  method?: string
  path: string
  /** Served in turn; the last one repeats. */
  responses: SinkResponse[]
}

export interface SinkConfig {
  host: string
  port: number
  /** URL path -> file on disk (GET and HEAD). */
  files?: Record<string, string>
  routes?: SinkRoute[]
}

const config = JSON.parse(process.argv[2] ?? '{}') as SinkConfig
const served = new Map<SinkRoute, number>()

function emit(obj: unknown): void {
  process.stdout.write(JSON.stringify(obj) + '\n')
}

function base(): string {
  const addr = server.address()
  return `http://${config.host}:${typeof addr === 'object' && addr ? addr.port : config.port}`
}

const server = createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    const at = Date.now()
    const url = req.url ?? '/'
    const path = url.split('?')[0] ?? '/'
    const body = Buffer.concat(chunks)
    let status = 404
    const route = config.routes?.find((r) => r.path === path && (!r.method || r.method === req.method))
    const file = config.files?.[path]
    if (route) {
      const n = served.get(route) ?? 0
      served.set(route, n + 1)
      const r = route.responses[Math.min(n, route.responses.length - 1)] ?? {}
      status = r.status ?? 200
      const payload = r.bodyBase64 !== undefined ? Buffer.from(r.bodyBase64, 'base64') : Buffer.from((r.body ?? '').replaceAll('${SINK}', base()))
      res.writeHead(status, { 'content-length': String(payload.length), ...(r.headers ?? {}) })
      res.end(payload)
    } else if (file && (req.method === 'GET' || req.method === 'HEAD')) {
      try {
        const size = statSync(file).size
        status = 200
        res.writeHead(200, { 'content-length': String(size), 'content-type': 'application/octet-stream' })
        if (req.method === 'HEAD') res.end()
        else createReadStream(file).pipe(res)
      } catch {
        status = 404
        res.writeHead(404).end()
      }
    } else if (req.method === 'POST') {
      status = 200
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    } else {
      res.writeHead(404).end()
    }
    emit({
      event: 'request',
      at,
      method: req.method,
      url,
      path,
      status,
      remote: req.socket.remoteAddress,
      headers: req.headers,
      bodyBase64: body.toString('base64'),
    })
  })
})
server.keepAliveTimeout = 2_000
server.listen(config.port, config.host, () => {
  const addr = server.address()
  emit({ event: 'listening', port: typeof addr === 'object' && addr ? addr.port : config.port })
})
function stop(): void {
  server.close()
  server.closeAllConnections()
  process.exit(0)
}
process.on('SIGTERM', stop)
// The test process holds our stdin: when it goes away (even killed), so do we.
process.stdin.on('end', stop)
process.stdin.on('close', stop)
process.stdin.resume()
