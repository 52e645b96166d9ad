// `rackboot healthcheck`: asks this host's rackboot for /healthz on the address and port its settings give (the
// same file, RACKBOOT_* variables and --set flags `serve` reads), so a container's HEALTHCHECK follows the settings
// instead of hard-coding :8080. Exit 0 healthy (a degraded server, one missing boot files, is still up), 1 not.
// Never 2, even for bad settings: Docker reserves that exit code.
import { request } from 'node:http'
import { isIP } from 'node:net'
import { loadSettings } from '../settings/index.js'

export const HEALTHCHECK_USAGE = `rackboot healthcheck [--config FILE] [--set key=value]... [--timeout MS]

Asks the rackboot on this host for GET /healthz at http.listen (127.0.0.1 when it listens on every address) and
http.port from the settings. Exit 0 when it answers 200 (status ok or degraded), 1 otherwise, with the reason.
For container health checks (Dockerfile HEALTHCHECK, docker-compose.yml).`

export interface HealthcheckOptions {
  config?: string
  set?: string[]
  /** How long to wait for the answer (default 4000 ms: less than the container check's 5 s, so the reason is printed). */
  timeoutMs?: number
}

/** Where this host reaches a server listening on `listen`: itself unless it is a wildcard. */
export function healthcheckHost(listen: string): string {
  if (listen === '' || listen === '0.0.0.0') return '127.0.0.1'
  if (listen === '::' || listen === '[::]') return '::1'
  return listen.replace(/^\[(.*)\]$/, '$1')
}

export function healthcheckUrl(listen: string, port: number): string {
  const host = healthcheckHost(listen)
  return `http://${isIP(host) === 6 ? `[${host}]` : host}:${port}/healthz`
}

interface Answer {
  status: number
  body: string
}

function get(url: string, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'GET', headers: { accept: 'application/json' } }, (res) => {
      let body = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => {
        if (body.length < 64 * 1024) body += chunk
      })
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
      res.on('error', reject)
    })
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

/** What a /healthz body says is wrong or worth knowing: failing checks, then warnings. */
function describe(body: string): { status: string; problems: string[] } {
  try {
    const parsed = JSON.parse(body) as { status?: string; checks?: Record<string, string>; warnings?: string[] }
    const failing = Object.entries(parsed.checks ?? {}).filter(([, v]) => v !== 'ok').map(([k, v]) => `${k}: ${v}`)
    return { status: parsed.status ?? 'unknown', problems: [...failing, ...(parsed.warnings ?? [])] }
  } catch {
    return { status: 'unknown', problems: body.trim() ? [body.trim().slice(0, 300)] : [] }
  }
}

export async function healthcheckCommand(options: HealthcheckOptions): Promise<number> {
  let url: string
  try {
    const settings = loadSettings({ ...(options.config ? { file: options.config } : {}), overrides: options.set ?? [] })
    if (settings.http.port === 0) {
      console.error('unhealthy: http.port is 0 (a random port): there is no known port to check')
      return 1
    }
    url = healthcheckUrl(settings.http.listen, settings.http.port)
  } catch (err) {
    console.error(`unhealthy: cannot read the settings: ${(err as Error).message}`)
    return 1
  }
  const timeoutMs = options.timeoutMs ?? 4000
  let answer: Answer
  try {
    answer = await get(url, timeoutMs)
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    console.error(`unhealthy: ${url}: ${e.code ? `${e.code} (${e.message})` : e.message}`)
    return 1
  }
  const { status, problems } = describe(answer.body)
  if (answer.status === 200) {
    console.log(`healthy: ${url} says ${status}${problems.length ? `\n  ${problems.join('\n  ')}` : ''}`)
    return 0
  }
  console.error(`unhealthy: ${url} answered HTTP ${answer.status}${problems.length ? `: ${problems.join('; ')}` : ''}`)
  return 1
}
