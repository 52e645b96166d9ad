import type { Settings } from './schema.js'

/** The URL machines reach us at, for answers given before any HTTP request (DHCP boot file URLs, virtual media). */
export function publicBaseUrl(settings: Settings): string {
  if (settings.http.publicUrl) return settings.http.publicUrl.replace(/\/+$/, '')
  // An unspecified listen address (0.0.0.0, ::) names no host a machine could reach: loopback stands in.
  const listen = settings.http.listen
  const host = settings.dhcp.serverAddress ?? (listen === '0.0.0.0' || listen === '::' ? '127.0.0.1' : listen)
  return `http://${host.includes(':') ? `[${host}]` : host}:${settings.http.port}`
}
