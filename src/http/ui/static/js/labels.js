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

/**
 * The filter box's pairs split into the machine's rack field and its labels: `rack=r12` means the rack the machine
 * is in (its `rack` field, as `rackboot machines list --rack` and the API's `rack` parameter), not a label named
 * rack; every other key is a label. The last rack= wins.
 */
export function splitFilter(pairs) {
  let rack = null
  const labels = []
  for (const p of pairs) {
    const i = p.indexOf('=')
    if (p.slice(0, i) === 'rack') rack = p.slice(i + 1)
    else labels.push(p)
  }
  return { rack, labels }
}
