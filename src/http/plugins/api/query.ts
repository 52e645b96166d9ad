import type { FastifyRequest } from 'fastify'

// Query-string shapes shared by the list routes.

/** A preValidation hook that accepts `name=a,b` as well as `name=a&name=b` for a list parameter. */
export function commaList(name: string) {
  return async (request: FastifyRequest): Promise<void> => {
    const q = request.query as Record<string, unknown>
    const v = q[name]
    if (typeof v === 'string') q[name] = v.split(',')
    else if (Array.isArray(v)) q[name] = v.flatMap((s) => String(s).split(','))
  }
}

/** The machine filters that lists and counts share: `label=key=value` (repeatable), `rack`, and text search `q`. */
export function machineFilter(q: { label?: string[]; rack?: string; q?: string }): { labels?: Record<string, string>; rack?: string; text?: string } {
  const labels = Object.fromEntries((q.label ?? []).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]))
  return { ...(q.label ? { labels } : {}), ...(q.rack ? { rack: q.rack } : {}), ...(q.q ? { text: q.q } : {}) }
}
