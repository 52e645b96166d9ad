// Labels as the list filter and the page show them: key=value.

/** "rack=r12 role=db" (spaces or commas between) → ['rack=r12', 'role=db']; pairs without '=' are dropped. */
export function parseLabelFilter(text) {
  return String(text ?? '').split(/[\s,]+/).map((s) => s.trim()).filter((s) => s.includes('=') && !s.startsWith('='))
}

/** Whether a machine's labels hold every key=value pair. */
export function labelsMatch(labels, pairs) {
  return pairs.every((p) => {
    const i = p.indexOf('=')
    return labels?.[p.slice(0, i)] === p.slice(i + 1)
  })
}

/** Label chips, sorted by key. */
export function labelEntries(labels) {
  return Object.entries(labels ?? {}).sort(([a], [b]) => a.localeCompare(b))
}
