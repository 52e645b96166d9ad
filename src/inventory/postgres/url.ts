// Database URLs in messages and logs (no pg import: the CLI names a URL without loading the client).

/** The URL with its password replaced, for messages and logs. */
export function redactUrl(url: string): string {
  // WHATWG URL refuses libpq's socket form (postgres://user@/db?host=/run/postgresql): redact by pattern.
  return url.replace(/^(postgres(?:ql)?:\/\/[^:@/?#]*):[^@/?#]*@/, '$1:***@').replace(/([?&]password=)[^&#]*/gi, '$1***')
}
