// What every benchmark needs from its command line and its samples: a positive numeric flag, and medians.

/** `--name=N` from the arguments, else `fallback`; a value that is not a positive number (integer: whole) is refused. */
export function flag(args: string[], name: string, fallback: number, options: { integer?: boolean } = {}): number {
  const hit = args.find((a) => a.startsWith(`--${name}=`))
  const v = hit ? Number(hit.slice(name.length + 3)) : fallback
  const ok = options.integer ? Number.isInteger(v) : Number.isFinite(v)
  if (!ok || v <= 0) throw new Error(`--${name} must be a positive ${options.integer ? 'integer' : 'number'}`)
  return v
}

/** The median of the finite values (the mean of the middle two for an even count); NaN when there are none. */
export function median(xs: readonly number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length === 0 ? NaN : s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}
