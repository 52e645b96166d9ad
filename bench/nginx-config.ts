// nginx as the benchmarks run it, the way its users do: sendfile and tcp_nopush on, keep-alive 65 s, temp paths
// inside the run's directory (so it runs unprivileged and leaves nothing behind). Each bench says only what
// differs: workers, the access log, who it runs as, the listen address and the server block's body.

export interface NginxOptions {
  /** The run's directory: pid, error log and temp paths go here. */
  dir: string
  /** `auto` (Debian's default) or a number. */
  workers: 'auto' | number
  workerConnections: number
  /** `off`, or a file path with an optional log_format line (name and format). */
  accessLog: 'off' | { path: string; format?: { name: string; spec: string } }
  /** `user root;` when started as root inside a lab namespace. */
  asRoot?: boolean
  /** The server block's listen argument (e.g. 198.18.1.1:8080 backlog=4096). */
  listen: string
  /** The server block's other lines (root, locations). */
  server: string[]
}

export function nginxConfig(o: NginxOptions): string {
  const log = o.accessLog === 'off' ? ['  access_log off;']
    : [...(o.accessLog.format ? [`  log_format ${o.accessLog.format.name} '${o.accessLog.format.spec}';`] : []),
      `  access_log ${o.accessLog.path}${o.accessLog.format ? ` ${o.accessLog.format.name}` : ''};`]
  return [
    ...(o.asRoot ? ['user root;'] : []),
    `worker_processes ${o.workers};`,
    'daemon off;',
    `pid ${o.dir}/nginx.pid;`,
    `error_log ${o.dir}/error.log warn;`,
    `events { worker_connections ${o.workerConnections}; }`,
    'http {',
    '  sendfile on;',
    '  tcp_nopush on;',
    '  keepalive_timeout 65;',
    '  default_type application/octet-stream;',
    ...log,
    ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((p) => `  ${p}_temp_path ${o.dir}/${p};`),
    '  server {',
    `    listen ${o.listen};`,
    ...o.server.map((l) => `    ${l}`),
    '  }',
    '}',
    '',
  ].join('\n')
}
