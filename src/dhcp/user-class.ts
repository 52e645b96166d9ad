// Option 77, user class. RFC 3004 frames it as a list of (length, data) entries; iPXE (and older clients) send one
// plain string such as "iPXE" instead. Both forms are read here.

/** The user classes carried by option 77: RFC 3004 entries when the framing is consistent, else the whole value. */
export function decodeUserClass(value: Buffer): string[] {
  if (value.length === 0) return []
  const entries: string[] = []
  let i = 0
  while (i < value.length) {
    const len = value[i]!
    if (len === 0 || i + 1 + len > value.length) {
      // Not RFC 3004 framing: the plain form.
      return [trimNul(value.toString('latin1'))]
    }
    entries.push(value.toString('latin1', i + 1, i + 1 + len))
    i += 1 + len
  }
  return entries
}

/** Encodes user classes in RFC 3004 form (or the plain form iPXE uses, for tests and tools). */
export function encodeUserClass(classes: readonly string[], form: 'rfc3004' | 'plain' = 'rfc3004'): Buffer {
  if (form === 'plain') return Buffer.from(classes.join(''), 'latin1')
  return Buffer.concat(
    classes.map((c) => {
      const d = Buffer.from(c, 'latin1')
      if (d.length === 0 || d.length > 255) throw new RangeError(`user class entry of ${d.length} bytes`)
      return Buffer.concat([Buffer.from([d.length]), d])
    }),
  )
}

function trimNul(s: string): string {
  return s.replace(/\0+$/, '')
}
