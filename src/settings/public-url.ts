import type { Settings } from './schema.js'

/** The URL machines reach us at, for answers given before any HTTP request (DHCP boot file URLs, virtual media). */
export function publicBaseUrl(settings: Settings): string {
  if (settings.http.publicUrl) return settings.http.publicUrl.replace(/\/+$/, '')
  const host = settings.dhcp.serverAddress ?? (settings.http.listen !== '0.0.0.0' ? settings.http.listen : '127.0.0.1')
  return `http://${host}:${settings.http.port}`
}
