// A kernel command line with the semantics of siderolabs/go-procfs (procfs.Cmdline), which Talos's imager uses
// to build `cmdline-metal-<arch>`: a key keeps the position of its first appearance and collects all its values
// there ("console=ttyS0 console=tty0"), an empty value prints as the bare key ("slab_nomerge").

interface Param {
  key: string
  values: string[]
}

function parse(args: readonly string[]): Param[] {
  const out: Param[] = []
  for (const field of args.join(' ').split(/\s+/).filter(Boolean)) {
    const eq = field.indexOf('=')
    const key = eq < 0 ? field : field.slice(0, eq)
    const value = eq < 0 ? '' : field.slice(eq + 1)
    const existing = out.find((p) => p.key === key)
    if (existing) existing.values.push(value)
    else out.push({ key, values: [value] })
  }
  return out
}

export interface AppendAllOptions {
  /** Keys whose values replace the current ones instead of adding to them (the imager passes console, talos.platform). */
  overwrite?: readonly string[]
  /** `-key` deletes every value of key; `-key=value` deletes that value only. */
  deleteNegated?: boolean
}

export class Cmdline {
  private params: Param[] = []

  constructor(args: readonly string[] = []) {
    this.params = parse(args)
  }

  get(key: string): string[] | undefined {
    return this.params.find((p) => p.key === key)?.values.slice()
  }

  /** Replaces the key's values in place, or adds it at the end. */
  set(key: string, values: readonly string[]): void {
    const idx = this.params.findIndex((p) => p.key === key)
    const param = { key, values: [...values] }
    if (idx >= 0) this.params[idx] = param
    else this.params.push(param)
  }

  /** Each parsed argument replaces its key (procfs SetAll). */
  setAll(args: readonly string[]): void {
    for (const p of parse(args)) this.set(p.key, p.values)
  }

  append(key: string, value: string): void {
    const existing = this.params.find((p) => p.key === key)
    if (existing) existing.values.push(value)
    else this.params.push({ key, values: [value] })
  }

  deleteAll(key: string): void {
    this.params = this.params.filter((p) => p.key !== key)
  }

  appendAll(args: readonly string[], options: AppendAllOptions = {}): void {
    for (const p of parse(args)) {
      if (options.deleteNegated && p.key.length > 1 && p.key.startsWith('-')) {
        const key = p.key.slice(1)
        if (p.values[0] === '') this.deleteAll(key)
        else {
          const existing = this.params.find((q) => q.key === key)
          if (existing) existing.values = existing.values.filter((v) => !p.values.includes(v))
        }
        continue
      }
      if (options.overwrite?.includes(p.key)) {
        this.set(p.key, p.values)
        continue
      }
      for (const v of p.values) this.append(p.key, v)
    }
  }

  strings(): string[] {
    const out: string[] = []
    for (const p of this.params) for (const v of p.values) out.push(v === '' ? p.key : `${p.key}=${v}`)
    return out
  }

  toString(): string {
    return this.strings().join(' ')
  }
}
