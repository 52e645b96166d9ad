// The regular expressions of selectors (`serial =~ "^CZ2"`), matched in time linear in the input: a Thompson NFA
// stepped over the input one character at a time, never backtracking. V8's RegExp backtracks: `^(a|a)+$` against a
// serial planted through the unauthenticated /boot.ipxe blocked DHCP, TFTP and HTTP for seconds, doubling per
// character (issue 13). A test costs at most (input length) × (program size) steps; the program is bounded here and
// what machines report by the HTTP schemas (≤ 256 characters: ≤ 3 ms at MAX_PROGRAM_SIZE).
//
// In-house rather than re2js (RE2 in JS, also linear), measured on 256-character inputs: its lazy DFA took 50-230 ms
// for the first match of a ~900-instruction program, keeps up to 8 MB of states per pattern (not settable through
// its API), and RE2 syntax would change the meaning of patterns users already have (`\s`, `.`, UTF-16 units) or
// refuse them (`\uXXXX`, `[\b]`). This is the JavaScript syntax, minus what needs backtracking, with the same
// meaning: test/matching/regex.test.ts compares it with RegExp on generated patterns.
//
// Supported: literals; `.`; `[...]`, `[^...]` with ranges and escapes; `\d \D \w \W \s \S`; `\t \n \v \f \r \0`,
// `\xHH`, `\uHHHH`, `\cX`, `\` + punctuation; `^ $` (whole input, no flags); `\b \B`; `|`; `(...)`, `(?:...)`,
// `(?<name>...)`; `* + ? {n} {n,} {n,m}`, greedy or lazy (the same for a yes/no match). Refused, with the index of
// the construct: backreferences (`\1`, `\k<name>`), lookahead and lookbehind, octal escapes, unknown letter escapes.

/** Longer patterns are refused: a pattern is for a serial, a model, a label, not a document. */
export const MAX_PATTERN_LENGTH = 512

/** Instructions a pattern may compile to (`x{100}` is 100 copies of x): the per-character cost of a match. */
export const MAX_PROGRAM_SIZE = 2000

/** A pattern the engine refuses. `index`: the character of the pattern at fault, or null for the pattern as a whole. */
export class RegexSyntaxError extends Error {
  constructor(message: string, readonly index: number | null) {
    super(message)
    this.name = 'RegexSyntaxError'
  }
}

export interface LinearRegex {
  readonly source: string
  /** Instructions in the compiled program. */
  readonly size: number
  /** Whether the pattern matches anywhere in the input, as RegExp.prototype.test without flags. */
  test(input: string): boolean
}

// Character sets are sorted, disjoint, non-adjacent UTF-16 code unit ranges [lo0, hi0, lo1, hi1, ...].
type Ranges = number[]
type Assertion = 'begin' | 'end' | 'word' | 'not-word'
type Re =
  | { t: 'empty' }
  | { t: 'set'; ranges: Ranges }
  | { t: 'assert'; kind: Assertion }
  | { t: 'cat'; items: Re[] }
  | { t: 'alt'; items: Re[] }
  | { t: 'repeat'; item: Re; min: number; max: number }

const MAX_UNIT = 0xffff
const DIGIT: Ranges = [0x30, 0x39]
const WORD: Ranges = [0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a]
// What JavaScript's \s matches: WhiteSpace and LineTerminator.
const SPACE: Ranges = [
  0x09, 0x0d, 0x20, 0x20, 0xa0, 0xa0, 0x1680, 0x1680, 0x2000, 0x200a, 0x2028, 0x2029, 0x202f, 0x202f, 0x205f, 0x205f,
  0x3000, 0x3000, 0xfeff, 0xfeff,
]
// `.` without the s flag: anything but a line terminator.
const DOT: Ranges = [0, 0x09, 0x0b, 0x0c, 0x0e, 0x2027, 0x202a, MAX_UNIT]

function normalize(ranges: Ranges): Ranges {
  const pairs: [number, number][] = []
  for (let i = 0; i < ranges.length; i += 2) pairs.push([ranges[i]!, ranges[i + 1]!])
  pairs.sort((a, b) => a[0] - b[0])
  const out: Ranges = []
  for (const [lo, hi] of pairs) {
    if (out.length > 0 && lo <= out[out.length - 1]! + 1) out[out.length - 1] = Math.max(out[out.length - 1]!, hi)
    else out.push(lo, hi)
  }
  return out
}

function complement(ranges: Ranges): Ranges {
  const sorted = normalize(ranges)
  const out: Ranges = []
  let next = 0
  for (let i = 0; i < sorted.length; i += 2) {
    if (sorted[i]! > next) out.push(next, sorted[i]! - 1)
    next = sorted[i + 1]! + 1
  }
  if (next <= MAX_UNIT) out.push(next, MAX_UNIT)
  return out
}

const isDigit = (c: string | undefined) => c !== undefined && c >= '0' && c <= '9'
const isHex = (c: string | undefined) => c !== undefined && /^[0-9a-fA-F]$/.test(c)
const isAlnum = (c: string) => /^[A-Za-z0-9]$/.test(c)

/** An escape that is a single character or a set: what `\x` means both inside and outside [...]. */
type Escaped = { ch: number } | { set: Ranges }

class Parser {
  private i = 0
  constructor(private readonly src: string) {}

  private fail(message: string, index: number | null): never {
    throw new RegexSyntaxError(message, index)
  }

  parse(): Re {
    const re = this.alt()
    if (this.i < this.src.length) this.fail("unmatched ')'", this.i) // alt() stops only at ')' or the end
    return re
  }

  private alt(): Re {
    const items = [this.seq()]
    while (this.src[this.i] === '|') {
      this.i++
      items.push(this.seq())
    }
    return items.length === 1 ? items[0]! : { t: 'alt', items }
  }

  private seq(): Re {
    const items: Re[] = []
    while (this.i < this.src.length && this.src[this.i] !== '|' && this.src[this.i] !== ')') {
      const start = this.i
      const atom = this.atom()
      const q = this.quantifier()
      if (!q) {
        items.push(atom)
        continue
      }
      // JavaScript refuses `^*` and `\b+` but repeats a group, even one holding only an assertion: `(^)*`.
      if (atom.t === 'assert' && this.src[start] !== '(') this.fail(`'${this.src.slice(q.at, this.i)}' has nothing to repeat`, q.at)
      if (q.max < q.min) this.fail(`numbers out of order in '${this.src.slice(q.at, this.i)}'`, q.at)
      items.push({ t: 'repeat', item: atom, min: q.min, max: q.max })
    }
    return items.length === 1 ? items[0]! : items.length === 0 ? { t: 'empty' } : { t: 'cat', items }
  }

  /** `{n}`, `{n,}`, `{n,m}` at i, or null: a `{` that starts none of them is a literal, as in JavaScript. */
  private braces(at: number): { min: number; max: number; end: number } | null {
    const m = /^\{(\d+)(,(\d*))?\}/.exec(this.src.slice(at))
    if (!m) return null
    const min = Number(m[1])
    const max = m[2] === undefined ? min : m[3] === '' ? Infinity : Number(m[3])
    return { min, max, end: at + m[0].length }
  }

  private quantifier(): { min: number; max: number; at: number } | null {
    const at = this.i
    const c = this.src[at]
    let q: { min: number; max: number } | null = null
    if (c === '*') q = { min: 0, max: Infinity }
    else if (c === '+') q = { min: 1, max: Infinity }
    else if (c === '?') q = { min: 0, max: 1 }
    if (q) this.i++
    else if (c === '{') {
      const b = this.braces(at)
      if (!b) return null
      q = b
      this.i = b.end
    } else return null
    if (this.src[this.i] === '?') this.i++ // lazy: the same language, so the same yes/no answer
    const next = this.src[this.i]
    if (next === '*' || next === '+' || next === '?' || (next === '{' && this.braces(this.i))) {
      this.fail(`'${next}' has nothing to repeat`, this.i)
    }
    return { ...q, at }
  }

  private atom(): Re {
    const at = this.i
    const c = this.src[this.i++]!
    switch (c) {
      case '.':
        return { t: 'set', ranges: DOT }
      case '^':
        return { t: 'assert', kind: 'begin' }
      case '$':
        return { t: 'assert', kind: 'end' }
      case '*':
      case '+':
      case '?':
        return this.fail(`'${c}' has nothing to repeat`, at)
      case '{': {
        const b = this.braces(at)
        if (b) this.fail(`'${this.src.slice(at, b.end)}' has nothing to repeat`, at)
        return { t: 'set', ranges: [0x7b, 0x7b] }
      }
      case '(':
        return this.group(at)
      case '[':
        return this.charClass(at)
      case '\\':
        return this.escapeAtom(at)
      default: {
        const code = c.charCodeAt(0)
        return { t: 'set', ranges: [code, code] }
      }
    }
  }

  private group(at: number): Re {
    if (this.src[this.i] === '?') {
      const rest = this.src.slice(this.i, this.i + 3)
      if (rest.startsWith('?=') || rest.startsWith('?!')) {
        this.fail(`lookahead '(${rest.slice(0, 2)}' is not supported (it needs backtracking)`, at)
      }
      if (rest === '?<=' || rest === '?<!') this.fail(`lookbehind '(${rest}' is not supported (it needs backtracking)`, at)
      if (rest.startsWith('?:')) this.i += 2
      else if (rest.startsWith('?<')) {
        const m = /^\?<([A-Za-z_$][\w$]*)>/.exec(this.src.slice(this.i))
        if (!m) this.fail("invalid group name after '(?<'", at)
        this.i += m[0].length
      } else this.fail(`invalid group '(${rest.slice(0, 2)}'`, at)
    }
    const inner = this.alt()
    // The regex ends with the group still open: the whole pattern is at fault, not one character of it.
    if (this.src[this.i] !== ')') this.fail(`unterminated group: the '(' at character ${at} has no ')'`, null)
    this.i++
    return inner
  }

  private charClass(at: number): Re {
    let negate = false
    if (this.src[this.i] === '^') {
      negate = true
      this.i++
    }
    const ranges: Ranges = []
    const add = (e: Escaped) => {
      if ('set' in e) ranges.push(...e.set)
      else ranges.push(e.ch, e.ch)
    }
    while (this.src[this.i] !== ']') {
      if (this.i >= this.src.length) this.fail(`unterminated character class: the '[' at character ${at} has no ']'`, null)
      const from = this.i
      const a = this.classAtom()
      if (this.src[this.i] === '-' && this.i + 1 < this.src.length && this.src[this.i + 1] !== ']') {
        this.i++
        const b = this.classAtom()
        if ('set' in a || 'set' in b) {
          // `[\d-z]`: JavaScript reads the '-' as itself when a side is a set.
          add(a)
          add({ ch: 0x2d })
          add(b)
        } else if (a.ch > b.ch) {
          this.fail(`range out of order in '${this.src.slice(from, this.i)}'`, from)
        } else {
          ranges.push(a.ch, b.ch)
        }
      } else add(a)
    }
    this.i++
    const set = normalize(ranges)
    return { t: 'set', ranges: negate ? complement(set) : set }
  }

  private classAtom(): Escaped {
    const at = this.i
    const c = this.src[this.i++]!
    if (c !== '\\') return { ch: c.charCodeAt(0) }
    if (this.src[this.i] === 'b') {
      this.i++
      return { ch: 0x08 } // [\b] is backspace
    }
    if (isDigit(this.src[this.i]) && this.src[this.i] !== '0') {
      this.fail(`octal escape '\\${this.src[this.i]}' is not supported: write \\xHH`, at)
    }
    return this.escape(at)
  }

  private escapeAtom(at: number): Re {
    const c = this.src[this.i]
    if (c === 'b' || c === 'B') {
      this.i++
      return { t: 'assert', kind: c === 'b' ? 'word' : 'not-word' }
    }
    if (isDigit(c) && c !== '0') {
      const m = /^\d+/.exec(this.src.slice(this.i))!
      this.fail(`backreference '\\${m[0]}' is not supported (it needs backtracking)`, at)
    }
    if (c === 'k') this.fail("backreference '\\k' is not supported (it needs backtracking)", at)
    const e = this.escape(at)
    return { t: 'set', ranges: 'set' in e ? e.set : [e.ch, e.ch] }
  }

  /** After a backslash at `at` (this.i is past it): escapes that mean the same inside and outside [...]. */
  private escape(at: number): Escaped {
    const c = this.src[this.i++]
    if (c === undefined) return this.fail("'\\' at the end of the pattern", at)
    switch (c) {
      case 'd': return { set: DIGIT }
      case 'D': return { set: complement(DIGIT) }
      case 'w': return { set: WORD }
      case 'W': return { set: complement(WORD) }
      case 's': return { set: SPACE }
      case 'S': return { set: complement(SPACE) }
      case 't': return { ch: 0x09 }
      case 'n': return { ch: 0x0a }
      case 'v': return { ch: 0x0b }
      case 'f': return { ch: 0x0c }
      case 'r': return { ch: 0x0d }
      case '0':
        if (isDigit(this.src[this.i])) this.fail(`octal escape '\\0${this.src[this.i]}' is not supported: write \\xHH`, at)
        return { ch: 0 }
      case 'x':
      case 'u': {
        const n = c === 'x' ? 2 : 4
        const hex = this.src.slice(this.i, this.i + n)
        if (hex.length !== n || ![...hex].every(isHex)) this.fail(`'\\${c}' takes ${n} hex digits`, at)
        this.i += n
        return { ch: parseInt(hex, 16) }
      }
      case 'c': {
        const l = this.src[this.i]
        if (l === undefined || !/^[A-Za-z]$/.test(l)) this.fail("'\\c' takes a letter", at)
        this.i++
        return { ch: l.charCodeAt(0) % 32 }
      }
      default:
        // `\.`, `\/`, `\-`: punctuation stands for itself. A letter or digit with no meaning is refused rather than
        // read as itself (as JavaScript does without the u flag), since `\p{L}` or `\Z` would silently mean 'p', 'Z'.
        if (isAlnum(c)) this.fail(`unknown escape '\\${c}'`, at)
        return { ch: c.charCodeAt(0) }
    }
  }
}

/** Instructions `re` compiles to (Infinity past any bound), computed before emitting so `x{9999}` costs nothing. */
function sizeOf(re: Re): number {
  switch (re.t) {
    case 'empty': return 0
    case 'set':
    case 'assert': return 1
    case 'cat': return re.items.reduce((sum, r) => sum + sizeOf(r), 0)
    case 'alt': return re.items.reduce((sum, r) => sum + sizeOf(r), 0) + 2 * (re.items.length - 1)
    case 'repeat': {
      const s = sizeOf(re.item)
      if (s === 0) return 0 // `(?:){99999}` is empty: not 0 × Infinity
      return re.min * s + (re.max === Infinity ? s + 2 : (re.max - re.min) * (s + 1))
    }
  }
}

// Program: op[pc], out[pc] (next), arg[pc] (SPLIT: the other branch; CHAR: index of its set; ASSERT: its kind).
const CHAR = 0
const SPLIT = 1
const JMP = 2
const ASSERT = 3
const MATCH = 4
const ASSERTIONS: readonly Assertion[] = ['begin', 'end', 'word', 'not-word']

class Emitter {
  op: number[] = []
  out: number[] = []
  arg: number[] = []
  sets: Ranges[] = []

  private push(op: number, arg = 0): number {
    this.op.push(op)
    this.out.push(this.op.length) // the next instruction, unless patched
    this.arg.push(arg)
    return this.op.length - 1
  }

  emit(re: Re): void {
    switch (re.t) {
      case 'empty':
        return
      case 'set':
        this.sets.push(re.ranges)
        this.push(CHAR, this.sets.length - 1)
        return
      case 'assert':
        this.push(ASSERT, ASSERTIONS.indexOf(re.kind))
        return
      case 'cat':
        for (const item of re.items) this.emit(item)
        return
      case 'alt': {
        const jumps: number[] = []
        re.items.forEach((item, k) => {
          if (k === re.items.length - 1) return this.emit(item)
          const split = this.push(SPLIT)
          this.emit(item)
          jumps.push(this.push(JMP))
          this.arg[split] = this.op.length
        })
        for (const j of jumps) this.out[j] = this.op.length
        return
      }
      case 'repeat': {
        if (sizeOf(re.item) === 0) return // nothing to repeat: without this, `(?:){1e20}` would loop here
        for (let k = 0; k < re.min; k++) this.emit(re.item)
        if (re.max === Infinity) {
          const loop = this.push(SPLIT)
          this.emit(re.item)
          const back = this.push(JMP)
          this.out[back] = loop
          this.arg[loop] = this.op.length
        } else {
          // x{0,3} as x?x?x?: the same language, which is all a yes/no match needs.
          for (let k = re.min; k < re.max; k++) {
            const split = this.push(SPLIT)
            this.emit(re.item)
            this.arg[split] = this.op.length
          }
        }
        return
      }
    }
  }

  finish(): void {
    this.push(MATCH)
  }
}

function isWordUnit(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || c === 0x5f || (c >= 0x61 && c <= 0x7a)
}

function inSet(ranges: Ranges, c: number): boolean {
  for (let k = 0; k < ranges.length; k += 2) {
    if (c < ranges[k]!) return false
    if (c <= ranges[k + 1]!) return true
  }
  return false
}

/** Compiles a pattern (no cache: see compileRegex). Throws RegexSyntaxError. */
function buildRegex(source: string): LinearRegex {
  if (source.length > MAX_PATTERN_LENGTH) {
    throw new RegexSyntaxError(`longer than ${MAX_PATTERN_LENGTH} characters`, null)
  }
  const ast = new Parser(source).parse()
  const size = sizeOf(ast) + 1
  if (!(size <= MAX_PROGRAM_SIZE)) {
    throw new RegexSyntaxError(
      `too large: its repetitions expand to ${Number.isFinite(size) ? size : 'more than 2^53'} steps (at most ${MAX_PROGRAM_SIZE}); lower the counts in {n,m}`,
      null,
    )
  }
  const e = new Emitter()
  e.emit(ast)
  e.finish()
  const op = Uint8Array.from(e.op)
  const out = Int32Array.from(e.out)
  const arg = Int32Array.from(e.arg)
  const sets = e.sets
  const n = op.length

  return {
    source,
    size: n,
    test(input: string): boolean {
      // Threads waiting on a character, for the current position and the next; mark[pc] = position + 1 once pc
      // was added at that position, so each instruction is visited at most once per character: no backtracking.
      let current = new Int32Array(n)
      let next = new Int32Array(n)
      let currentLength = 0
      let nextLength = 0
      const mark = new Int32Array(n)
      const stack = new Int32Array(2 * n + 1)
      const len = input.length

      // Follows the empty moves from pc at position p; CHAR instructions land in `list`. True on reaching MATCH.
      const add = (list: Int32Array, length: number, start: number, p: number): number => {
        let sp = 0
        stack[sp++] = start
        while (sp > 0) {
          const pc = stack[--sp]!
          if (mark[pc] === p + 1) continue
          mark[pc] = p + 1
          switch (op[pc]) {
            case MATCH:
              return -1
            case CHAR:
              list[length++] = pc
              break
            case JMP:
              stack[sp++] = out[pc]!
              break
            case SPLIT:
              stack[sp++] = arg[pc]!
              stack[sp++] = out[pc]!
              break
            case ASSERT: {
              const kind = arg[pc]
              let ok: boolean
              if (kind === 0) ok = p === 0
              else if (kind === 1) ok = p === len
              else {
                const boundary = (p > 0 && isWordUnit(input.charCodeAt(p - 1))) !== (p < len && isWordUnit(input.charCodeAt(p)))
                ok = kind === 2 ? boundary : !boundary
              }
              if (ok) stack[sp++] = out[pc]!
              break
            }
          }
        }
        return length
      }

      for (let p = 0; ; p++) {
        // Unanchored: a match may start at every position.
        currentLength = add(current, currentLength, 0, p)
        if (currentLength < 0) return true
        if (p === len) return false
        const c = input.charCodeAt(p)
        nextLength = 0
        for (let k = 0; k < currentLength; k++) {
          const pc = current[k]!
          if (inSet(sets[arg[pc]!]!, c)) {
            nextLength = add(next, nextLength, out[pc]!, p + 1)
            if (nextLength < 0) return true
          }
        }
        const swap = current
        current = next
        next = swap
        currentLength = nextLength
      }
    },
  }
}

// Compiled once per pattern text: a class's selectors are evaluated on every /boot.ipxe. Bounded, least recently
// used out first, so selectors sent through the API cannot grow it without end.
const CACHE_SIZE = 256
const cache = new Map<string, LinearRegex>()

/** The compiled pattern, from the cache when it was compiled before. Throws RegexSyntaxError. */
export function compileRegex(source: string): LinearRegex {
  const hit = cache.get(source)
  if (hit) {
    cache.delete(source)
    cache.set(source, hit)
    return hit
  }
  const re = buildRegex(source)
  cache.set(source, re)
  if (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value!)
  return re
}
