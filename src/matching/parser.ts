import { selectorError } from './errors.js'
import { byteUnit, MACHINE_FIELDS, speedUnit, type Field, type Spec } from './fields.js'
import { sourceOffset, tokenize, type CompareOp, type Token } from './lexer.js'
import { compileRegex, RegexSyntaxError, type LinearRegex } from './regex.js'

// Selector grammar (one expression; a class's list of selectors is their conjunction):
//
//   expr      := and ( ('or' | '||') and )*
//   and       := unary ( ('and' | '&&') unary )*
//   unary     := ('not' | '!') unary | '(' expr ')' | predicate
//   predicate := path [ op value | 'in' list | 'not' 'in' list ]     (a bare path tests presence/truth)
//   path      := word ( '.' word | '[' "key" ']' | '[' expr (',' expr)* ']' )*
//   value     := number[unit] | "string" | word | true | false | null      list := '[' value (',' value)* ']'
//   op        := == | = | != | < | <= | > | >= | =~ | !~
//
// `=~` and `!~` take a JavaScript regular expression without backreferences or lookaround, matched in linear time
// (regex.ts); one the engine refuses is a parse error at its place in the selector.
//
// Examples: `cpu.cores >= 32`, `memory.gib >= 256`, `memory >= 256GiB`, `disks[type=nvme].count >= 2`,
// `disks[type=nvme, size.tb >= 3.8].count >= 4`, `manufacturer == "Dell Inc."`, `labels.rack in [r12, r13]`,
// `labels["topology.kubernetes.io/zone"] == z1`, `nics[speed.gbps >= 25].count >= 2`, `not labels.gpu`.

export type Literal = string | number | boolean | null

/** Which hardware summary column (migration 0002) a path reads, and the unit its values are in. */
export interface ColumnHint {
  column: 'cpuCores' | 'memoryBytes' | 'diskCount' | 'nvmeCount'
  /** column value = path value × factor */
  factor: number
}

export interface CompiledPath {
  text: string
  pos: number
  get(root: unknown): unknown
  /** 'collection' paths only take a truth test (non-empty). */
  kind: 'value' | 'collection'
  /** Set for size paths: the unit divisor applied (1 = bytes), so literals with units convert. */
  bytesDivisor?: number
  hint?: ColumnHint
}

export type Node =
  | { kind: 'and' | 'or'; items: Node[] }
  | { kind: 'not'; item: Node }
  | { kind: 'cmp'; op: CompareOp | 'in' | 'not in'; path: CompiledPath; value: Literal | Literal[]; regex?: LinearRegex; pos: number }
  | { kind: 'test'; path: CompiledPath }

type PathState = { get: (root: unknown) => unknown; spec: Spec; hint: HintState }
type HintState =
  | { s: 'none' }
  | { s: 'cpu' }
  | { s: 'disks'; nvme: boolean; filtered: boolean }
  | { s: 'done'; hint: ColumnHint }

class Parser {
  private i = 0
  constructor(private readonly source: string, private readonly tokens: Token[]) {}

  private peek(offset = 0): Token {
    return this.tokens[Math.min(this.i + offset, this.tokens.length - 1)]!
  }

  private next(): Token {
    const t = this.peek()
    if (t.kind !== 'eof') this.i++
    return t
  }

  private fail(t: Token, message: string): never {
    throw selectorError(this.source, t.pos, message)
  }

  private expect(kind: Token['kind'], what: string): Token {
    const t = this.peek()
    if (t.kind !== kind) this.fail(t, `expected ${what}, found ${describe(t)}`)
    return this.next()
  }

  parseAll(): Node {
    if (this.peek().kind === 'eof') this.fail(this.peek(), 'empty selector')
    const node = this.expr(MACHINE_FIELDS, true)
    const t = this.peek()
    if (t.kind !== 'eof') this.fail(t, `unexpected ${describe(t)}`)
    return node
  }

  expr(fields: Readonly<Record<string, Field>>, root: boolean): Node {
    const items = [this.and(fields, root)]
    while (this.peek().kind === 'or') {
      this.next()
      items.push(this.and(fields, root))
    }
    return items.length === 1 ? items[0]! : { kind: 'or', items }
  }

  private and(fields: Readonly<Record<string, Field>>, root: boolean): Node {
    const items = [this.unary(fields, root)]
    while (this.peek().kind === 'and') {
      this.next()
      items.push(this.unary(fields, root))
    }
    return items.length === 1 ? items[0]! : { kind: 'and', items }
  }

  private unary(fields: Readonly<Record<string, Field>>, root: boolean): Node {
    const t = this.peek()
    if (t.kind === 'not') {
      this.next()
      return { kind: 'not', item: this.unary(fields, root) }
    }
    if (t.kind === '(') {
      this.next()
      const inner = this.expr(fields, root)
      this.expect(')', "')'")
      return inner
    }
    return this.predicate(fields, root)
  }

  private predicate(fields: Readonly<Record<string, Field>>, root: boolean): Node {
    const path = this.path(fields, root)
    const t = this.peek()
    if (t.kind === 'op') {
      this.next()
      const op = t.text as CompareOp
      const vt = this.peek()
      const value = this.value(path)
      if (op === '=~' || op === '!~') {
        if (typeof value !== 'string') this.fail(vt, 'a regular expression must be a string')
        return { kind: 'cmp', op, path: this.valuePath(path, t), value, regex: this.regex(vt, value), pos: t.pos }
      }
      if (op !== '==' && op !== '!=' && typeof value !== 'number' && typeof value !== 'string') {
        this.fail(vt, `'${op}' compares with a number or a string`)
      }
      return { kind: 'cmp', op, path: this.valuePath(path, t), value, pos: t.pos }
    }
    if (t.kind === 'word' && t.text === 'in') {
      this.next()
      return { kind: 'cmp', op: 'in', path: this.valuePath(path, t), value: this.list(path), pos: t.pos }
    }
    if (t.kind === 'not' && this.peek(1).kind === 'word' && this.peek(1).text === 'in') {
      this.next()
      this.next()
      return { kind: 'cmp', op: 'not in', path: this.valuePath(path, t), value: this.list(path), pos: t.pos }
    }
    return { kind: 'test', path }
  }

  /** The pattern of token `t`, compiled (once per text) by the linear-time engine; refused ones fail here. */
  private regex(t: Token, pattern: string): LinearRegex {
    try {
      return compileRegex(pattern)
    } catch (err) {
      if (!(err instanceof RegexSyntaxError)) throw err
      // A fault in one construct points at it; one of the whole pattern (too long, a group left open) at its start.
      const position = err.index === null ? t.pos : sourceOffset(this.source, t, err.index)
      throw selectorError(this.source, position, `invalid regular expression: ${err.message}`)
    }
  }

  private valuePath(path: CompiledPath, at: Token): CompiledPath {
    if (path.kind === 'collection') this.fail(at, `'${path.text}' is a list: compare '${path.text}.count'`)
    return path
  }

  private list(path: CompiledPath): Literal[] {
    this.expect('[', "'[' to start a list")
    const values: Literal[] = []
    if (this.peek().kind !== ']') {
      values.push(this.value(path))
      while (this.peek().kind === ',') {
        this.next()
        values.push(this.value(path))
      }
    }
    this.expect(']', "']' to end the list")
    return values
  }

  private value(path: CompiledPath): Literal {
    const t = this.next()
    switch (t.kind) {
      case 'number':
        if (t.sized) {
          if (path.bytesDivisor === undefined) this.fail(t, `a size unit only applies to sizes, and '${path.text}' is not one`)
          return t.value! / path.bytesDivisor
        }
        return t.value!
      case 'string':
        return t.text
      case 'word': {
        const lower = t.text.toLowerCase()
        if (lower === 'true') return true
        if (lower === 'false') return false
        if (lower === 'null') return null
        return t.text
      }
      default:
        return this.fail(t, `expected a value, found ${describe(t)}`)
    }
  }

  private path(fields: Readonly<Record<string, Field>>, root: boolean): CompiledPath {
    const first = this.peek()
    if (first.kind !== 'word') this.fail(first, `expected a field name, found ${describe(first)}`)
    this.next()
    const field = fields[first.text]
    if (!field) this.fail(first, `unknown field '${first.text}' (one of: ${Object.keys(fields).join(', ')})`)
    let text = first.text
    let st: PathState = {
      get: (r) => field.get(r),
      spec: field.spec,
      hint: !root ? { s: 'none' }
        : first.text === 'cpu' ? { s: 'cpu' }
        : first.text === 'disks' ? { s: 'disks', nvme: false, filtered: false }
        : first.text === 'memory' ? { s: 'done', hint: { column: 'memoryBytes', factor: 1 } }
        : { s: 'none' },
    }
    let bytesDivisor: number | undefined = field.spec.type === 'bytes' ? 1 : undefined
    for (;;) {
      const t = this.peek()
      if (t.kind === '.') {
        this.next()
        const name = this.peek()
        if (name.kind !== 'word' && name.kind !== 'number') this.fail(name, `expected a field name after '.', found ${describe(name)}`)
        this.next()
        text += `.${name.text}`
        st = this.member(st, name, text)
        bytesDivisor = st.spec.type === 'bytes' ? 1 : bytesDivisorOf(st, bytesDivisor, name.text)
      } else if (t.kind === '[') {
        this.next()
        const key = this.peek()
        if (key.kind === 'string' && this.peek(1).kind === ']' && (st.spec.type === 'map' || st.spec.type === 'raw')) {
          this.next()
          this.next()
          text += `[${JSON.stringify(key.text)}]`
          st = this.key(st, key.text)
          bytesDivisor = undefined
          continue
        }
        if (st.spec.type !== 'collection') this.fail(t, `'${text}' is not a list: only lists take [conditions]`)
        const conds = [this.expr(st.spec.item, false)]
        while (this.peek().kind === ',') {
          this.next()
          conds.push(this.expr(st.spec.item, false))
        }
        const end = this.expect(']', "']' to close the conditions")
        text += this.source.slice(t.pos, end.pos + 1)
        const filter: Node = conds.length === 1 ? conds[0]! : { kind: 'and', items: conds }
        const test = compileNode(filter)
        const inner = st.get
        const isNvme = filter.kind === 'cmp' && filter.op === '==' && filter.value === 'nvme' && filter.path.text === 'type'
        st = {
          get: (r) => {
            const list = inner(r)
            return Array.isArray(list) ? list.filter((item) => test(item)) : []
          },
          spec: st.spec,
          hint: st.hint.s === 'disks' && !st.hint.filtered ? { s: 'disks', nvme: isNvme, filtered: true } : { s: 'none' },
        }
      } else {
        break
      }
    }
    if (st.spec.type === 'object' || st.spec.type === 'map') {
      this.fail(this.peek(), `'${text}' is a group of fields: name one (${st.spec.type === 'object' ? Object.keys(st.spec.fields).join(', ') : `${text}.<key>`})`)
    }
    const path: CompiledPath = { text, pos: first.pos, get: st.get, kind: st.spec.type === 'collection' ? 'collection' : 'value' }
    if (bytesDivisor !== undefined) path.bytesDivisor = bytesDivisor
    if (st.hint.s === 'done') path.hint = st.hint.hint
    return path
  }

  private key(st: PathState, key: string): PathState {
    const inner = st.get
    const get = (r: unknown) => {
      const v = inner(r)
      return v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined
    }
    return { get, spec: st.spec.type === 'raw' ? st.spec : { type: 'scalar' }, hint: { s: 'none' } }
  }

  private member(st: PathState, name: Token, text: string): PathState {
    const inner = st.get
    const spec = st.spec
    switch (spec.type) {
      case 'object': {
        const f = spec.fields[name.text]
        if (!f) this.fail(name, `unknown field '${text}' (one of: ${Object.keys(spec.fields).map((k) => text.replace(/[^.]+$/, k)).join(', ')})`)
        return {
          get: (r) => f.get(inner(r)),
          spec: f.spec,
          hint: st.hint.s === 'cpu' && name.text === 'cores' ? { s: 'done', hint: { column: 'cpuCores', factor: 1 } } : { s: 'none' },
        }
      }
      case 'map':
      case 'raw':
        return this.key(st, name.text)
      case 'bytes': {
        const d = byteUnit(name.text)
        if (d === undefined) this.fail(name, `'${text}': a size takes a unit (bytes, kib, mib, gib, tib, kb, mb, gb, tb)`)
        const hint: HintState = st.hint.s === 'done' && st.hint.hint.column === 'memoryBytes' ? { s: 'done', hint: { column: 'memoryBytes', factor: d } } : { s: 'none' }
        return { get: (r) => num(inner(r), d), spec: { type: 'scalar' }, hint }
      }
      case 'mbps': {
        const d = speedUnit(name.text)
        if (d === undefined) this.fail(name, `'${text}': a speed takes a unit (mbps, gbps)`)
        return { get: (r) => num(inner(r), d), spec: { type: 'scalar' }, hint: { s: 'none' } }
      }
      case 'collection': {
        if (name.text === 'count') {
          const hint: HintState = st.hint.s === 'disks'
            ? !st.hint.filtered ? { s: 'done', hint: { column: 'diskCount', factor: 1 } }
              : st.hint.nvme ? { s: 'done', hint: { column: 'nvmeCount', factor: 1 } } : { s: 'none' }
            : { s: 'none' }
          return { get: (r) => { const l = inner(r); return Array.isArray(l) ? l.length : 0 }, spec: { type: 'scalar' }, hint }
        }
        if (spec.sizeField && name.text === spec.sizeField) {
          const f = spec.item[spec.sizeField]!
          return {
            get: (r) => {
              const l = inner(r)
              return Array.isArray(l) ? l.reduce((sum: number, item) => sum + (Number(f.get(item)) || 0), 0) : 0
            },
            spec: { type: 'bytes' },
            hint: { s: 'none' },
          }
        }
        return this.fail(name, `'${text}': a list takes .count${spec.sizeField ? ` or .${spec.sizeField}` : ''}, or [conditions]`)
      }
      case 'scalar':
        return this.fail(name, `'${text.replace(/\.[^.]+$/, '')}' has no fields`)
    }
  }
}

function bytesDivisorOf(st: PathState, previous: number | undefined, unit: string): number | undefined {
  if (previous === undefined || st.spec.type !== 'scalar') return undefined
  const d = byteUnit(unit)
  return d === undefined ? undefined : previous * d
}

function num(v: unknown, divisor: number): number | undefined {
  return typeof v === 'number' ? v / divisor : undefined
}

function describe(t: Token): string {
  if (t.kind === 'eof') return 'the end'
  if (t.kind === 'string') return `"${t.text}"`
  return `'${t.text}'`
}

function toNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v
  if (typeof v === 'string' && /^\s*-?\d+(\.\d+)?\s*$/.test(v)) return Number(v)
  return undefined
}

function equal(left: unknown, right: Literal): boolean {
  if (right === null) return left === null || left === undefined
  if (left === null || left === undefined) return false
  if (typeof right === 'number') return toNumber(left) === right
  if (typeof right === 'boolean') return left === right || String(left).toLowerCase() === String(right)
  return String(left) === right
}

function order(left: unknown, right: Literal): number | undefined {
  if (left === null || left === undefined || right === null || typeof right === 'boolean') return undefined
  if (typeof right === 'number') {
    const n = toNumber(left)
    return n === undefined ? undefined : n - right
  }
  const l = String(left)
  return l < right ? -1 : l > right ? 1 : 0
}

/** Turns a node into a predicate over its root (a Machine, or a list item inside [conditions]). */
export function compileNode(node: Node): (root: unknown) => boolean {
  switch (node.kind) {
    case 'and': {
      const items = node.items.map(compileNode)
      return (r) => items.every((f) => f(r))
    }
    case 'or': {
      const items = node.items.map(compileNode)
      return (r) => items.some((f) => f(r))
    }
    case 'not': {
      const item = compileNode(node.item)
      return (r) => !item(r)
    }
    case 'test': {
      const get = node.path.get
      return (r) => {
        const v = get(r)
        if (Array.isArray(v)) return v.length > 0
        return v !== undefined && v !== null && v !== false && v !== 0 && v !== '' && v !== 'false'
      }
    }
    case 'cmp': {
      const get = node.path.get
      const value = node.value
      switch (node.op) {
        case '==': return (r) => equal(get(r), value as Literal)
        case '!=': return (r) => !equal(get(r), value as Literal)
        case '<': return (r) => { const o = order(get(r), value as Literal); return o !== undefined && o < 0 }
        case '<=': return (r) => { const o = order(get(r), value as Literal); return o !== undefined && o <= 0 }
        case '>': return (r) => { const o = order(get(r), value as Literal); return o !== undefined && o > 0 }
        case '>=': return (r) => { const o = order(get(r), value as Literal); return o !== undefined && o >= 0 }
        case '=~': {
          const re = node.regex!
          return (r) => { const v = get(r); return v !== undefined && v !== null && re.test(String(v)) }
        }
        case '!~': {
          const re = node.regex!
          return (r) => { const v = get(r); return v === undefined || v === null || !re.test(String(v)) }
        }
        case 'in': {
          const list = value as Literal[]
          return (r) => { const v = get(r); return list.some((x) => equal(v, x)) }
        }
        case 'not in': {
          const list = value as Literal[]
          return (r) => { const v = get(r); return !list.some((x) => equal(v, x)) }
        }
      }
    }
  }
}

/** Parses a selector into its syntax tree (paths resolved and checked). Throws RB_ERR_VALIDATION with the position. */
export function parseSelector(source: string): Node {
  if (source.length > 4096) throw selectorError(source.slice(0, 64) + '...', 4096, 'selector longer than 4096 characters')
  return new Parser(source, tokenize(source)).parseAll()
}
